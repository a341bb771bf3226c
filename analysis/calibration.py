"""Macro-F1 calibration of the three heads: a per-class offset added to each head's log-probabilities before
its argmax, fitted on the out-of-fold predictions to maximise the 18-class macro F1 of the combined answer (the
18-class index of each head's argmax, as ``lightning_modules.ensemble.combine_heads`` answers).

The fit is coordinate ascent over a grid of offsets (each head's first class stays at 0: only differences
within a head move its argmax), vectorised over the grid, so it takes well under a second on 19,000 images.
The in-sample gain flatters the offsets; the honest estimate is cross-fitted: each fold's rows scored with
offsets fitted on the other folds' rows only. Arrays in, arrays out; ``inference.calibration`` saves the
offsets and applies them to a submission."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.scoring import oof_age_cuts, per_image, read_oof, task_oof_files, without_tta
from core.errors import DataError
from core.tasks import COMPETITION_AGE_CUTS, NUM_CLASSES, TASK_NAMES, TASKS, age_group, class18
from rundir.layout import OOF_FILES

GRID = np.round(np.linspace(-3.0, 3.0, 61), 2)  # the offsets tried for each class: -3 .. 3 in steps of 0.1
SWEEPS = 5  # at most this many passes over the offsets (it stops early when a pass changes none)
FLOOR = 1e-12  # probabilities are clipped here before the log: a hard vote's zero stays finite
TIE = 1e-12  # scores closer than this are equal (the smaller offset is kept)


@dataclass
class OofArrays:
    """The out-of-fold predictions merged per image: each head's probabilities, the 18-class truth, each image's
    fold, and which labels the truth is at (``target``)."""

    probs: dict[str, np.ndarray]
    truth: np.ndarray
    folds: np.ndarray
    target: str


def oof_arrays(frames: dict[str, pd.DataFrame], age_cuts: tuple[int, int] | list[int]) -> OofArrays:
    """The three tasks' OOF rows (``task -> frame``, as ``analysis.scoring.read_oof`` gives them) over the images
    they share. The truth is at the competition's age cuts (what the leaderboard measures): the models' own
    labels when their cuts are the competition's, else rebuilt from each person's raw age (the models' labels
    when some file predates the raw age column)."""
    merged = per_image(frames)
    labels = dict(merged.labels)
    target = f"the competition's age cuts {COMPETITION_AGE_CUTS[0]}/{COMPETITION_AGE_CUTS[1]}"
    if tuple(age_cuts) != COMPETITION_AGE_CUTS:
        if merged.ages is not None:
            labels["age"] = age_group(merged.ages, COMPETITION_AGE_CUTS)
        else:
            target = f"the models' age cuts {age_cuts[0]}/{age_cuts[1]} (the oof.csv files have no raw age)"
    truth = class18(labels["mask"], labels["gender"], labels["age"])
    return OofArrays(merged.probs, truth, merged.folds.astype(str), target)


def macro_f1_many(truth: np.ndarray, preds: np.ndarray) -> np.ndarray:
    """The 18-class macro F1 of each row of ``preds`` ``(G, N)`` against ``truth`` ``(N,)``, as
    ``sklearn.metrics.f1_score(average="macro", labels=range(18), zero_division=0)`` would score each."""
    preds = np.atleast_2d(preds)
    g = len(preds)
    cells = (np.arange(g)[:, None] * NUM_CLASSES + np.asarray(truth)[None, :]) * NUM_CLASSES + preds
    confusion = np.bincount(cells.ravel(), minlength=g * NUM_CLASSES**2).reshape(g, NUM_CLASSES, NUM_CLASSES)
    tp = np.diagonal(confusion, axis1=1, axis2=2)
    denominator = confusion.sum(2) + confusion.sum(1)  # 2 tp + fp + fn
    f1 = np.divide(2 * tp, denominator, out=np.zeros(tp.shape), where=denominator > 0)
    return f1.mean(1)


def macro_f1(truth: np.ndarray, pred: np.ndarray) -> float:
    return float(macro_f1_many(truth, np.asarray(pred)[None])[0])


def log_probs(probs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {t: np.log(np.clip(np.asarray(probs[t], dtype=np.float64), FLOOR, None)) for t in TASK_NAMES}


def zero_offsets() -> dict[str, np.ndarray]:
    return {t: np.zeros(TASKS[t].num_classes) for t in TASK_NAMES}


def head_answers(probs: dict[str, np.ndarray], offsets: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """Each head's class: the argmax of its log-probabilities plus its offsets (none: the plain argmax)."""
    if offsets is None:
        return {t: np.asarray(probs[t]).argmax(1) for t in TASK_NAMES}
    logp = log_probs(probs)
    return {t: (logp[t] + np.asarray(offsets[t], dtype=np.float64)).argmax(1) for t in TASK_NAMES}


