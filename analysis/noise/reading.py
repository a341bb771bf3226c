"""What the noise finder reads: the experiments' out-of-fold predictions and saved config, and the data."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import yaml

from analysis.noise.truth import PLANTED, TRUTH_DIR, read_disputed, read_truth
from analysis.scoring import oof_age_cuts, oof_models, read_task_oof, task_oof_files, without_tta
from core.errors import DataError
from core.tasks import COMPETITION_AGE_CUTS, MULTIHEAD, TASK_NAMES, TASKS
from datamodules.layout import read_train
from datamodules.relabel import apply_relabels, read_reviewed
from rundir.layout import (
    BEST_CKPT,
    CONFIG,
    FULL,
    HOLDOUT,
    KEY,
    NEIGHBOURS,
    OOF_NEIGHBOURS,
    OOF_READINGS,
    exp_dir,
    fold_dirs,
    prob_columns,
)

log = logging.getLogger("noise")

WRITE_OPTIONS = {"flip": "--oof --tta flip", NEIGHBOURS: "--neighbours"}  # predict.py's, by the file it writes
NEIGHBOUR_TASKS = ("gender", "age")  # what --neighbours ranks on the votes: a person's traits, alike in every photo


def choose_tta(exp_dirs: Sequence[Path]) -> tuple[str, dict[str, list[Path]]]:
    """``flip`` where every fold has ``oof_flip.csv``, else ``none``; and by experiment its folds without it."""
    found = {Path(d).name: without_tta(Path(d)) for d in exp_dirs if Path(d).is_dir()}
    lacking = {name: files for name, files in found.items() if files}
    return ("none" if lacking else "flip"), lacking


def write_command(experiments: Iterable[str], reading: str) -> str:
    """The command that writes the out-of-fold files of ``reading`` (a key of WRITE_OPTIONS) of ``experiments``."""
    return " and ".join(f"python predict.py --exp {name} {WRITE_OPTIONS[reading]}" for name in experiments)


def read_oof_frames(exp_dir: Path, tta: str = "none") -> dict[str, pd.DataFrame]:
    """Each task's out-of-fold predictions (one row per photo, several folds' averaged)."""
    exp_dir = Path(exp_dir)
    if not exp_dir.is_dir():
        raise DataError(f"experiment {exp_dir.name!r} does not exist: no folder {exp_dir} (check --exp and --runs-dir)")
    frames = {}
    models = oof_models(exp_dir)  # the finished runs only, as the submission; the unfinished named in a warning
    for task in TASK_NAMES:
        df = read_task_oof(exp_dir, task, tta=tta, models=models[task])  # its own model's and a multihead model's
        if df is not None:
            means = dict.fromkeys(prob_columns(TASKS[task].num_classes), "mean")
            agg = dict.fromkeys(["image", "fold", "label"], "first") | means
            frames[task] = df.groupby(KEY, as_index=False, sort=True).agg(agg)
    if not frames:
        raise DataError(
            f"no out-of-fold predictions under {exp_dir}: expected <task>/fold<k>/{OOF_READINGS[tta]} for mask, gender "
            "or age (train.py writes them for every validated fold)"
        )
    return frames


def _ensemble_check(task: str, a: str, fa: pd.DataFrame, b: str, fb: pd.DataFrame) -> None:
    """Two experiments' frames of one task hold the same photos with the same labels, else a DataError."""
    keys_a, keys_b = fa.set_index(KEY).index, fb.set_index(KEY).index
    only = {a: keys_a.difference(keys_b), b: keys_b.difference(keys_a)}
    if any(len(k) for k in only.values()):
        said = "; ".join(f"{len(k)} only in {who} (e.g. {'/'.join(k[0])})" for who, k in only.items() if len(k))
        raise DataError(
            f"experiments {a} and {b} have out-of-fold {task} predictions for different photos: {said}. An "
            "ensemble averages each photo's predictions: train every experiment on the same data, every fold"
        )
    differ = fa["label"].to_numpy() != fb["label"].to_numpy()
    if differ.any():
        first = fa.loc[differ].iloc[0]
        raise DataError(
            f"experiments {a} and {b} give {int(differ.sum())} photos different {task} labels, e.g. "
            f"{first['person']}/{first['stem']}: {first['label']} in {a}, {fb.loc[differ, 'label'].iloc[0]} in {b}. "
            "They were trained with different corrections (data.relabel) or age cuts (data.age_cuts): an ensemble "
            "needs the same labels"
        )


