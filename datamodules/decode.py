"""Decoding one image file to RGB pixels: the one place the data layer reads an image."""

from __future__ import annotations

import cv2
import numpy as np

from core.errors import DataError


def read_rgb(path: str) -> np.ndarray:
    """Decode ``path`` to a uint8 HxWx3 RGB array; grayscale, RGBA and palette images become RGB."""
    img = cv2.imread(path, cv2.IMREAD_COLOR)
    if img is None:
        raise DataError(f"{path}: the image cannot be decoded")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