def calibrated_answer(probs: dict[str, np.ndarray], offsets: dict[str, np.ndarray] | None = None) -> np.ndarray:
    """The 18-class answer of each image from the heads' probabilities (``task -> (images, classes)``), each
    head's log-probabilities shifted by ``offsets`` before its argmax (none: ``combine_heads``' answer)."""
    heads = head_answers(probs, offsets)
    return class18(heads["mask"], heads["gender"], heads["age"])


def fit_offsets(
    probs: dict[str, np.ndarray], truth: np.ndarray, grid: np.ndarray = GRID, sweeps: int = SWEEPS
) -> dict[str, np.ndarray]:
    """The per-class offsets (``task -> (classes,)``, each head's first at 0) that maximise the 18-class macro F1
    of :func:`calibrated_answer` against ``truth``: coordinate ascent, each offset in turn set to the best value
    of ``grid`` given the others, for up to ``sweeps`` passes. A value replaces the current one only when it
    scores higher; among equal scores the one nearest 0 wins, so an offset that changes nothing stays 0."""
    truth = np.asarray(truth)
    grid = np.asarray(grid, dtype=np.float64)
    logp = log_probs(probs)
    offsets = zero_offsets()
    heads = head_answers(probs, offsets)
    best = macro_f1(truth, class18(heads["mask"], heads["gender"], heads["age"]))
    for _ in range(sweeps):
        changed = False
        for task in TASK_NAMES:
            for k in range(1, TASKS[task].num_classes):
                shifted = logp[task] + offsets[task]  # (N, classes)
                trial = np.repeat(shifted[None], len(grid), axis=0)  # (G, N, classes)
                trial[:, :, k] = logp[task][None, :, k] + grid[:, None]
                parts = {**heads, task: trial.argmax(2)}
                scores = macro_f1_many(truth, class18(parts["mask"], parts["gender"], parts["age"]))
                if scores.max() <= best + TIE:
                    continue
                top = np.flatnonzero(scores >= scores.max() - TIE)
                pick = top[np.argmin(np.abs(grid[top]))]
                offsets[task][k], best, changed = grid[pick], float(scores[pick]), True
                heads[task] = parts[task][pick]
        if not changed:
            break
    return offsets


def cross_fit(
    probs: dict[str, np.ndarray], truth: np.ndarray, folds: np.ndarray, grid: np.ndarray = GRID, sweeps: int = SWEEPS
) -> tuple[np.ndarray, dict[str, dict[str, np.ndarray]]] | None:
    """The cross-fitted answers: each fold's rows answered with offsets fitted on the other folds' rows only,
    and those offsets per fold; None with fewer than two folds."""
    folds = np.asarray(folds)
    names = list(dict.fromkeys(folds.tolist()))
    if len(names) < 2:
        return None
    pred = np.empty(len(folds), dtype=int)
    fitted = {}
    for name in names:
        own = folds == name
        fitted[str(name)] = fit_offsets({t: p[~own] for t, p in probs.items()}, truth[~own], grid, sweeps)
        pred[own] = calibrated_answer({t: p[own] for t, p in probs.items()}, fitted[str(name)])
    return pred, fitted


