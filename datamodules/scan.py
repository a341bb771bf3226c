"""Decode every image once, in parallel with a progress bar, and name the ones that cannot be read."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

from PIL import Image
from tqdm.auto import tqdm


def check_image(path: str) -> str | None:
    """None when ``path`` decodes completely; otherwise the reason it does not."""
    try:
        if os.path.getsize(path) == 0:
            return "the file is empty"
        with Image.open(path) as im:
            im.draft("RGB", (max(1, im.width // 8), max(1, im.height // 8)))  # JPEG: decode at 1/8 scale
            im.load()
    except Exception as exc:  # PIL raises many types for broken files
        return f"cannot be decoded ({type(exc).__name__}: {exc})"
    return None


def find_undecodable(files: list[str], workers: int | None = None, progress: bool = True) -> list[tuple[str, str]]:
    """``(file, reason)`` for each file that does not decode, in the order of ``files``."""
    workers = workers or min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(workers) as pool:
        results = pool.map(check_image, files, chunksize=64)
        bar = tqdm(results, total=len(files), desc="checking images", unit="img", disable=not progress)
        return [(f, r) for f, r in zip(files, bar, strict=True) if r is not None]
