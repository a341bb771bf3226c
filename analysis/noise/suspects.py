"""What a ranked unit is (its columns and kinds) and the decision rule's constants, shared by the rules,
the outlier scores, the outputs and the truth scores."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd

from core.tasks import ERROR_KINDS, MASK_FILES
from rundir.layout import prob_columns

# One row per unit (a person for gender, age and mask_swap; a photo for outlier), every unit ranked:
# ``suggested`` is the label the row proposes (the best one other than the given), ``confidence`` its
# probability, ``threshold`` the cut it is held against, ``score`` how far past that cut it is (0 at the
# cut, 1 certain, -1 no support: :func:`scaled_score`), ``flag`` the decision, ``reviewed`` whether a
# corrections file lists the unit as looked at and kept as labelled (never flagged, ranked after the rest).
SUSPECT_COLUMNS = [
    "person",
    "image",
    "kind",
    "task",
    "given",
    "suggested",
    "confidence",
    "threshold",
    "score",
    "flag",
    "reviewed",
    "reason",
]
KINDS = ERROR_KINDS  # the kinds of DIR/truth/noise.csv, and of a corrections file's reviewed section
PROB_FLOOR = 0.01
MIN_CONFIDENCE = 0.9
AGE_MARGIN_YEARS = 5
INCORRECT, NOT_WEAR = MASK_FILES["incorrect_mask"], MASK_FILES["normal"]  # mask labels of those two photos
ADAPTIVE, FIXED = "adaptive", "fixed"
# One cut for every rule (the default: it met more targets in benchmarks/results/ than the adaptive mode), or
# per-class thresholds from the out-of-fold probabilities (confident learning: analysis/noise/thresholds.py).
THRESHOLD_MODES = (FIXED, ADAPTIVE)


def log_probs(frame: pd.DataFrame, num_classes: int) -> np.ndarray:
    """Each photo's log-probabilities, clipped to ``PROB_FLOOR`` and renormalised."""
    p = np.clip(frame[prob_columns(num_classes)].to_numpy(float), PROB_FLOOR, 1.0)
    return np.log(p / p.sum(1, keepdims=True))


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def scaled_score(confidence: np.ndarray, threshold: np.ndarray) -> np.ndarray:
    """How far past its threshold a confidence is, as a share of the way from the threshold to certainty (1)
    above it, or to zero (-1) below it: 0 at the threshold. Comparable across kinds and classes whose
    thresholds differ; for one threshold, the same order as the confidence."""
    c, t = np.asarray(confidence, float), np.asarray(threshold, float)
    with np.errstate(divide="ignore", invalid="ignore"):
        above = (c - t) / np.maximum(1 - t, 1e-9)
        below = (c - t) / np.maximum(t, 1e-9)
    return np.clip(np.where(c >= t, above, below), -1.0, 1.0)


def is_reviewed(table: pd.DataFrame, reviewed: dict[str, set]) -> np.ndarray:
    """Which rows ``reviewed`` lists: kind -> people (for ``outlier``: (person, stem) photos)."""
    kinds = table["kind"].to_numpy()
    keys = [
        (p, image_stem(str(i))) if k == "outlier" else p
        for p, i, k in zip(table["person"], table["image"], kinds, strict=True)
    ]
    return np.array([key in reviewed.get(k, ()) for key, k in zip(keys, kinds, strict=True)], bool)


def ranked(table: pd.DataFrame, thresholds: dict, reviewed: dict[str, set] | None = None) -> pd.DataFrame:
    """``table`` in SUSPECT_COLUMNS order, sorted by score (then kind, person, image), with the thresholds
    used in ``attrs["thresholds"]``. The units ``reviewed`` lists (see :func:`is_reviewed`) are not flagged
    and come after every other unit, in the same order among themselves; ``attrs["held_back"]`` counts, by
    kind, those the rule would have flagged."""
    table = table[SUSPECT_COLUMNS].copy()
    table["reviewed"] = table["reviewed"].to_numpy(bool) | (is_reviewed(table, reviewed) if reviewed else False)
    for column in ("confidence", "threshold", "score"):
        table[column] = table[column].astype(float)
    table["flag"] = table["flag"].astype(bool)
    held = table.loc[table["flag"] & table["reviewed"], "kind"].value_counts()  # what the rule would have flagged
    table["flag"] &= ~table["reviewed"]
    table["_kind"] = table["kind"].map({k: i for i, k in enumerate(KINDS)})
    order = ["reviewed", "score", "_kind", "person", "image"]
    table = table.sort_values(order, ascending=[True, False, True, True, True])
    table = table.drop(columns="_kind").reset_index(drop=True)
    table.attrs["thresholds"] = thresholds
    if reviewed:
        table.attrs["held_back"] = {str(k): int(n) for k, n in held.items()}
    return table


def image_stem(image: str) -> str:
    return os.path.splitext(image)[0]
