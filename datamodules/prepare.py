"""Everything the data layer does before a model sees a batch, cached per data set fingerprint.

``prepare(cfg)``: find the data, read the layout, check every image decodes, apply the
corrections files, write or reuse the person splits and choose the normalisation.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from configs.config import AugmentConfig, Config
from core.atomic import write_text_atomic
from core.errors import DataError, raise_collected
from core.tasks import age_group, class18
from datamodules.cache import ImageCache, build_cache, cache_key
from datamodules.decode import read_rgb
from datamodules.fingerprint import cache_dir_for, data_fingerprint, write_json_atomic
from datamodules.folds import load_or_make_splits
from datamodules.layout import check_data_dir, read_eval, read_train
from datamodules.relabel import apply_relabels, corrections_fingerprint
from datamodules.scan import find_undecodable
from datamodules.transforms import IMAGENET_MEAN, IMAGENET_STD, dataset_statistics, geometry_only

log = logging.getLogger(__name__)
STATS_SAMPLE = 1000


@dataclass
class PreparedData:
    data_dir: Path
    fingerprint: str  # the data set's (see data_fingerprint), then "+" the corrections files' when there are any
    cache: Path
    images: pd.DataFrame  # one row per image after corrections, with labels, fold and holdout columns
    changes: pd.DataFrame  # what the corrections files changed
    mean: list[float]
    std: list[float]
    train_cache: ImageCache | None = None  # the training images, resized and cropped (data.cache_images)


CHECK_MARKER = "images-checked-v3.json"  # v3: a verdict per file with its size and mtime


def _file_state(path: str) -> list[int] | None:
    """``[size, mtime_ns]`` of ``path`` (through links), the key of its check; None when it cannot be read."""
    try:
        st = os.stat(path)
    except OSError:  # a dangling link: never trusted, so checked (and named) every time
        return None
    return [st.st_size, st.st_mtime_ns]


def _read_marker(marker: Path) -> dict[str, list]:
    try:
        known = dict(json.loads(marker.read_text())["files"])
    except (OSError, ValueError, KeyError, TypeError):  # absent, or an older format: check everything
        return {}
    return {f: v for f, v in known.items() if isinstance(v, list) and len(v) == 3}  # damaged verdicts: again


def _bad_images(files: list[str], cache: Path, progress: bool) -> dict[str, str]:
    """File -> why, for each of ``files`` that does not decode. Each verdict is kept in ``cache`` with the
    file's size and mtime, so a later call decodes only the files that are new or changed since."""
    marker = cache / CHECK_MARKER
    known = _read_marker(marker)
    state = {f: _file_state(f) for f in files}  # before decoding: a file changed meanwhile is checked again
    todo = [f for f in files if state[f] is None or f not in known or known[f][:2] != state[f]]
    found = dict(find_undecodable(todo, progress=progress)) if todo else {}
    checked = set(todo)
    verdicts = {f: [*(state[f] or [None, None]), found.get(f)] if f in checked else known[f] for f in files}
    if verdicts != known:
        write_text_atomic(marker, json.dumps({"files": verdicts}))
    return {f: v[2] for f, v in verdicts.items() if v[2] is not None}


def _check_images(train_files: list[str], eval_files: list[str], cache: Path, skip_bad: bool, progress: bool):
    """Decode every image once (re-checking a file when its size or mtime changes); return the training
    images to leave out with ``skip_bad``, else stop with one message listing every bad file. Evaluation
    images are never skipped: the submission needs an answer for each of them."""
    bad = _bad_images(train_files + eval_files, cache, progress)
    listing = [f"{f}: {why}" for f, why in bad.items()]
    if not skip_bad:
        raise_collected(listing, "some images cannot be decoded (fix or remove them, or pass --skip-bad)")
    in_eval = set(eval_files)
    raise_collected(
        [f"{f}: {why}" for f, why in bad.items() if f in in_eval],
        "some evaluation images cannot be decoded; --skip-bad cannot leave them out, since the submission "
        "needs an answer for each: fix or replace them",
    )
    if bad:
        log.warning("--skip-bad: leaving out %d undecodable training image(s):\n  %s", len(bad), "\n  ".join(listing))
    return set(bad)


def _sample_key(files: list[str], aug: AugmentConfig) -> str:
    """The pixel cache's key (path, size, mtime of each file, and the preprocessing) of the sampled files."""
    try:
        return cache_key(files, aug)
    except OSError as exc:  # a dangling link, when the image check is off
        raise DataError(f"{exc.filename}: cannot be read ({exc.strerror})") from None


