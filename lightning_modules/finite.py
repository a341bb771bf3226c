"""Refusing a diverged model's numbers: probabilities holding NaN or infinity (weights that are not finite) are an
error naming the checkpoint, never an answer (an argmax reads NaN as class 0, a CSV writes it as an empty cell)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from core.errors import RunError

RETRAIN = "train it again with a lower optim.lr (--overwrite)"


def check_finite_probs(probs: np.ndarray, checkpoint: str | Path | None, what_to_do: str = RETRAIN) -> None:
    """A :class:`RunError` naming ``checkpoint`` and ``what_to_do`` when ``probs`` (one row per image, any shape
    after that) holds NaN or infinity."""
    values = np.asarray(probs)
    bad = int((~np.isfinite(values.reshape(len(values), -1))).any(axis=1).sum()) if values.size else 0
    if bad:
        raise RunError(
            f"{checkpoint or 'the model'} gives NaN or infinite probabilities for {bad} of {len(values)} images: its "
            f"weights are not finite (the run diverged); {what_to_do}"
        )
