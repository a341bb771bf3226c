"""Image datasets: read an RGB image, transform it, pair it with a label or an image id."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset, get_worker_info

from datamodules.errors import DataError

# OpenCV's own thread pool fights torch's threads (and the DataLoader's processes) for the cores: on a
# 2-core machine that made augmentation 20x slower. Images are small; one thread each is fastest.
cv2.setNumThreads(0)


def read_rgb(path: str) -> np.ndarray:
    """Decode ``path`` to a uint8 HxWx3 RGB array; grayscale, RGBA and palette images become RGB."""
    img = cv2.imread(path, cv2.IMREAD_COLOR)
    if img is None:
        raise DataError(f"{path}: the image cannot be decoded")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


class ImageDataset(Dataset):
    """``(image, target)`` pairs: target is a class label for training, an image id for prediction."""

    def __init__(self, files: Sequence[str], targets: Sequence, transform, seed: int = 0):
        if len(files) != len(targets):
            raise ValueError(f"{len(files)} files but {len(targets)} targets")
        self.files = list(files)
        self.targets = list(targets)
        self.transform = transform
        self.transform.set_random_seed(seed)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int):
        path = self.files[i]
        try:
            image = self.transform(image=read_rgb(path))["image"]
        except DataError:
            raise
        except Exception as exc:  # surface which file broke a worker
            raise DataError(f"{path}: failed while loading ({type(exc).__name__}: {exc})") from exc
        target = self.targets[i]
        return image, torch.tensor(target) if isinstance(target, int | np.integer) else target


def seed_worker(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: each worker augments from its own seed (derived from torch's)."""
    info = get_worker_info()
    info.dataset.transform.set_random_seed(info.seed % 2**32)
