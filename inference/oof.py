"""The out-of-fold estimate of the submission: each fold's out-of-fold predictions in the submission's
test-time views (the ``oof.csv`` or ``oof_flip.csv`` files training wrote, or the validation images
re-predicted by the fold's models), scored, written and logged."""

from __future__ import annotations

import copy
import json
import logging
from collections import defaultdict
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.scoring import (
    RERUN_FOR_AGE,
    merge_models,
    no_oof_error,
    oof_age_cuts,
    oof_models,
    read_oof_csv,
    read_oof_file,
    score_frames,
    score_oof,
    task_oof_files,
    without_tta,
)
from callbacks.wandb_run import log_report
from configs.config import Config, load_config
from core.atomic import atomic_path, write_text_atomic
from core.errors import ConfigError, DataError
from core.tasks import TASK_NAMES, TASKS, age_group
from datamodules.layout import read_train
from datamodules.prepare import PreparedData, prepare
from datamodules.relabel import apply_relabels
from inference.models import CHECKPOINT, inference_device, load_model, preprocessing_key, retrain_hint
from inference.predictor import TTA_VIEWS, predict_images
from lightning_modules.finite import check_finite_probs
from rundir.layout import (
    AGE,
    CONFIG,
    FULL,
    KEY,
    OOF,
    OOF_CONFUSION,
    OOF_FILES,
    OOF_SCORES,
    prob_columns,
    task_models,
)

log = logging.getLogger("predict")


def data_config(model_cfg: Config, data_dir: str | Path | None) -> Config:
    """A checkpoint's own config (its data, corrections and preprocessing), pointed at ``data_dir`` if given."""
    cfg = copy.deepcopy(model_cfg)
    if data_dir is not None:
        cfg.data.dir = str(data_dir)
    return cfg


def predict_fold(
    cfg: Config,
    rows: dict[tuple[str, Path], pd.DataFrame],
    views: list[bool],
    data_dir: str | None,
    prepared: dict[str, PreparedData],
    age_cuts: tuple[int, int] | None = None,
    save: str | None = None,
) -> dict[tuple[str, Path], np.ndarray]:
    """``(task, source) -> probabilities`` over ``rows[task, source]`` (one fold's OOF rows of a task, from the
    out-of-fold file ``source``), predicted anew by the ``best.ckpt`` beside each source and averaged over
    ``views``. The fold's models share its validation images, so each batch is read once (from the training images'
    cache, at the models' own preprocessing) and fed to all of them. ``prepared`` keeps each data set read, across
    folds. With ``save`` (a file name), each source is written again beside itself under that name, with every
    head's new probabilities (as training writes its out-of-fold files)."""
    device = inference_device(cfg)
    sources = list(dict.fromkeys(source for _, source in rows))
    models = {s.parent / CHECKPOINT: load_model(s.parent / CHECKPOINT, device, age_cuts) for s in sources}
    keys = pd.concat([r[KEY] for r in rows.values()]).drop_duplicates().reset_index(drop=True)
    groups: dict[str, list[Path]] = defaultdict(list)
    for path, model in models.items():
        groups[preprocessing_key(model)].append(path)
    per_model: dict[Path, np.ndarray] = {}
    for paths in groups.values():
        data = fold_data(cfg, models[paths[0]], data_dir, prepared)
        files = data.images["file"].to_numpy()[image_rows(data, keys, sources[0].parent)]
        probs = predict_images([models[p] for p in paths], files.tolist(), views, cfg, data.train_cache)
        for path, views_probs in zip(paths, probs, strict=True):
            check_finite_probs(np.stack(views_probs, 1), path, retrain_hint(path))
            per_model[path] = np.mean(views_probs, axis=0)
    index = pd.MultiIndex.from_frame(keys)
    if save is not None:
        for source in sources:
            write_beside(source, save, per_model[source.parent / CHECKPOINT], index)
    out = {}
    for (task, source), r in rows.items():
        ckpt = source.parent / CHECKPOINT
        out[task, source] = per_model[ckpt][index.get_indexer(pd.MultiIndex.from_frame(r[KEY]))][
            :, models[ckpt].head_slices()[task]
        ]
    return out


