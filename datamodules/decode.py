"""Decoding one image file to RGB pixels: the one place the data layer reads an image, and the one check that a
path can be read as an image file at all, used by every reader of training and evaluation images."""

from __future__ import annotations

import errno
import os
import stat

import cv2
import numpy as np

from core.errors import DataError


def file_problem(path: str) -> str | None:
    """Why ``path`` cannot be read as an image file (missing, a broken or looping link, not a regular file, e.g.
    a FIFO or a folder, or empty), else None. It only looks at the file's status, never opens it: opening a FIFO
    would wait for a writer forever."""
    try:
        st = os.stat(path)
    except OSError as exc:
        if os.path.islink(path):
            loop = " (a loop of links)" if exc.errno == errno.ELOOP else ""
            return f"is a link to nothing readable{loop} (-> {os.readlink(path)})"
        return f"cannot be read ({exc.strerror})"
    if not stat.S_ISREG(st.st_mode):
        kind = "a FIFO (named pipe)" if stat.S_ISFIFO(st.st_mode) else "a folder" if stat.S_ISDIR(st.st_mode) else ""
        return f"is not a regular file{f' but {kind}' if kind else ''}: replace it with the image file"
    if st.st_size == 0:
        return "the file is empty"
    return None


def read_rgb(path: str) -> np.ndarray:
    """Decode ``path`` to a uint8 HxWx3 RGB array; grayscale, RGBA and palette images become RGB."""
    problem = file_problem(path)
    if problem:
        raise DataError(f"{path}: {problem}")
    img = cv2.imread(path, cv2.IMREAD_COLOR)
    if img is None:
        raise DataError(f"{path}: the image cannot be decoded")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
