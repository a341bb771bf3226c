"""The one transforms factory: the seed's training recipe and the evaluation/TTA recipe (albumentations).

Every image goes through the deterministic :func:`geometry_only` (resize, centre crop; done once and cached),
then the random :func:`train_augment` or the fixed :func:`eval_augment`, both on uint8 pixels. The model
normalises (``lightning_modules.base.normalize``) with the statistics saved in its checkpoint, so prediction
normalises exactly as training did.
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


def mean_fill(mean) -> tuple[int, ...]:
    """The dataset's mean colour in uint8: what random erasing paints (it normalises to zero)."""
    return tuple(int(round(255 * m)) for m in mean)


def train_augment(aug: AugmentConfig, mean) -> A.Compose:
    """The seed's random part, on a resized and cropped uint8 image: one of flips/rotation, one of colour
    jitters/grayscale, random erasing (with the mean colour); out comes a uint8 CxHxW tensor."""
    return A.Compose(
        [
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
            A.Erasing(p=aug.random_erasing_p, fill=mean_fill(mean)),
            ToTensorV2(),
        ]
    )


def eval_augment(hflip: bool = False) -> A.Compose:
    """Evaluation: nothing random; ``hflip`` mirrors the image for flip test-time augmentation."""
    return A.Compose([*([A.HorizontalFlip(p=1.0)] if hflip else []), ToTensorV2()])


def geometry_only(aug: AugmentConfig) -> A.Compose:
    """The deterministic part of both recipes (resize + centre crop), on uint8 images. The image cache
    stores its output, so it runs once per image, not once per epoch."""
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