def fold_data(cfg: Config, model, data_dir: str | None, prepared: dict[str, PreparedData]) -> PreparedData:
    """The data ``model`` was trained on (its checkpoint's data settings, pointed at ``data_dir`` if given), at its
    preprocessing; ``prepared`` keeps each data set read, so that it is read once across folds and models."""
    data_cfg = data_config(model.cfg, data_dir)
    data_key = json.dumps([preprocessing_key(model), data_cfg.to_dict()["data"]], sort_keys=True)
    if data_key not in prepared:
        prepared[data_key] = prepare(data_cfg, progress=cfg.trainer.progress_bar)
    return prepared[data_key]


def image_rows(data: PreparedData, keys: pd.DataFrame, where: Path) -> np.ndarray:
    """The row of ``data.images`` of each image of ``keys`` (person, stem: the out-of-fold images of the run at
    ``where``), in order; a DataError when some are not in the data."""
    rows = pd.MultiIndex.from_frame(data.images[KEY]).get_indexer(pd.MultiIndex.from_frame(keys[KEY]))
    if (rows < 0).any():
        person, stem = keys.loc[rows < 0, KEY].iloc[0]
        raise DataError(
            f"{where}: {int((rows < 0).sum())} out-of-fold image(s), e.g. {person}/{stem}, are not in the data at "
            f"{data.data_dir}: pass the data the models were trained on with --data-dir"
        )
    return rows


def write_beside(source: Path, name: str, probs: np.ndarray, index: pd.MultiIndex) -> Path:
    """``source`` (an out-of-fold file) written beside itself as ``name``, its probability columns replaced by
    ``probs`` (every head's; a row per image of ``index``); the file written."""
    frame = read_oof_csv(source)
    columns = prob_columns(probs.shape[1])
    rows = index.get_indexer(pd.MultiIndex.from_frame(frame[KEY]))
    stale = [c for c in frame.columns if c.startswith("prob_") and c not in columns]
    if (rows < 0).any() or stale or not set(columns) <= set(frame.columns):
        raise DataError(f"{source}: its rows or probability columns are not those its model predicts: retrain the fold")
    frame[columns] = probs[rows]
    with atomic_path(source.parent / name) as tmp:
        frame.to_csv(tmp, index=False, float_format="%.6f")
    return source.parent / name


def repredict_oof(
    cfg: Config,
    exp_dir: Path,
    folds: list[str] | None,
    views: list[bool],
    data_dir: str | None = None,
    age_cuts: tuple[int, int] | None = None,
    save: str | None = None,
) -> dict[str, pd.DataFrame]:
    """Each task's out-of-fold rows of ``folds`` (default: the k-fold runs), their probabilities predicted anew
    by each fold's ``best.ckpt`` in ``views``, averaged, as the submission predicts eval/: so that the OOF
    score estimates the submission's. Labels and ages stay those of the oof.csv files; with ``age_cuts`` (ordinal
    age heads read at other cuts) the age labels are those of the raw ages at these cuts. With ``save`` (a file
    name: ``oof_flip.csv``), each fold's predictions are also written under it beside its ``oof.csv``."""
    models = oof_models(exp_dir, folds)
    by_fold: dict[str, dict[Path, list[str]]] = defaultdict(dict)  # fold folder -> oof.csv -> the tasks it serves
    for task in TASK_NAMES:
        files = models[task].files(OOF)
        if not files:
            raise no_oof_error(exp_dir, task, folds)
        for f in files:
            by_fold[f.parent.name].setdefault(f, []).append(task)
    parts: dict[str, dict[Path, pd.DataFrame]] = {task: {} for task in TASK_NAMES}
    prepared: dict[str, PreparedData] = {}
    for fold, files in by_fold.items():
        rows = {(task, f): read_oof_file(f, task) for f, tasks in files.items() for task in tasks}
        probs = predict_fold(cfg, rows, views, data_dir, prepared, age_cuts, save)
        for (task, f), frame in rows.items():
            frame[prob_columns(TASKS[task].num_classes)] = probs[task, f]
            if age_cuts is not None and task == "age":
                if AGE not in frame.columns:
                    raise DataError(f"{f}: no age column to label the age groups at {list(age_cuts)}: {RERUN_FOR_AGE}")
                frame["label"] = age_group(frame[AGE], age_cuts)
            parts[task][f] = frame
        saved = f", written to {save} beside each" if save else ""
        log.info("re-predicted %s: %s, %d view(s)%s", fold, ", ".join(map(str, files)), len(views), saved)
    return {task: merge_models(p, task) for task, p in parts.items()}


