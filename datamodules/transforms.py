"""The one transforms factory: the seed's training recipe and the evaluation/TTA recipe (albumentations).

Both end in the same ``Normalize(mean, std)``; the statistics are chosen once (:func:`normalization`) and
saved with every checkpoint, so prediction normalises exactly as training did.
"""

from __future__ import annotations

import albumentations as A
import cv2
import numpy as np
from albumentations.pytorch import ToTensorV2

from configs.config import AugmentConfig

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _geometry(aug: AugmentConfig) -> list:
    return [A.Resize(aug.resize_height, aug.resize_width), A.CenterCrop(aug.crop, aug.crop)]


def train_transforms(aug: AugmentConfig, mean, std) -> A.Compose:
    """Resize, centre crop, one of flips/rotation, one of colour jitters/grayscale, normalise, erase."""
    return A.Compose(
        [
            *_geometry(aug),
            A.OneOf(
                [
                    A.HorizontalFlip(p=1.0),
                    A.VerticalFlip(p=1.0),
                    A.Rotate(limit=aug.rotate_limit, border_mode=cv2.BORDER_CONSTANT, p=1.0),
                ],
                p=aug.geometric_p,
            ),
            A.OneOf(
                [
                    A.RandomBrightnessContrast(p=1.0),
                    A.HueSaturationValue(p=1.0),
                    A.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2, hue=0.05, p=1.0),
                    A.ToGray(p=1.0),
                ],
                p=aug.color_p,
            ),
            A.Normalize(mean=mean, std=std, max_pixel_value=255.0),
            A.Erasing(p=aug.random_erasing_p),  # after Normalize: erased pixels take the mean colour
            ToTensorV2(),
        ]
    )


def eval_transforms(aug: AugmentConfig, mean, std, hflip: bool = False) -> A.Compose:
    """Resize, centre crop, normalise; ``hflip`` mirrors the image for flip test-time augmentation."""
    flip = [A.HorizontalFlip(p=1.0)] if hflip else []
    return A.Compose([*_geometry(aug), *flip, A.Normalize(mean=mean, std=std, max_pixel_value=255.0), ToTensorV2()])


def geometry_only(aug: AugmentConfig) -> A.Compose:
    """The deterministic part of both recipes (resize + centre crop), on uint8 images."""
    return A.Compose(_geometry(aug))


def dataset_statistics(images: list[np.ndarray]) -> tuple[list[float], list[float]]:
    """Per-channel mean and std (0..1 scale) over uint8 RGB images."""
    total = np.zeros(3)
    total_sq = np.zeros(3)
    count = 0
    for img in images:
        px = img.reshape(-1, 3).astype(np.float64) / 255.0
        total += px.sum(0)
        total_sq += (px**2).sum(0)
        count += len(px)
    mean = total / count
    std = np.sqrt(np.maximum(total_sq / count - mean**2, 1e-12))
    return mean.round(6).tolist(), std.round(6).tolist()
