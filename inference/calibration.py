"""``predict.py --calibrate``: per-class offsets on each head's log-probabilities, fitted anew on the
experiment's out-of-fold predictions in the submission's test-time view (``oof_flip.csv`` for the flip TTA,
``oof.csv`` without) to maximise the 18-class macro F1 (``analysis.calibration``),
saved to ``runs/<exp>/calibration.json`` with the scores before, after (in-sample) and cross-fitted, and
applied to a submission's merged probabilities before the argmax."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np

from analysis.calibration import calibrate, calibration_oof
from core.atomic import write_text_atomic
from core.tasks import TASK_NAMES
from rundir.layout import CALIBRATION, FULL

log = logging.getLogger("predict")


def calibration_folds(folds: list[str] | None) -> list[str] | None:
    """The folds whose OOF predictions a calibration is fitted on: those of ``folds`` that have some (``full``
    has none); the k-fold runs when ``folds`` names none (default, or ``--folds full``)."""
    if folds is None:
        return None
    kept = [f for f in folds if f != FULL]
    if not kept:
        log.info("calibration: --folds names only %s (no out-of-fold predictions): fitted on the k-fold runs", FULL)
    return kept or None


def offsets_of(calibration: dict) -> dict[str, np.ndarray]:
    """The offsets of a calibration (as :func:`write_calibration` returns or saves it), as arrays per head."""
    return {t: np.asarray(calibration["offsets"][t], dtype=np.float64) for t in TASK_NAMES}


def _shown(value: float | None) -> str:
    return "none" if value is None else f"{value:.4f}"


def print_calibration(calibration: dict) -> None:
    f1 = calibration["f1"]
    offsets = "; ".join(f"{t} {calibration['offsets'][t]}" for t in TASK_NAMES)
    print(
        f"calibration (fitted on {calibration['images']} out-of-fold images in TTA {calibration['tta']}, "
        f"truth at {calibration['target']}): "
        f"18-class macro F1 {_shown(f1['before'])} before, {_shown(f1['after'])} after (in-sample), "
        f"{_shown(f1['cross_fitted'])} cross-fitted (each fold scored with offsets fitted on the other folds)"
    )
    print(f"log-probability offsets: {offsets}; saved: {calibration['file']}")
    if calibration.get("note"):
        print(f"note: {calibration['note']}")


def write_calibration(exp_dir: Path, folds: list[str] | None = None, tta: str = "flip") -> dict:
    """Fit the offsets on the OOF predictions of ``folds`` (see :func:`calibration_folds`) in the test-time view
    ``tta`` of the submission they correct (``flip``: the ``oof_flip.csv`` files), write them with their scores and
    the files they were fitted on to ``runs/<exp>/calibration.json``, print the scores and return what was
    written."""
    start = time.perf_counter()
    arrays, files = calibration_oof(exp_dir, calibration_folds(folds), tta)
    result = calibrate(arrays)
    result["fitted_on"] = {t: [str(f.relative_to(exp_dir)) for f in files[t]] for t in TASK_NAMES}
    result["tta"] = tta
    result["seconds"] = round(time.perf_counter() - start, 2)
    path = exp_dir / CALIBRATION
    result["file"] = str(path)
    write_text_atomic(path, json.dumps(result, indent=2))
    print_calibration(result)
    return result
