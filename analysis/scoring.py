"""Scores a user compares with the leaderboard: 18-class macro F1 and accuracy, per task and per class,
from the out-of-fold predictions (or from eval predictions against a known truth)."""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from sklearn.metrics import accuracy_score, f1_score

from analysis.confusion import plot_confusion
from core.errors import DataError
from core.tasks import (
    COMPETITION_AGE_CUTS,
    MULTIHEAD,
    NUM_CLASSES,
    TASK_NAMES,
    TASKS,
    age_group,
    class18,
    split_class18,
)
from lightning_modules.ensemble import combine_heads
from rundir.layout import (
    AGE,
    CONFIG,
    FULL,
    HEAD_COLUMNS,
    KEY,
    OOF,
    OOF_COLUMNS,
    OOF_FILES,
    OOF_READINGS,
    TaskModels,
    fold_name,
    prob_columns,
    run_place,
    task_models,
    unfinished_note,
)

log = logging.getLogger("analysis")

RERUN_FOR_AGE = (
    "their oof.csv files predate the raw age column: retrain those folds (python train.py ... --overwrite) to "
    "score at the competition's age cuts"
)


def _macro_f1(y_true, y_pred, n: int) -> float:
    return float(f1_score(y_true, y_pred, labels=list(range(n)), average="macro", zero_division=0))


def class_scores(y_true: np.ndarray, y_pred: np.ndarray) -> dict:
    per_class = f1_score(y_true, y_pred, labels=list(range(NUM_CLASSES)), average=None, zero_division=0)
    return {
        "f1": _macro_f1(y_true, y_pred, NUM_CLASSES),
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "class_f1": [round(float(v), 4) for v in per_class],
    }


def read_oof_csv(path: Path) -> pd.DataFrame:
    """An out-of-fold file as it is (person, image and stem as text); a DataError naming it when it is no CSV."""
    try:
        return pd.read_csv(path, dtype={"person": str, "image": str, "stem": str})
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot be read as CSV ({exc})") from None


def _checked(df: pd.DataFrame, task: str, path: Path) -> pd.DataFrame:
    """``df`` (one task's OOF rows read from ``path``) with numeric probabilities and labels; an error naming
    the file and row otherwise."""
    k = TASKS[task].num_classes
    columns = prob_columns(k)
    missing = [c for c in OOF_COLUMNS + columns if c not in df.columns]
    if missing:
        raise DataError(f"{path}: missing column(s) {', '.join(missing)} (an out-of-fold file of the {task} model)")
    probs = df[columns].apply(pd.to_numeric, errors="coerce")
    labels = pd.to_numeric(df["label"], errors="coerce")
    bad = probs.isna().any(axis=1) | labels.isna() | ~labels.isin(range(k))
    if AGE in df.columns:
        ages = pd.to_numeric(df[AGE], errors="coerce")
        bad |= ages.isna()
        df[AGE] = ages
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0]) + 2
        raise DataError(f"{path} row {row}: label must be 0..{k - 1}, and age and probabilities numbers")
    df[columns] = probs
    df["label"] = labels.astype(int)
    return df


def _multihead_rows(path: Path, task: str) -> pd.DataFrame:
    """``task``'s rows of a multihead ``oof.csv`` (18-class label, every head's probabilities side by side)."""
    frame = read_oof_csv(path)
    needed = [*OOF_COLUMNS, *(f"prob_{c}" for c in HEAD_COLUMNS[task])]
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise DataError(f"{path}: missing column(s) {', '.join(missing)} (an out-of-fold file of a multihead model)")
    out = frame[OOF_COLUMNS[:-1]].copy()
    label = pd.to_numeric(frame["label"], errors="coerce")
    part = split_class18(label.fillna(0).astype(int).to_numpy())[TASK_NAMES.index(task)]
    out["label"] = pd.Series(part, index=frame.index).where(label.between(0, NUM_CLASSES - 1))  # bad: NaN
    if AGE in frame.columns:
        out[AGE] = frame[AGE]
    for k, column in enumerate(HEAD_COLUMNS[task]):
        out[f"prob_{k}"] = frame[f"prob_{column}"]
    return out


def task_oof_files(exp_dir: Path, task: str, folds: list[str] | None = None, tta: str = "none") -> list[Path]:
    """The ``oof.csv`` files (``oof_flip.csv`` with ``tta="flip"``; ``oof_neighbours.csv``, the nearest training
    images' votes, with ``"neighbours"``) of the finished runs of ``folds`` whose models serve ``task``: its own
    and a multihead model's, as the submission averages them (``rundir.layout.task_models``)."""
    return task_models(exp_dir, task, folds).files(OOF_READINGS[tta])


