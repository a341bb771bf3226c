"""Predicting images with trained models: every model of a preprocessing group over one read of the images,
in each test-time view (the flip done on the device), and the eval/ set merged over folds, views and heads into
the 18 classes."""

from __future__ import annotations

import logging
from collections import defaultdict
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from configs.config import Config
from core.atomic import atomic_path
from core.errors import ConfigError
from datamodules.cache import ImageCache
from datamodules.datamodule import make_loader
from datamodules.dataset import ImageDataset, worker_death
from datamodules.layout import read_eval
from datamodules.prepare import eval_cache
from datamodules.transforms import eval_augment, geometry_only
from inference.grouping import combine_embeddings
from inference.models import (
    age_cuts_note,
    check_compatible,
    find_checkpoints,
    inference_device,
    load_model,
    preprocessing_key,
    retrain_hint,
)
from lightning_modules.base import ClassifierModule
from lightning_modules.ensemble import combine_heads, merge
from lightning_modules.finite import check_finite_probs
from lightning_modules.hardware import autocast

log = logging.getLogger("predict")
TTA_VIEWS = {"none": [False], "flip": [False, True]}  # horizontal flip of each view


def predict_group(
    models: list[ClassifierModule],
    frame: pd.DataFrame,
    views: list[bool],
    cfg: Config,
    data_dir: Path,
    features: list[bool] | None = None,
):
    """Probabilities of each model over the evaluation images of ``frame`` (eval/info.csv's), one array per
    (model, view), read from the evaluation images' cache (see :func:`predict_images`, and for ``features``)."""
    cache = eval_cache(cfg, data_dir, frame["file"].tolist(), models[0].cfg.augment)
    return predict_images(models, frame["file"].tolist(), views, cfg, cache, features)


@torch.inference_mode()
def predict_images(
    models: list[ClassifierModule],
    files: list[str],
    views: list[bool],
    cfg: Config,
    cache: ImageCache | None,
    features: list[bool] | None = None,
):
    """Probabilities of each model over ``files``, one array per (model, view). The models share their
    preprocessing (the first one's), so each batch is read once (from ``cache``, made at that preprocessing,
    or decoded file by file when None) and fed to every model in every view (the flip is done on the device);
    ``cfg.loader`` sets the batch size and workers.

    With ``features`` (a flag per model), the same batches also give the flagged models' backbone features of
    the unflipped images, L2-normalised (``(N, D)`` float16; None for a model not flagged), and the result is
    ``(probabilities, features)``."""
    first = models[0]
    aug = first.cfg.augment
    dataset = ImageDataset(files, list(range(len(files))), eval_augment(), geometry=geometry_only(aug), cache=cache)
    loader = make_loader(cfg, dataset, persistent=False)
    outputs: list[list[list[torch.Tensor]]] = [[[] for _ in views] for _ in models]
    embedded: list[list[torch.Tensor] | None] = [[] if f else None for f in features or []]
    device = first.device
    desc = f"predicting ({len(models)} models x {len(views)} views)"
    try:
        for images, _ in tqdm(loader, desc=desc, unit="batch", disable=not cfg.trainer.progress_bar):
            images = images.to(device, non_blocking=True)
            for v, hflip in enumerate(views):
                view = images.flip(-1) if hflip else images
                for out, model in zip(outputs, models, strict=True):
                    with autocast(model):  # each model at the precision it was trained at
                        out[v].append(model.probabilities(view))
            if features:  # --group-people: each image's appearance, from the flagged models' backbones
                for found, model in zip(embedded, models, strict=True):
                    if found is not None:
                        with autocast(model):
                            feats = model.features(images).float()
                        found.append(torch.nn.functional.normalize(feats, dim=1).half())
    except (RuntimeError, ConnectionError, EOFError) as exc:
        died = worker_death(exc, [dataset])
        if died is None:
            raise
        raise died from None
    probs = [[torch.cat(o).cpu().numpy() for o in per_view] for per_view in outputs]
    if features is None:
        return probs
    return probs, [None if f is None else torch.cat(f).cpu().numpy() for f in embedded]


def predict_eval(
    cfg: Config,
    exp_dir: Path,
    data_dir: str | None,
    ensemble: str,
    tta: str,
    folds: list[str] | None,
    embed: bool = False,
    age_cuts: tuple[int, int] | None = None,
) -> tuple[pd.DataFrame, Path, np.ndarray | None]:
    """Per-head merged probabilities and the 18-class answer for every image of eval/info.csv, the data
    directory used (``data_dir``, else the one the checkpoints were trained on), and with ``embed`` an
    appearance embedding of each image (``(N, D)``, unit rows; else None) for grouping the photos of one person:
    the backbone features of the models that serve gender or age (a mask model's features tell the mask states
    apart, not the people), read in the same pass as the probabilities and joined by
    ``inference.grouping.combine_embeddings``, centred per predicted mask state. ``age_cuts``: ordinal age heads
    read at these cuts."""
    checkpoints = find_checkpoints(exp_dir, folds)
    if ensemble == "none":
        several = {t: len(c) for t, c in checkpoints.items() if len(c) > 1}
        if several:
            raise ConfigError(f"--ensemble none needs one checkpoint per task; found {several}: pass --folds")
    device = inference_device(cfg)
    models = {p: load_model(p, device, age_cuts) for paths in checkpoints.values() for p in paths}
    note = age_cuts_note(check_compatible(models, checkpoints["age"]))
    if note:
        log.info(note)
    data_dir = Path(data_dir or next(iter(models.values())).cfg.data.dir)
    frame = read_eval(data_dir)
    groups: dict[str, list[Path]] = defaultdict(list)
    for path, model in models.items():
        groups[preprocessing_key(model)].append(path)
    views = TTA_VIEWS[tta]
    per_model: dict[Path, list[np.ndarray]] = {}
    embedded = list(dict.fromkeys([*checkpoints["gender"], *checkpoints["age"]])) if embed else []
    features: dict[Path, np.ndarray] = {}
    for paths in groups.values():
        if embed:
            flags = [p in embedded for p in paths]
            probs, found = predict_group([models[p] for p in paths], frame, views, cfg, data_dir, flags)
            features.update((p, f) for p, f in zip(paths, found, strict=True) if f is not None)
        else:
            probs = predict_group([models[p] for p in paths], frame, views, cfg, data_dir)
        for path, views_probs in zip(paths, probs, strict=True):
            check_finite_probs(np.stack(views_probs, 1), path, retrain_hint(path))  # argmax reads NaN as class 0
            per_model[path] = views_probs
    out = pd.DataFrame({"ImageID": frame["ImageID"].tolist()})
    merged = {}
    for task, paths in checkpoints.items():
        # TTA views averaged per model; a multihead model's columns of this task
        stacked = np.stack([np.mean(per_model[p], axis=0)[:, models[p].head_slices()[task]] for p in paths])
        merged[task] = merge(stacked, ensemble)
        for k in range(merged[task].shape[1]):
            out[f"{task}_{k}"] = merged[task][:, k]
        log.info("%s: %d checkpoint(s) x %d view(s), %s ensemble", task, len(paths), len(views), ensemble)
    _, out["ans"] = combine_heads(merged["mask"], merged["gender"], merged["age"])
    if not embed:
        return out, data_dir, None
    embedding = combine_embeddings([features[p] for p in embedded], by=merged["mask"].argmax(1))
    log.info("appearance embedding: %d model(s)' backbone features -> %d dimensions", len(embedded), embedding.shape[1])
    return out, data_dir, embedding


def write_csv(frame: pd.DataFrame, path: Path) -> None:
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False, float_format="%.6f")