@dataclass
class Ensemble:
    """Several experiments' out-of-fold predictions read as one (:func:`read_ensemble`)."""

    frames: dict[str, pd.DataFrame]  # task -> each photo's probabilities averaged over the experiments
    missing: list[str]  # the tasks no experiment predicted
    members: dict[str, list[str]]  # task -> the experiments averaged
    age_cuts: tuple[int, int]  # those of the experiments that predict age (the competition's when none does)


def read_ensemble(exp_dirs: list[Path], tta: str = "none") -> Ensemble:
    """Several experiments' out-of-fold predictions, each photo's averaged over those that predict its task; the
    same photos, labels and age cuts, else a DataError naming what differs."""
    read = {Path(d).name: read_oof_frames(Path(d), tta) for d in exp_dirs}  # distinct experiments
    cuts = {name: oof_age_cuts(Path(d)) for name, d in zip(read, exp_dirs, strict=True) if "age" in read[name]}
    if len(set(cuts.values())) > 1:
        listing = ", ".join(f"{list(c)} in {name}" for name, c in cuts.items())
        raise DataError(f"the experiments' age models use different data.age_cuts ({listing}): an ensemble needs one")
    frames, missing, members = {}, [], {}
    for task in TASK_NAMES:
        have = {name: f[task] for name, f in read.items() if task in f}
        if not have:
            missing.append(task)
            continue
        (a, first), *others = have.items()
        columns = prob_columns(TASKS[task].num_classes)
        total = first[columns].to_numpy(float)
        for b, other in others:
            _ensemble_check(task, a, first, b, other)
            total = total + other[columns].to_numpy(float)
        frames[task] = first.assign(**dict(zip(columns, (total / len(have)).T, strict=True)))
        members[task] = list(have)
    return Ensemble(frames, missing, members, next(iter(cuts.values()), COMPETITION_AGE_CUTS))


def read_neighbours(exp_dirs: Sequence[Path]) -> Ensemble:
    """Gender and age as voted by each photo's nearest training photos (``oof_neighbours.csv``); a fold's file
    missing or older than its ``best.ckpt`` is a DataError naming the command that writes them."""
    if not any(task_oof_files(Path(d), t) for t in NEIGHBOUR_TASKS for d in exp_dirs):
        raise DataError("--neighbours ranks gender and age, and the experiments predict neither: leave it out")
    missing: dict[str, list[Path]] = {}
    stale: dict[str, list[Path]] = {}
    for d, task in [(Path(d), task) for d in exp_dirs for task in NEIGHBOUR_TASKS]:
        for votes, ckpt in [(oof.parent / OOF_NEIGHBOURS, oof.parent / BEST_CKPT) for oof in task_oof_files(d, task)]:
            if not votes.is_file():
                missing.setdefault(d.name, []).append(votes)
            elif ckpt.is_file() and votes.stat().st_mtime < ckpt.stat().st_mtime:
                stale.setdefault(d.name, []).append(votes)
    for found, why in ((missing, "missing"), (stale, "older than the best.ckpt beside it")):
        if found:
            files = list(dict.fromkeys(f for fs in found.values() for f in fs))
            raise DataError(
                f"--neighbours: {len(files)} {OOF_NEIGHBOURS} file(s) {why} (e.g. {files[0]}): "
                f"{write_command(found, NEIGHBOURS)} writes them"
            )
    ensemble = read_ensemble(list(exp_dirs), NEIGHBOURS)
    ensemble.frames = {t: f for t, f in ensemble.frames.items() if t in NEIGHBOUR_TASKS}
    ensemble.members = {t: m for t, m in ensemble.members.items() if t in NEIGHBOUR_TASKS}
    return ensemble