def without_tta(exp_dir: Path, folds: list[str] | None = None, tta: str = "flip") -> list[Path]:
    """The ``oof.csv`` files of ``folds`` (every task's) with no out-of-fold predictions in ``tta`` beside them
    (``oof_flip.csv``: runs trained before training wrote it); empty when every one has them."""
    files = [f for task in TASK_NAMES for f in task_oof_files(exp_dir, task, folds)]
    return [f for f in dict.fromkeys(files) if not (f.parent / OOF_FILES[tta]).is_file()]


def read_oof_file(path: Path, task: str) -> pd.DataFrame:
    """``task``'s rows of one ``oof.csv`` (person, image, stem, fold, label, [age,] prob_k), checked; a multihead
    model's (in ``multihead/``) read as :func:`_multihead_rows` does."""
    frame = _multihead_rows(path, task) if run_place(path).task == MULTIHEAD else read_oof_csv(path)
    return _checked(frame, task, path)


def join_oof(parts: dict[Path, pd.DataFrame], task: str) -> pd.DataFrame:
    """One task's rows from several files (``file -> rows``); an image (person, stem) in more than one of them
    is an error naming the files, since each image must be out-of-fold exactly once."""
    frame = pd.concat(parts.values(), keys=list(parts), names=["file", None]).reset_index(level=0)
    twice = frame[frame.duplicated(KEY, keep=False)]
    if len(twice):
        person, stem = twice.iloc[0][KEY]
        files = ", ".join(str(f) for f in twice.loc[(twice["person"] == person) & (twice["stem"] == stem), "file"])
        raise DataError(
            f"{task}: {twice[KEY].drop_duplicates().shape[0]} image(s) are out-of-fold in more than one file, e.g. "
            f"{person}/{stem} in {files}; each image must be out-of-fold once: pass --folds naming runs that do not "
            "overlap (the k-fold runs 0..k-1, or holdout alone)"
        )
    return frame.drop(columns="file").reset_index(drop=True)


def merge_models(parts: dict[Path, pd.DataFrame], task: str) -> pd.DataFrame:
    """One task's rows from the files ``parts`` (``file -> rows``): each model's folds joined (:func:`join_oof`),
    then each image's probabilities averaged over the models that predicted it (the task's own and a multihead
    model's), as the submission averages them; models that label an image differently are an error naming it."""
    by_model: dict[str, dict[Path, pd.DataFrame]] = defaultdict(dict)
    for path, rows in parts.items():
        by_model[run_place(path).task][path] = rows
    joined = [join_oof(p, task) for p in by_model.values()]
    if len(joined) == 1:
        return joined[0]
    frame = pd.concat(joined, ignore_index=True)
    differ = frame.groupby(KEY)["label"].nunique() > 1
    if differ.any():
        person, stem = differ.index[differ][0]
        raise DataError(
            f"{task}: the {' and '.join(by_model)} models label {int(differ.sum())} image(s) differently, e.g. "
            f"{person}/{stem}: they were trained with other corrections or age cuts; one ensemble needs one labelling"
        )
    columns = prob_columns(TASKS[task].num_classes)
    how = {c: "mean" if c in columns else "first" for c in frame.columns if c not in KEY}
    return frame.groupby(KEY, as_index=False, sort=False).agg(how)[list(frame.columns)]


def oof_models(exp_dir: Path, folds: list[str] | None = None) -> dict[str, TaskModels]:
    """Each task's models of ``folds`` (``rundir.layout.task_models``), logged: one line per task, and a warning
    naming the unfinished runs left out and the command that finishes them."""
    models = {task: task_models(exp_dir, task, folds) for task in TASK_NAMES}
    note = unfinished_note(list(models.values()))
    if note:
        log.warning(note)
    for found in models.values():
        log.info(found.summary("models"))
    return models


def read_task_oof(
    exp_dir: Path, task: str, folds: list[str] | None = None, tta: str = "none", models: TaskModels | None = None
) -> pd.DataFrame | None:
    """``task``'s out-of-fold predictions over ``folds`` (default: the k-fold runs; see ``rundir.layout.fold_dirs``):
    person, image, stem, fold, label, age (when the files have it), prob_k; from the finished runs whose models
    serve it (``models``, default ``rundir.layout.task_models``): its own ``<task>/fold<k>/oof.csv`` and a
    ``multihead/fold<k>/oof.csv`` (whose label is the 18-class one and whose probability columns hold every head
    side by side), each image's probabilities averaged over them; ``oof_flip.csv`` with ``tta="flip"``. None when
    there are none. A malformed file is an error naming it and its first bad row; an image in two folds of one
    model, an error naming both files."""
    models = models or task_models(exp_dir, task, folds)
    lost = [run for run in models.runs if run.name != fold_name(FULL) and not (run / OOF).is_file()]
    if lost:  # the submission averages its checkpoint: the score must read its predictions
        place = run_place(lost[0])
        raise DataError(
            f"{lost[0] / OOF} is missing, though its run finished: retrain that fold (python train.py --task "
            f"{place.task} --fold {place.fold} --exp {place.exp} --overwrite) or leave it out with --folds"
        )
    files = models.files(OOF_READINGS[tta])
    if not files:
        return None
    return merge_models({f: read_oof_file(f, task) for f in files}, task)


