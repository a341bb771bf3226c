"""The nearest training images' votes: for each fold's model, every validation image's labels as voted by the
``k`` training images nearest it in that model's feature space (the backbone's pooled features, cosine), written
beside the fold's ``oof.csv`` as ``oof_neighbours.csv`` (same rows and columns; each head's probabilities
replaced by the share of the neighbours given each class).

A model's head can be sure and wrong about a kind of photo (a weak model misreads older people's gender alike),
yet its features still place a photo among photos like it. A mislabelled person's photos then sit among
photos labelled otherwise, whatever the head says: the deep k-nearest-neighbour check of label noise (Bahri,
Jiang and Gupta, ICML 2020). The noise finder ranks the person-level kinds (gender, age) on these votes with
``--neighbours``."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from analysis.scoring import read_oof_csv
from configs.config import Config
from core.errors import ConfigError, DataError
from core.tasks import MULTIHEAD, TASK_NAMES
from datamodules.folds import select
from datamodules.prepare import PreparedData
from inference.models import CHECKPOINT, inference_device, load_model
from inference.oof import fold_data, image_rows, write_beside
from inference.predictor import predict_images
from rundir.layout import FOLD_PREFIX, KEY, OOF, OOF_NEIGHBOURS, fold_dirs

log = logging.getLogger("predict")

NEIGHBOURS_K = 20  # each validation image's nearest training images that vote (predict.py --neighbours K)
LABEL_COLUMNS = {"mask": "mask", "gender": "gender", "age": "age_group"}  # each head's class, in the data's table
CHUNK = 4096  # validation images compared with every training image at once


def neighbour_votes(val: torch.Tensor, train: torch.Tensor, labels: np.ndarray, classes: int, k: int) -> np.ndarray:
    """``(len(val), classes)``: for each row of ``val`` (unit feature vectors), the share of its ``k`` nearest rows
    of ``train`` (by cosine similarity) whose label (``labels``, one per row of ``train``) is each class."""
    if len(train) < k:
        raise DataError(f"{len(train)} training images: fewer than the {k} neighbours asked for (--neighbours K)")
    targets = torch.as_tensor(labels, dtype=torch.long, device=train.device)
    out = []
    for start in range(0, len(val), CHUNK):
        nearest = (val[start : start + CHUNK] @ train.T).topk(k, dim=1).indices
        out.append(torch.nn.functional.one_hot(targets[nearest], classes).float().mean(1))
    if not out:
        return np.zeros((0, classes), dtype=np.float32)
    return torch.cat(out).cpu().numpy()


def run_fold(run: Path) -> int | str:
    """``fold3`` -> 3, ``foldholdout`` -> ``holdout``."""
    name = run.name.removeprefix(FOLD_PREFIX)
    return int(name) if name.isdigit() else name


def fold_votes(
    cfg: Config, run: Path, k: int, data_dir: str | None, prepared: dict[str, PreparedData]
) -> tuple[np.ndarray, pd.MultiIndex]:
    """Every head's votes (side by side, as the run's oof.csv holds its probabilities) for the run's
    out-of-fold images, and those images' keys. ``prepared`` keeps each data set read, across runs."""
    device = inference_device(cfg)
    model = load_model(run / CHECKPOINT, device)
    data = fold_data(cfg, model, data_dir, prepared)
    oof = read_oof_csv(run / OOF)
    images = data.images
    train_people, _ = select(images[["person", "fold", "holdout"]].drop_duplicates(), run_fold(run))
    val_rows = image_rows(data, oof, run)
    train_rows = np.flatnonzero(images["person"].isin(train_people) & ~images["person"].isin(set(oof["person"])))
    rows = np.concatenate([val_rows, train_rows])
    _, features = predict_images(
        [model], images["file"].iloc[rows].tolist(), [False], cfg, data.train_cache, features=[True]
    )
    found = torch.as_tensor(features[0], dtype=torch.float32, device=device)
    val, train = found[: len(val_rows)], found[len(val_rows) :]
    votes = []
    for head, cols in model.head_slices().items():
        labels = images[LABEL_COLUMNS[head]].to_numpy()[train_rows]
        votes.append(neighbour_votes(val, train, labels, cols.stop - cols.start, k))
    log.info(
        "%s: %d out-of-fold images, each voted by its %d nearest of %d training images (%s)",
        run,
        len(val_rows),
        k,
        len(train_rows),
        ", ".join(model.head_slices()),
    )
    return np.concatenate(votes, 1), pd.MultiIndex.from_frame(oof[KEY])


def write_neighbours(
    cfg: Config, exp_dir: Path, folds: list[str] | None, k: int = NEIGHBOURS_K, data_dir: str | None = None
) -> list[Path]:
    """Write ``oof_neighbours.csv`` beside the ``oof.csv`` of each run of ``folds`` (default: the k-fold runs)
    of every task and multihead model of ``exp_dir`` that has a ``best.ckpt``; the files written."""
    if k < 1:
        raise ConfigError(f"--neighbours {k}: the number of neighbours must be at least 1")
    runs = [
        run
        for owner in (*TASK_NAMES, MULTIHEAD)
        for run in fold_dirs(exp_dir / owner, folds)
        if (run / OOF).is_file() and (run / CHECKPOINT).is_file()
    ]
    if not runs:
        which = f" for folds {','.join(folds)}" if folds else ""
        raise DataError(
            f"no run under {exp_dir} has both {CHECKPOINT} and {OOF}{which}: the neighbours vote on the out-of-fold "
            "images of trained folds (the full-data run has none)"
        )
    prepared: dict[str, PreparedData] = {}
    written = []
    for run in runs:
        votes, keys = fold_votes(cfg, run, k, data_dir, prepared)
        written.append(write_beside(run / OOF, OOF_NEIGHBOURS, votes, keys))
    return written
