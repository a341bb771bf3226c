"""The LightningDataModule for one (task, fold): ``(image, label)`` batches, and ``(image, image_id)``
batches of the evaluation images for prediction."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from configs.config import Config
from core.errors import ConfigError
from core.tasks import MULTIHEAD, MULTIHEAD_TASK, TASKS, with_competition_labels
from datamodules.cache import usable_cpus
from datamodules.dataset import ImageDataset, seed_worker
from datamodules.folds import select
from datamodules.layout import read_eval
from datamodules.prepare import PreparedData, eval_cache, prepare
from datamodules.sampler import BalancedSampler, ShuffleSampler
from datamodules.shard import ShardSampler
from datamodules.transforms import eval_augment, geometry_only, train_augment


def parse_fold(fold: int | str, n_folds: int) -> int | str:
    """``"2"`` -> 2; ``holdout`` and ``full`` stay names; anything else is an error naming the choices."""
    if isinstance(fold, str) and fold in ("holdout", "full"):
        return fold
    try:
        k = int(fold)
    except (TypeError, ValueError):
        k = -1
    if not 0 <= k < n_folds:
        raise ConfigError(f"fold {fold!r} does not exist: choose 0..{n_folds - 1}, holdout or full")
    return k


class MaskDataModule(pl.LightningDataModule):
    """Data for one task (``mask``, ``gender`` or ``age``) and one fold (index, ``holdout`` or ``full``)."""

    def __init__(
        self, cfg: Config, task: str, fold: int | str = 0, progress: bool = True, data: PreparedData | None = None
    ):
        """``data``: the result of ``prepare(cfg)`` when the caller has it already (it is not redone)."""
        super().__init__()
        if task not in TASKS and task != MULTIHEAD:
            raise ConfigError(f"unknown task {task!r}: choose one of {', '.join(TASKS)} or {MULTIHEAD}")
        self.cfg = cfg
        self.task = TASKS[task] if task != MULTIHEAD else MULTIHEAD_TASK
        self.fold = parse_fold(fold, cfg.data.n_folds)
        self.progress = progress
        self.data = data
        self.datasets: list[ImageDataset] = []

    def prepare_data(self) -> None:
        if self.data is None:  # generation, image check, split and stats files, all cached on disk
            prepare(self.cfg, progress=self.progress)

    def setup(self, stage: str | None = None) -> None:
        if self.data is None:
            self.data = prepare(self.cfg, progress=False)
        images = with_competition_labels(self.data.images)
        train_people, val_people = select(images[["person", "fold", "holdout"]].drop_duplicates(), self.fold)
        self.train_frame = images[images["person"].isin(train_people)].reset_index(drop=True)
        self.val_frame = images[images["person"].isin(val_people)].reset_index(drop=True)

    @property
    def mean_std(self) -> tuple[list[float], list[float]]:
        return self.data.mean, self.data.std

    def with_age(self, columns: list[str]) -> list[str]:
        """``columns`` and, for a model with the ordinal age head that learns from it, the person's age."""
        ordinal = self.cfg.model.age_head == "ordinal" and self.task.name in ("age", MULTIHEAD)
        return [*columns, "age"] if ordinal else columns

    def labels(self, frame: pd.DataFrame) -> list:
        """The targets: the task's class per image; for multihead a (mask, gender, age group) row each (and the
        age last, for the ordinal age head)."""
        columns = self.with_age(["mask", "gender", "age_group"] if self.task is MULTIHEAD_TASK else [self.task.column])
        if len(columns) == 1:
            return frame[columns[0]].astype(int).tolist()
        return list(frame[columns].to_numpy(dtype=np.int64, copy=True))

    def val_targets(self, frame: pd.DataFrame) -> list:
        """Validation targets: the training label, then the label at the competition's age cuts (for multihead:
        mask, gender, age group, age group at the competition's cuts), so both scores are kept (and the age last,
        for the ordinal age head)."""
        if self.task is MULTIHEAD_TASK:
            columns = ["mask", "gender", "age_group", "age_group_competition"]
        else:
            columns = [self.task.column, self.task.competition_column]
        return list(frame[self.with_age(columns)].to_numpy(dtype=np.int64, copy=True))

    def sampler_labels(self, frame: pd.DataFrame) -> list[int]:
        """What the balanced sampler balances: the task's classes (for multihead, the 18 classes)."""
        return frame[self.task.column].astype(int).tolist()

    def _loader(self, dataset, sampler=None, persistent: bool = True) -> DataLoader:
        return make_loader(self.cfg, dataset, sampler, persistent)

    def dataset(self, frame: pd.DataFrame, transform, targets, cache, seed: int = 0, rank: int = 0) -> ImageDataset:
        geometry = geometry_only(self.cfg.augment)
        dataset = ImageDataset(frame["file"], targets, transform, seed, geometry=geometry, cache=cache, rank=rank)
        self.datasets.append(dataset)  # to name the file a dead worker was reading
        return dataset

    def _rank_world(self) -> tuple[int, int]:
        trainer = self.trainer
        return (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)

    def train_dataloader(self) -> DataLoader:
        labels = self.labels(self.train_frame)
        transform = train_augment(self.cfg.augment, self.data.mean)
        rank, world = self._rank_world()
        dataset = self.dataset(self.train_frame, transform, labels, self.data.train_cache, self.cfg.seed, rank)
        balance = self.sampler_labels(self.train_frame)
        if self.cfg.loader.sampler == "balanced":
            sampler = BalancedSampler(balance, len(balance), self.cfg.seed, rank, world)
        else:
            sampler = ShuffleSampler(balance, self.cfg.seed, rank, world)
        return self._loader(dataset, sampler)

    def val_dataloader(self) -> DataLoader:
        dataset = self.dataset(self.val_frame, eval_augment(), self.val_targets(self.val_frame), self.data.train_cache)
        # several processes (devices x nodes): each validates (and predicts) its own rows, every image once; the
        # sampler reads its rank when iterated (under ddp_spawn this loader is made before the processes exist)
        sampler = ShardSampler(len(self.val_frame)) if self._rank_world()[1] > 1 else None
        return self._loader(dataset, sampler)

    def eval_dataset(self, hflip: bool = False) -> ImageDataset:
        """The competition's evaluation images in info.csv order, as ``(image, ImageID)``."""
        frame = read_eval(self.data.data_dir)
        cache = eval_cache(self.cfg, self.data.data_dir, frame["file"].tolist(), self.cfg.augment, self.progress)
        return self.dataset(frame, eval_augment(hflip), frame["ImageID"].tolist(), cache)

    def predict_dataloader(self) -> DataLoader:
        return self._loader(self.eval_dataset(), persistent=False)


def loader_workers(cfg: Config) -> int:
    """``loader.num_workers``, or for -1 (auto) this process's share of the usable cores less one, at most 16:
    the cores are shared among the devices of a run and the runs side by side (``trainer.parallel_jobs``)."""
    if cfg.loader.num_workers >= 0:
        return cfg.loader.num_workers
    processes = max(1, cfg.trainer.devices) * max(1, cfg.trainer.parallel_jobs)
    return max(1, min(16, usable_cpus() // processes - 1))


def make_loader(cfg: Config, dataset, sampler=None, persistent: bool = True, batch_size: int | None = None):
    """A DataLoader of uint8 batches: workers seeded, persistent, pinned memory on CUDA."""
    workers = loader_workers(cfg)
    return DataLoader(
        dataset,
        batch_size=batch_size or cfg.loader.batch_size,
        sampler=sampler,
        num_workers=workers,
        worker_init_fn=seed_worker if workers else None,
        persistent_workers=persistent and workers > 0,
        pin_memory=torch.cuda.is_available() and cfg.trainer.accelerator != "cpu",
        prefetch_factor=4 if workers else None,
    )