def no_oof_error(exp_dir: Path, task: str, folds: list[str] | None) -> DataError:
    """The error for a task without out-of-fold predictions (for ``folds``, when given)."""
    which = f" for folds {','.join(folds)}" if folds else ""
    return DataError(
        f"no out-of-fold predictions for task {task}{which} under {exp_dir}: train its folds (or --task {MULTIHEAD})"
    )


def read_oof(exp_dir: Path, folds: list[str] | None = None, tta: str = "none") -> dict[str, pd.DataFrame]:
    """Each task's out-of-fold predictions over ``folds`` (default: the k-fold runs), in ``tta``."""
    frames = {}
    models = oof_models(exp_dir, folds)
    for task in TASK_NAMES:
        frame = read_task_oof(exp_dir, task, folds, tta, models[task])
        if frame is None:
            raise no_oof_error(exp_dir, task, folds)
        frames[task] = frame
    return frames


def oof_age_cuts(exp_dir: Path, folds: list[str] | None = None) -> tuple[int, int]:
    """The age cuts the age predictions of ``folds`` were made at: the ``data.age_cuts`` of the config.yaml
    beside each of their oof.csv files (the competition's when a file has none); an error naming the files
    when they differ, since one score cannot mix two meanings of the age groups."""
    files = task_oof_files(exp_dir, "age", folds)
    found: dict[Path, tuple[int, int]] = {}
    for f in files:
        path = f.parent / CONFIG
        cuts = COMPETITION_AGE_CUTS
        if path.is_file():
            try:
                saved = ((yaml.safe_load(path.read_text()) or {}).get("data") or {}).get("age_cuts")
            except (yaml.YAMLError, AttributeError) as exc:
                raise DataError(f"{path}: cannot be read as YAML ({str(exc).splitlines()[0]})") from None
            if saved is not None:
                cuts = tuple(int(c) for c in saved)
        found[path] = cuts
    if len(set(found.values())) > 1:
        listing = "; ".join(f"{p}: {list(c)}" for p, c in found.items())
        raise DataError(f"the age models' folds were trained with different data.age_cuts ({listing}): pass --folds")
    return next(iter(found.values()), COMPETITION_AGE_CUTS)


def score_oof(
    exp_dir: Path, confusion_png: Path | None = None, folds: list[str] | None = None, tta: str = "none"
) -> dict:
    """Merge the three tasks' OOF predictions of ``folds`` (default: the k-fold runs; in ``tta``: the files
    training wrote) per image and score the 18 classes, at the models' own age cuts and at the competition's
    (see :func:`score_frames`)."""
    frames = read_oof(exp_dir, folds, tta)
    return score_frames(frames, oof_age_cuts(exp_dir, folds), confusion_png, str(exp_dir))


@dataclass
class PerImage:
    """The three tasks' out-of-fold rows merged per image: the images (``index``: person,
    stem), each head's probabilities and labels (``task -> array``), each image's fold and raw age (None when
    some image has none: files written before the column was added)."""

    index: pd.Index
    probs: dict[str, np.ndarray]
    labels: dict[str, np.ndarray]
    folds: np.ndarray
    ages: np.ndarray | None


def per_image(frames: dict[str, pd.DataFrame], where: str = "the experiment") -> PerImage:
    """Merge the three tasks' OOF rows (``task -> frame``, as :func:`read_oof` gives them) per image: what every
    score of the combined answer (this module's, the comparison's, the calibration's) starts from."""
    indexed = {t: frames[t].set_index(KEY) for t in TASK_NAMES}
    check_same_images(indexed, where)
    common = indexed["mask"].index
    probs = {t: indexed[t].loc[common, prob_columns(TASKS[t].num_classes)].to_numpy(np.float64) for t in TASK_NAMES}
    labels = {t: indexed[t].loc[common, "label"].to_numpy().astype(int) for t in TASK_NAMES}
    return PerImage(common, probs, labels, indexed["mask"].loc[common, "fold"].to_numpy(), _raw_ages(indexed, common))


