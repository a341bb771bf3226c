"""Image datasets: read an RGB image, transform it, pair it with a label or an image id."""

from __future__ import annotations

import ctypes
import multiprocessing as mp
import signal
from collections.abc import Sequence
from multiprocessing import context as mp_context

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset, get_worker_info

from core.errors import DataError
from datamodules.cache import ImageCache
from datamodules.decode import read_rgb

# OpenCV's own thread pool fights torch's threads (and the DataLoader's processes) for the cores: on a
# 2-core machine that made augmentation 20x slower. Images are small; one thread each is fastest.
cv2.setNumThreads(0)
MAX_WORKERS = 256  # DataLoader workers tracked per dataset
RANK_STRIDE = 1_000_003  # augmentation seeds of two processes lie this far apart (more than any worker count)


class ImageDataset(Dataset):
    """``(image, target)`` pairs: a uint8 CxHxW image, and a class label (training) or an image id
    (prediction). Pixels come from ``cache`` when given (resized and cropped already), else each file is
    decoded and passed through ``geometry``; ``transform`` (the random or TTA part) follows either way.
    ``rank``: the process of a multi-device run, mixed into the augmentation seeds so that no two processes
    draw the same augmentations."""

    def __init__(
        self,
        files: Sequence[str],
        targets: Sequence,
        transform,
        seed: int = 0,
        geometry=None,
        cache: ImageCache | None = None,
        rank: int = 0,
    ):
        if len(files) != len(targets):
            raise ValueError(f"{len(files)} files but {len(targets)} targets")
        if geometry is None and cache is None:
            raise ValueError("ImageDataset needs a cache or a geometry transform")
        self.files = list(files)
        self.targets = list(targets)
        self.transform = transform
        self.rank = rank
        self.transform.set_random_seed(seed + rank * RANK_STRIDE)
        self.geometry = geometry
        self.cache = cache
        self.rows = cache.rows(self.files) if cache is not None else None
        # the item each DataLoader worker is reading, in memory shared with the workers: when a worker dies
        # (killed, or crashed inside a decoder), in_flight() names the file it was on
        self._reading = mp.RawArray(ctypes.c_int64, [-1] * MAX_WORKERS)

    def __len__(self) -> int:
        return len(self.files)

    def load(self, i: int) -> np.ndarray:
        """The resized, centre-cropped uint8 HxWx3 pixels of item ``i``."""
        if self.cache is not None:
            return self.cache.image(int(self.rows[i]))
        return self.geometry(image=read_rgb(self.files[i]))["image"]

    def __getitem__(self, i: int):
        info = get_worker_info()
        slot = info.id % MAX_WORKERS if info is not None else None
        if slot is not None:
            self._reading[slot] = i
        try:
            image = self.transform(image=self.load(i))["image"]
        except DataError:
            raise
        except Exception as exc:  # surface which file broke a worker
            raise DataError(f"{self.files[i]}: failed while loading ({type(exc).__name__}: {exc})") from exc
        if slot is not None:
            self._reading[slot] = -1
        target = self.targets[i]
        return image, torch.tensor(target) if isinstance(target, int | np.integer) else target

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        if mp_context.get_spawning_popen() is None:  # a plain pickle, not a worker being started: the
            state["_reading"] = None  # shared array cannot travel (nor would it be shared)
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        if self._reading is None:
            self._reading = mp.RawArray(ctypes.c_int64, [-1] * MAX_WORKERS)

    def in_flight(self) -> list[str]:
        """The files DataLoader workers had started but not finished reading."""
        return [self.files[i] for i in self._reading if i >= 0]


def worker_death(exc: BaseException, datasets: list[ImageDataset]) -> DataError | None:
    """For the DataLoader's "worker exited unexpectedly" error: a DataError naming the file(s) the dead
    worker was reading; None for any other error."""
    files = sorted({f for d in datasets for f in d.in_flight()})
    announced = isinstance(exc, RuntimeError) and "DataLoader worker" in str(exc)
    # a batch the worker had sent just before it died cannot be received from it any more: this shows up
    # as a broken connection, before the DataLoader notices the death itself
    lost_sender = isinstance(exc, ConnectionError | EOFError) and bool(files)
    if not (announced or lost_sender):
        return None
    where = f"while reading {', '.join(files)}" if files else "(no file was being read)"
    return DataError(
        f"a DataLoader worker died {where}: {exc}. Check that file (replace it, or leave it out with a relabel "
        "file's exclude_images); run with --set loader.num_workers=0 to see the error in the main process"
    )


def seed_worker(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: each worker augments from its own seed (torch's per-worker seed, which is
    the same on every process of a multi-device run, mixed with the dataset's process rank). Workers ignore
    Ctrl-C: the main process decides how training stops, and ends them."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    info = get_worker_info()
    rank = getattr(info.dataset, "rank", 0)
    info.dataset.transform.set_random_seed((info.seed + rank * RANK_STRIDE) % 2**32)