def _per_fold(truth: np.ndarray, pred: np.ndarray, folds: np.ndarray) -> dict[str, float]:
    return {str(f): round(macro_f1(truth[folds == f], pred[folds == f]), 4) for f in dict.fromkeys(folds.tolist())}


def _listed(offsets: dict[str, np.ndarray]) -> dict[str, list[float]]:
    return {t: [round(float(v), 4) for v in offsets[t]] for t in TASK_NAMES}


def calibrate(arrays: OofArrays, grid: np.ndarray = GRID, sweeps: int = SWEEPS) -> dict:
    """Fit the offsets on every OOF image and score the 18-class macro F1 before, after (in-sample: on the
    images they were fitted on) and cross-fitted (see :func:`cross_fit`; None with one fold), overall and per
    fold. The offsets are the in-sample fit's: the one a submission applies."""
    truth, folds = arrays.truth, arrays.folds
    offsets = fit_offsets(arrays.probs, truth, grid, sweeps)
    before = calibrated_answer(arrays.probs)
    after = calibrated_answer(arrays.probs, offsets)
    crossed = cross_fit(arrays.probs, truth, folds, grid, sweeps)
    result = {
        "offsets": _listed(offsets),
        "images": len(truth),
        "target": arrays.target,
        "f1": {
            "before": round(macro_f1(truth, before), 4),
            "after": round(macro_f1(truth, after), 4),
            "cross_fitted": None if crossed is None else round(macro_f1(truth, crossed[0]), 4),
        },
        "fold_f1": {
            "before": _per_fold(truth, before, folds),
            "after": _per_fold(truth, after, folds),
            "cross_fitted": None if crossed is None else _per_fold(truth, crossed[0], folds),
        },
        "cross_fit_offsets": None if crossed is None else {f: _listed(o) for f, o in crossed[1].items()},
        "grid": {"low": float(grid.min()), "high": float(grid.max()), "values": len(grid), "sweeps": sweeps},
    }
    if crossed is None:
        result["note"] = "one fold only: no cross-fitted estimate (it needs out-of-fold rows of two folds or more)"
    return result


def calibration_oof(
    exp_dir: Path, folds: list[str] | None = None, tta: str = "none"
) -> tuple[OofArrays, dict[str, list[Path]]]:
    """The OOF predictions of ``folds`` (default: the k-fold runs) that a calibration is fitted on, in the test-time
    view ``tta`` the submission it corrects is made in (``flip``: the ``oof_flip.csv`` files), and the files they
    come from (``task -> files``); an error saying what to train, or which command writes the view's files, when
    some are missing."""
    files = {task: task_oof_files(exp_dir, task, folds) for task in TASK_NAMES}
    missing = [task for task, found in files.items() if not found]
    if missing:
        which = f" of folds {','.join(folds)}" if folds else ""
        raise DataError(
            f"calibration needs the k-fold runs' out-of-fold predictions (oof.csv){which}, and {exp_dir} has none "
            f"for task(s) {', '.join(missing)} (a --fold full run has none): train the folds (python train.py --task "
            f"{missing[0]} --fold all --exp {exp_dir.name}) or leave out --calibrate"
        )
    lacking = without_tta(exp_dir, folds, tta) if tta != "none" else []
    if lacking:
        raise DataError(
            f"calibration is fitted on the out-of-fold predictions in the submission's {tta} TTA ({OOF_FILES[tta]}), "
            f"which {len(lacking)} fold(s) lack (e.g. beside {lacking[0]}; trained before training wrote them): "
            f"python predict.py --exp {exp_dir.name} --oof --tta {tta} writes them (or pass --tta none)"
        )
    files = {task: task_oof_files(exp_dir, task, folds, tta) for task in TASK_NAMES}
    return oof_arrays(read_oof(exp_dir, folds, tta), oof_age_cuts(exp_dir, folds)), files