def check_same_images(indexed: dict[str, pd.DataFrame], where: str) -> None:
    """The three tasks' out-of-fold rows (``task -> rows by image``) cover the same images, else an error naming
    the task and an image: a score over the images some tasks share would silently leave out the others."""
    first, *others = TASK_NAMES
    for task in others:
        only = {first: indexed[first].index.difference(indexed[task].index)}
        only[task] = indexed[task].index.difference(indexed[first].index)
        if any(len(keys) for keys in only.values()):
            said = "; ".join(f"{len(k)} only in {t}'s (e.g. {'/'.join(k[0])})" for t, k in only.items() if len(k))
            raise DataError(
                f"the {first} and {task} out-of-fold predictions under {where} cover different images ({said}): "
                "finish the same folds for every task, or pass --folds naming folds every task has finished"
            )


def _raw_ages(indexed: dict[str, pd.DataFrame], common: pd.Index) -> np.ndarray | None:
    """Each image's raw age, from whichever task's files have it (``indexed``: each task's rows by image); None
    when some image has none (files written before the column was added)."""
    ages = None
    for task in ("age", "mask", "gender"):
        if AGE in indexed[task].columns:
            found = indexed[task].loc[common, AGE]
            ages = found if ages is None else ages.fillna(found)
    return None if ages is None or ages.isna().any() else ages.to_numpy()


def _scores(truth: dict[str, np.ndarray], probs: dict[str, np.ndarray], pred: np.ndarray) -> dict:
    """18-class F1, accuracy and per-class F1, and each task's macro F1, of ``pred`` against ``truth``."""
    truth18 = class18(truth["mask"], truth["gender"], truth["age"])
    report = class_scores(truth18, pred)
    report["task_f1"] = {t: round(_macro_f1(truth[t], probs[t].argmax(1), TASKS[t].num_classes), 4) for t in TASK_NAMES}
    return report


def score_frames(
    frames: dict[str, pd.DataFrame],
    age_cuts: tuple[int, int] | list[int],
    confusion_png: Path | None = None,
    where: str = "the experiment",
) -> dict:
    """Score the three tasks' OOF rows (``task -> frame``, made at ``age_cuts``), merged per image.

    ``f1``, ``accuracy``, ``class_f1``, ``task_f1`` and ``fold_f1`` are at the models' own age cuts (their
    labels'); ``competition`` holds the same scores at the competition's cuts 30/60, the truth rebuilt from
    each person's raw age and the prediction unchanged (a model's age group k is submitted as the competition's
    group k), which is what the leaderboard measures. Its scores are None, with a ``note``, when the files
    predate the raw age column and the cuts differ."""
    merged = per_image(frames, where)
    probs, labels, folds = merged.probs, merged.labels, merged.folds
    _, pred = combine_heads(*(probs[t] for t in TASK_NAMES))
    truth = class18(labels["mask"], labels["gender"], labels["age"])
    report = {"images": len(merged.index), **_scores(labels, probs, pred), "age_cuts": [int(c) for c in age_cuts]}
    report["fold_f1"] = {
        str(k): round(_macro_f1(truth[folds == k], pred[folds == k], NUM_CLASSES), 4) for k in np.unique(folds)
    }
    competition = {"age_cuts": list(COMPETITION_AGE_CUTS)}
    ages = merged.ages
    if ages is not None:
        competition |= _scores({**labels, "age": age_group(ages, COMPETITION_AGE_CUTS)}, probs, pred)
    elif tuple(age_cuts) == COMPETITION_AGE_CUTS:  # the labels are at the competition's cuts already
        competition |= _scores(labels, probs, pred)
    else:
        competition |= {"f1": None, "accuracy": None, "class_f1": None, "task_f1": None, "note": RERUN_FOR_AGE}
    report["competition"] = competition
    if confusion_png is not None:
        plot_confusion(truth, pred, confusion_png, f"out-of-fold, macro F1 {report['f1']:.4f}")
    return report


def score_predictions(pred: pd.DataFrame, truth: pd.DataFrame) -> dict:
    """Score ``ImageID, ans`` predictions against ``ImageID, ans`` truth (the synthetic set's truth/)."""
    merged = pred[["ImageID", "ans"]].merge(truth[["ImageID", "ans"]], on="ImageID", suffixes=("", "_true"))
    if len(merged) != len(pred):
        raise DataError(f"the truth file covers {len(merged)} of {len(pred)} predicted images")
    return class_scores(merged["ans_true"].to_numpy(), merged["ans"].to_numpy())
