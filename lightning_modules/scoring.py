"""Scores a user compares with the leaderboard: 18-class macro F1 and accuracy, per task and per class,
from the out-of-fold predictions (or from eval predictions against a known truth)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score

from configs.config import MULTIHEAD, TASK_NAMES
from datamodules.errors import DataError
from datamodules.labels import NUM_CLASSES, TASKS, class18, split_class18
from lightning_modules.ensemble import combine_heads

KEY = ["person", "stem"]
OOF_COLUMNS = ["person", "image", "stem", "fold", "label"]  # an oof.csv's columns, then prob_0 ... prob_{k-1}


def prob_columns(num_classes: int) -> list[str]:
    return [f"prob_{k}" for k in range(num_classes)]


def _macro_f1(y_true, y_pred, n: int) -> float:
    return float(f1_score(y_true, y_pred, labels=list(range(n)), average="macro", zero_division=0))


def class_scores(y_true: np.ndarray, y_pred: np.ndarray) -> dict:
    per_class = f1_score(y_true, y_pred, labels=list(range(NUM_CLASSES)), average=None, zero_division=0)
    return {
        "f1": _macro_f1(y_true, y_pred, NUM_CLASSES),
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "class_f1": [round(float(v), 4) for v in per_class],
    }


HEAD_COLUMNS = {"mask": range(0, 3), "gender": range(3, 5), "age": range(5, 8)}  # a multihead oof.csv's heads


def _read_csv(path: Path) -> pd.DataFrame:
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
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0]) + 2
        raise DataError(f"{path} row {row}: label must be 0..{k - 1} and probabilities numbers")
    df[columns] = probs
    df["label"] = labels.astype(int)
    return df


def _multihead_rows(path: Path, task: str) -> pd.DataFrame:
    """``task``'s rows of a multihead ``oof.csv`` (18-class label, every head's probabilities side by side)."""
    frame = _read_csv(path)
    needed = [*OOF_COLUMNS, *(f"prob_{c}" for c in HEAD_COLUMNS[task])]
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise DataError(f"{path}: missing column(s) {', '.join(missing)} (an out-of-fold file of a multihead model)")
    out = frame[OOF_COLUMNS[:-1]].copy()
    label = pd.to_numeric(frame["label"], errors="coerce")
    part = split_class18(label.fillna(0).astype(int).to_numpy())[TASK_NAMES.index(task)]
    out["label"] = pd.Series(part, index=frame.index).where(label.between(0, NUM_CLASSES - 1))  # bad: NaN
    for k, column in enumerate(HEAD_COLUMNS[task]):
        out[f"prob_{k}"] = frame[f"prob_{column}"]
    return out


def read_task_oof(exp_dir: Path, task: str) -> pd.DataFrame | None:
    """``task``'s out-of-fold predictions over all its folds (person, image, stem, fold, label, prob_k):
    from its own model's ``<task>/fold<k>/oof.csv``, else from a ``multihead/fold<k>/oof.csv`` (whose label is
    the 18-class one and whose probability columns hold every head side by side). None when neither exists.
    A malformed file is an error naming it and its first bad row."""
    files = sorted((exp_dir / task).glob("fold*/oof.csv"))
    if files:
        return pd.concat([_checked(_read_csv(f), task, f) for f in files], ignore_index=True)
    files = sorted((exp_dir / MULTIHEAD).glob("fold*/oof.csv"))
    if not files:
        return None
    return pd.concat([_checked(_multihead_rows(f, task), task, f) for f in files], ignore_index=True)


def read_oof(exp_dir: Path) -> dict[str, pd.DataFrame]:
    """Each task's out-of-fold predictions over all its folds."""
    frames = {}
    for task in TASK_NAMES:
        frame = read_task_oof(exp_dir, task)
        if frame is None:
            raise DataError(
                f"no out-of-fold predictions for task {task} under {exp_dir}: train its folds (or --task {MULTIHEAD})"
            )
        frames[task] = frame
    return frames


def score_oof(exp_dir: Path, confusion_png: Path | None = None) -> dict:
    """Merge the three tasks' OOF predictions per image and score the 18 classes."""
    frames = read_oof(exp_dir)
    probs = {t: f.set_index(KEY)[[f"prob_{k}" for k in range(TASKS[t].num_classes)]] for t, f in frames.items()}
    common = probs["mask"].index.intersection(probs["gender"].index).intersection(probs["age"].index)
    if len(common) == 0:
        raise DataError(f"the tasks' out-of-fold predictions under {exp_dir} share no image: train the same folds")
    labels = {t: f.set_index(KEY).loc[common, "label"].to_numpy() for t, f in frames.items()}
    _, pred = combine_heads(*(probs[t].loc[common].to_numpy() for t in TASK_NAMES))
    truth = class18(labels["mask"], labels["gender"], labels["age"])
    report = {"images": int(len(common)), **class_scores(truth, pred)}
    report["task_f1"] = {
        t: round(_macro_f1(labels[t], probs[t].loc[common].to_numpy().argmax(1), TASKS[t].num_classes), 4)
        for t in TASK_NAMES
    }
    folds = frames["mask"].set_index(KEY).loc[common, "fold"].to_numpy()
    report["fold_f1"] = {
        str(k): round(_macro_f1(truth[folds == k], pred[folds == k], NUM_CLASSES), 4) for k in np.unique(folds)
    }
    if confusion_png is not None:
        plot_confusion(truth, pred, confusion_png, f"out-of-fold, macro F1 {report['f1']:.4f}")
    return report


def score_predictions(pred: pd.DataFrame, truth: pd.DataFrame) -> dict:
    """Score ``ImageID, ans`` predictions against ``ImageID, ans`` truth (the synthetic set's truth/)."""
    merged = pred[["ImageID", "ans"]].merge(truth[["ImageID", "ans"]], on="ImageID", suffixes=("", "_true"))
    if len(merged) != len(pred):
        raise DataError(f"the truth file covers {len(merged)} of {len(pred)} predicted images")
    return class_scores(merged["ans_true"].to_numpy(), merged["ans"].to_numpy())


def class_name(c: int) -> str:
    """``"8 Im2"``: class 8 is mask Incorrect, male, age group 2."""
    return f"{c} {'WIN'[c // 6]}{'mf'[(c // 3) % 2]}{c % 3}"


def plot_confusion(truth: np.ndarray, pred: np.ndarray, path: Path, title: str) -> None:
    """An 18x18 confusion matrix, rows normalised to the true class, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cm = confusion_matrix(truth, pred, labels=list(range(NUM_CLASSES)))
    share = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(9, 8))
    im = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    for i in range(NUM_CLASSES):
        for j in range(NUM_CLASSES):
            if cm[i, j]:
                ax.text(
                    j,
                    i,
                    cm[i, j],
                    ha="center",
                    va="center",
                    fontsize=6,
                    color="white" if share[i, j] > 0.5 else "black",
                )
    names = [class_name(c) for c in range(NUM_CLASSES)]
    ax.set_xticks(range(NUM_CLASSES), names, rotation=90, fontsize=7)
    ax.set_yticks(range(NUM_CLASSES), names, fontsize=7)
    ax.set_xlabel("predicted (mask W/I/N, gender m/f, age group 0/1/2)")
    ax.set_ylabel("true")
    ax.set_title(title)
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