def saved_config(exp_dir: Path) -> tuple[dict, Path | None]:
    """The experiment's saved config (the first ``<task>/fold<k>/config.yaml``, k-fold runs first) and its path."""
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


@dataclass
class Reviewed:
    """The units a reviewer looked at and kept as labelled (:func:`read_reviewed_units`)."""

    units: dict[str, set] = field(default_factory=dict)  # kind -> people (outlier: (person, stem) photos)
    files: list[str] = field(default_factory=list)  # the corrections files they came from

    def counts(self) -> dict[str, int]:
        return {kind: len(found) for kind, found in self.units.items() if found}


def read_reviewed_units(frames: dict[str, pd.DataFrame], data: DataInfo, extra: Sequence[str] = ()) -> Reviewed:
    """The ``reviewed`` units of the experiment's corrections files (one that does not fit: a warning) and of
    ``extra`` (``--reviewed``: a DataError)."""
    people = pd.concat([f[["person"]] for f in frames.values()], ignore_index=True)
    people["id"] = people["person"].str.split("_").str[0]
    if data.images is not None:
        people = pd.concat([people, data.images[["person", "id"]].astype(str)], ignore_index=True)
    people = people.drop_duplicates("person")
    found = Reviewed()
    named = [(n, True) for n in data.relabel] + [(n, False) for n in dict.fromkeys(extra) if n not in data.relabel]
    for name, own in named:
        try:
            units = read_reviewed(people, [name])
        except DataError as exc:
            if not own:
                raise DataError(f"--reviewed {name}: {exc}") from None
            log.warning("the experiment's corrections file %s: its reviewed units are not used (%s)", name, exc)
            continue
        if any(units.values()):
            found.files.append(name)
        elif not own:
            log.warning("--reviewed %s lists no units under reviewed: (see datamodules/relabel.py)", name)
        for kind, got in units.items():
            found.units.setdefault(kind, set()).update(got)
    return found


def read_experiments(names: list[str], runs_dir, data_dir, neighbours: bool) -> tuple:
    """The experiments' out-of-fold predictions (flip TTA where every fold has it), config, data and truth."""
    dirs = [exp_dir(runs_dir, n) for n in names]
    tta, lacking = choose_tta(dirs)
    if lacking:
        log.warning(
            "%d fold(s) have no out-of-fold predictions in flip TTA (runs trained before training wrote them), so "
            "the ranking reads those without TTA; the flip TTA's predictions rank label errors better: %s writes "
            "them",
            sum(map(len, lacking.values())),
            write_command(lacking, "flip"),
        )
    ensemble = read_ensemble(dirs, tta)
    if ensemble.missing:
        log.warning("no out-of-fold predictions for %s: those checks are skipped", ", ".join(ensemble.missing))
    for task, averaged in ensemble.members.items():
        if len(names) > 1 and len(averaged) < len(names):
            log.warning("%s: predicted by %s only: the ensemble reads it from them", task, ", ".join(averaged))
    person_frames = read_neighbours(dirs).frames if neighbours else {}
    config, config_path = saved_config(dirs[0])  # the first experiment's config and data
    data_cfg = config.get("data") or {}
    relabel = [str(r) for r in data_cfg.get("relabel") or []]
    data = load_data_info(data_dir or data_cfg.get("dir"), relabel, explicit=data_dir is not None)
    truth = None
    if data.data_dir is not None and (data.data_dir / TRUTH_DIR / PLANTED).is_file():
        truth = read_truth(data.data_dir), read_disputed(data.data_dir)  # read first: a bad file stops here
    return ensemble, person_frames, config_path, data, truth, tta, lacking
