"""The LightningDataModule for one (task, fold): ``(image, label)`` batches, and ``(image, image_id)``
batches of the evaluation images for prediction."""

from __future__ import annotations

import pandas as pd
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from configs.config import Config, ConfigError
from datamodules.dataset import ImageDataset, seed_worker
from datamodules.folds import select
from datamodules.labels import TASKS
from datamodules.layout import read_eval
from datamodules.prepare import PreparedData, prepare
from datamodules.sampler import BalancedSampler, ShuffleSampler
from datamodules.transforms import eval_transforms, train_transforms


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

    def __init__(self, cfg: Config, task: str, fold: int | str = 0, progress: bool = True):
        super().__init__()
        if task not in TASKS:
            raise ConfigError(f"unknown task {task!r}: choose one of {', '.join(TASKS)}")
        self.cfg = cfg
        self.task = TASKS[task]
        self.fold = parse_fold(fold, cfg.data.n_folds)
        self.progress = progress
        self.data: PreparedData | None = None

    def prepare_data(self) -> None:
        if self.data is None:  # generation, image check, split and stats files, all cached on disk
            prepare(self.cfg, progress=self.progress)

    def setup(self, stage: str | None = None) -> None:
        if self.data is None:
            self.data = prepare(self.cfg, progress=False)
        images = self.data.images
        train_people, val_people = select(images[["person", "fold", "holdout"]].drop_duplicates(), self.fold)
        self.train_frame = images[images["person"].isin(train_people)].reset_index(drop=True)
        self.val_frame = images[images["person"].isin(val_people)].reset_index(drop=True)

    @property
    def mean_std(self) -> tuple[list[float], list[float]]:
        return self.data.mean, self.data.std

    def labels(self, frame: pd.DataFrame) -> list[int]:
        return frame[self.task.column].astype(int).tolist()

    def _loader(self, dataset, sampler=None, shuffle=False) -> DataLoader:
        workers = self.cfg.loader.num_workers
        return DataLoader(
            dataset,
            batch_size=self.cfg.loader.batch_size,
            sampler=sampler,
            shuffle=shuffle,
            num_workers=workers,
            worker_init_fn=seed_worker if workers else None,
            persistent_workers=workers > 0,
            pin_memory=torch.cuda.is_available() and self.cfg.trainer.accelerator != "cpu",
        )

    def _rank_world(self) -> tuple[int, int]:
        trainer = self.trainer
        return (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)

    def train_dataloader(self) -> DataLoader:
        labels = self.labels(self.train_frame)
        transform = train_transforms(self.cfg.augment, *self.mean_std)
        dataset = ImageDataset(self.train_frame["file"], labels, transform, self.cfg.seed)
        rank, world = self._rank_world()
        if self.cfg.loader.sampler == "balanced":
            sampler = BalancedSampler(labels, len(labels), self.cfg.seed, rank, world)
        else:
            sampler = ShuffleSampler(labels, self.cfg.seed, rank, world)
        return self._loader(dataset, sampler)

    def val_dataloader(self) -> DataLoader:
        transform = eval_transforms(self.cfg.augment, *self.mean_std)
        return self._loader(ImageDataset(self.val_frame["file"], self.labels(self.val_frame), transform))

    def eval_dataset(self, hflip: bool = False) -> ImageDataset:
        """The competition's evaluation images in info.csv order, as ``(image, ImageID)``."""
        frame = read_eval(self.data.data_dir)
        return ImageDataset(frame["file"], frame["ImageID"], eval_transforms(self.cfg.augment, *self.mean_std, hflip))

    def predict_dataloader(self) -> DataLoader:
        return self._loader(self.eval_dataset())