def data_images(exp_dir: Path, folds: list[str] | None, data_dir: str | None) -> int | None:
    """How many images the data the models were trained on holds (``data_dir``, else their saved data.dir, after
    their corrections' exclusions): what an out-of-fold score over every fold covers; None when it cannot be read."""
    files = task_oof_files(exp_dir, "mask", folds)
    try:
        saved = load_config(None, [files[0].parent / CONFIG], []).data
        images, _ = apply_relabels(read_train(data_dir or saved.dir), saved.relabel)
    except (IndexError, OSError, ConfigError, DataError):
        return None
    return len(images)


def print_oof(report: dict) -> None:
    """The OOF scores, and the competition-cut ones too when the age models' cuts are not the competition's."""
    total = f" of {report['data_images']}" if report.get("data_images") else ""
    print(
        f"out-of-fold (TTA {report['tta']}): 18-class macro F1 {report['f1']:.4f}, accuracy {report['accuracy']:.4f} "
        f"over {report['images']}{total} images; per-task F1 {report['task_f1']}"
    )
    competition = report["competition"]
    if report["age_cuts"] == competition["age_cuts"]:
        return
    cuts = "/".join(str(c) for c in competition["age_cuts"])
    own = "/".join(str(c) for c in report["age_cuts"])
    if competition["f1"] is None:
        print(f"at the competition's age cuts {cuts} (the models': {own}): no score, {competition['note']}")
        return
    print(
        f"at the competition's age cuts {cuts} (the models': {own}; what the leaderboard measures): 18-class "
        f"macro F1 {competition['f1']:.4f}, accuracy {competition['accuracy']:.4f}; per-task F1 "
        f"{competition['task_f1']}"
    )


def write_oof_report(
    cfg: Config,
    exp_dir: Path,
    folds: list[str] | None = None,
    tta: str = "none",
    data_dir: str | None = None,
    age_cuts: tuple[int, int] | None = None,
) -> dict:
    """Score the out-of-fold predictions of ``folds`` (default: the k-fold runs); write oof_scores.json (which
    says the TTA used) and oof_confusion.png, and log them to W&B when it is on. ``tta="none"`` reads the
    oof.csv files; ``"flip"`` the oof_flip.csv files training wrote beside them (each validation image and its
    mirror, as the submission predicts eval/). Where a fold has none (trained before training wrote them),
    each fold's validation images are re-predicted with its best.ckpt in both views (from the data at
    ``data_dir``, default the checkpoints' data.dir), and its oof_flip.csv is written.
    ``age_cuts``: ordinal age heads re-predicted with their groups at these cuts (scored at them, and at the
    competition's)."""
    if folds and FULL in folds:
        raise ConfigError(
            "--oof with --folds naming full: the full run trains on every image and has no out-of-fold predictions; "
            "leave full out of --folds"
        )
    png = exp_dir / OOF_CONFUSION
    if age_cuts is None and (tta == "none" or not without_tta(exp_dir, folds, tta)):
        report = score_oof(exp_dir, png, folds, tta)  # as training wrote them
    else:
        save = OOF_FILES[tta] if age_cuts is None else None  # for the runs trained before it wrote them
        frames = repredict_oof(cfg, exp_dir, folds, TTA_VIEWS[tta], data_dir, age_cuts, save)
        report = score_frames(frames, age_cuts or oof_age_cuts(exp_dir, folds), png, str(exp_dir))
    models = {t: task_models(exp_dir, t, folds) for t in TASK_NAMES}  # what was scored (logged by the reading)
    report = {"tta": tta, **report, "data_images": data_images(exp_dir, folds, data_dir)}
    report["models"] = {t: {"task": len(m.own), "multihead": len(m.multihead)} for t, m in models.items()}
    report["left_out"] = sorted({str(r.relative_to(exp_dir)) for m in models.values() for r in m.unfinished})
    write_text_atomic(exp_dir / OOF_SCORES, json.dumps(report, indent=2))
    competition = {f"competition/{k}": report["competition"].get(k) for k in ("f1", "accuracy")}
    logged = {**report, **{k: v for k, v in competition.items() if v is not None}}
    log_report(cfg, "oof", logged, {"oof/confusion_matrix": png})
    print_oof(report)
    print(f"scores: {exp_dir / OOF_SCORES}; confusion matrix: {png}")
    return report