def _cached_stats(path: Path, key: str) -> dict | None:
    """The statistics in ``path`` when they were computed from the files and preprocessing ``key`` names."""
    try:
        stats = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return stats if isinstance(stats, dict) and stats.get("key") == key else None


def _normalisation(cfg: Config, files: list[str], cache: Path, images: ImageCache | None) -> tuple[list, list]:
    """Mean and std per channel: ImageNet's for pretrained backbones, else those of (a sample of) the
    training images, cached with the key of the sampled files, so a replaced photo is measured anew."""
    mode = cfg.augment.normalization
    if mode == "imagenet" or (mode == "auto" and (cfg.model.pretrained or cfg.model.pretrained_file)):
        return list(IMAGENET_MEAN), list(IMAGENET_STD)
    aug = cfg.augment
    path = cache / f"stats-{aug.resize_height}x{aug.resize_width}-c{aug.crop}.json"
    rng = np.random.default_rng(0)
    sample = [files[i] for i in sorted(rng.choice(len(files), size=min(STATS_SAMPLE, len(files)), replace=False))]
    key = _sample_key(sample, aug)  # before reading: a file changed meanwhile makes the statistics stale
    stats = _cached_stats(path, key)
    if stats is not None:
        return stats["mean"], stats["std"]
    if images is not None:
        mean, std = dataset_statistics(images.image(r) for r in images.rows(sample))
    else:
        geometry = geometry_only(aug)
        mean, std = dataset_statistics(geometry(image=read_rgb(f))["image"] for f in sample)
    write_json_atomic(path, {"mean": mean, "std": std, "images": len(sample), "key": key})
    log.info("normalisation from %d training images: mean %s std %s", len(sample), mean, std)
    return mean, std


def prepare(cfg: Config, progress: bool = True) -> PreparedData:
    """Read, check, correct and split the training data described by ``cfg.data``."""
    data_dir = check_data_dir(cfg.data.dir)
    fingerprint = data_fingerprint(data_dir)
    cache = cache_dir_for(cfg.data.cache_dir, fingerprint)
    raw = read_train(data_dir)
    eval_files = []
    if (data_dir / "eval" / "info.csv").is_file():  # a broken eval set stops us now, not after training
        eval_files = read_eval(data_dir)["file"].tolist()
    if cfg.data.validate_images:
        bad = _check_images(raw["file"].tolist(), eval_files, cache, cfg.data.skip_bad, progress)
        raw = raw[~raw["file"].isin(bad)].reset_index(drop=True)
    people = raw.drop_duplicates("person")[["person", "gender", "age"]]
    fold_seed = cfg.seed if cfg.data.fold_seed is None else cfg.data.fold_seed
    splits = load_or_make_splits(people, cache, cfg.data.n_folds, cfg.data.holdout_fraction, fold_seed)
    images, changes = apply_relabels(raw, cfg.data.relabel)
    if images.empty:
        raise DataError("the corrections files exclude every image: nothing is left to train on")
    images["age_group"] = age_group(images["age"], cfg.data.age_cuts)
    images["label"] = class18(images["mask"], images["gender"], images["age_group"])
    images = images.merge(splits, on="person", how="left")
    for change in changes.itertuples():
        log.info("relabel (%s): %s %s %s: %s -> %s", *change[1:])
    train_cache = None
    if cfg.data.cache_images:
        train_cache = build_cache(raw["file"].tolist(), cfg.augment, cache, "train", progress=progress)
    mean, std = _normalisation(cfg, raw["file"].tolist(), cache, train_cache)
    corrections = corrections_fingerprint(cfg.data.relabel)  # what a checkpoint was trained on, labels included
    fingerprint = f"{fingerprint}+{corrections}" if corrections else fingerprint
    return PreparedData(data_dir, fingerprint, cache, images, changes, mean, std, train_cache)


def eval_cache(cfg: Config, data_dir: Path, files: list[str], aug: AugmentConfig, progress: bool = True):
    """The evaluation images' cache for the preprocessing ``aug`` (None when caching is off)."""
    if not cfg.data.cache_images:
        return None
    cache = cache_dir_for(cfg.data.cache_dir, data_fingerprint(data_dir))
    return build_cache(files, aug, cache, "eval", progress=progress)
