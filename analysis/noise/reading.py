"""What the noise finder reads: an experiment's out-of-fold predictions and saved config, and the data
directory's photos and ages (after the experiment's corrections)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import yaml

from analysis.scoring import read_task_oof
from core.errors import DataError
from core.tasks import MULTIHEAD, TASK_NAMES, TASKS
from datamodules.layout import read_train
from datamodules.relabel import apply_relabels
from rundir.layout import CONFIG, FULL, HOLDOUT, KEY, fold_dirs, prob_columns

log = logging.getLogger("noise")


def read_oof_frames(exp_dir: Path) -> tuple[dict[str, pd.DataFrame], list[str]]:
    """Each task's out-of-fold predictions (one row per person and photo; a photo predicted by several
    folds gets their mean), and the tasks that have none."""
    exp_dir = Path(exp_dir)
    if not exp_dir.is_dir():
        raise DataError(f"experiment {exp_dir.name!r} does not exist: no folder {exp_dir} (check --exp and --runs-dir)")
    frames, missing = {}, []
    for task in TASK_NAMES:
        df = read_task_oof(exp_dir, task)  # its own model's files, else a multihead model's
        if df is None:
            missing.append(task)
            continue
        agg = {"image": "first", "fold": "first", "label": "first"} | dict.fromkeys(
            prob_columns(TASKS[task].num_classes), "mean"
        )
        frames[task] = df.groupby(KEY, as_index=False, sort=True).agg(agg)
    if not frames:
        raise DataError(
            f"no out-of-fold predictions under {exp_dir}: expected <task>/fold<k>/oof.csv for mask, gender or age "
            "(train.py writes them for every validated fold)"
        )
    return frames, missing


def saved_config(exp_dir: Path) -> tuple[dict, Path | None]:
    """The experiment's saved config (the first ``<task>/fold<k>/config.yaml``, the k-fold runs' before
    the full-data and holdout runs', a multihead model's included) as plain data."""
    for task in (*TASK_NAMES, MULTIHEAD):
        task_dir = Path(exp_dir) / task
        for run in [*fold_dirs(task_dir), *fold_dirs(task_dir, [FULL, HOLDOUT])]:
            path = run / CONFIG
            if not path.is_file():
                continue
            try:
                data = yaml.safe_load(path.read_text()) or {}
            except yaml.YAMLError:
                continue
            if isinstance(data, dict):
                return data, path
    return {}, None


@dataclass
class DataInfo:
    """What the finder takes from the data directory: each photo's file and each person's age."""

    data_dir: Path | None = None
    files: dict[tuple[str, str], str] = field(default_factory=dict)  # (person, stem) -> image path
    ages: dict[str, int] = field(default_factory=dict)  # person -> age in years, after the experiment's relabels
    images: pd.DataFrame | None = None  # read_train's table after the experiment's relabels
    relabel: list[str] = field(default_factory=list)


def load_data_info(data_dir: str | Path | None, relabel: list[str], explicit: bool) -> DataInfo:
    """Read the data layout; a directory the user named must exist, the saved one may have moved."""
    if data_dir is None:
        return DataInfo(relabel=relabel)
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        if explicit:
            raise DataError(f"data directory {data_dir} does not exist (--data-dir)")
        log.warning("the experiment's data directory %s is not here: no images (pass --data-dir)", data_dir)
        return DataInfo(relabel=relabel)
    raw = read_train(data_dir)
    try:
        images, _ = apply_relabels(raw, relabel)
    except DataError as exc:
        log.warning("the experiment's corrections %s could not be applied (%s): using the labels as read", relabel, exc)
        images, relabel = raw, []
    files = {(p, s): f for p, s, f in zip(raw["person"], raw["stem"], raw["file"], strict=True)}
    ages = dict(zip(images["person"], images["age"].astype(int), strict=False))
    return DataInfo(data_dir, files, ages, images, list(relabel))
