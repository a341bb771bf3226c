"""Decode every image once, in parallel with a progress bar, and name the ones that cannot be read.

PIL guards against decompression bombs with process-wide state (``Image.MAX_IMAGE_PIXELS``): it warns, without
naming the file, above that many pixels and refuses above twice as many. The scan turns PIL's own check off
around its thread pool and applies the same two limits itself, so the report names each file and its size.
"""

from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor
from functools import partial

from PIL import Image
from tqdm.auto import tqdm

from datamodules.decode import file_problem

log = logging.getLogger(__name__)


def check_image(path: str, limit: int | None) -> tuple[str | None, str | None]:
    """``(problem, warning)`` for ``path``: a problem when it cannot be used (not a readable regular file, see
    ``file_problem``; larger than twice ``limit`` pixels; or not decoding completely); a warning when it has more
    than ``limit`` pixels.
    Call it with PIL's own bomb check off (``Image.MAX_IMAGE_PIXELS = None``), as :func:`find_undecodable` does."""
    problem = file_problem(path)  # a missing file, a broken link, a FIFO (which opening would wait on forever)
    if problem:
        return problem, None
    try:
        with Image.open(path) as im:  # reads the header only
            width, height = im.size
            pixels = width * height
            if limit is not None and pixels > 2 * limit:  # never decoded: that is what the limit is for
                return (
                    f"is too large ({width}x{height} = {pixels:,} pixels; the limit is {2 * limit:,}, "
                    "twice PIL's Image.MAX_IMAGE_PIXELS): shrink it, or leave it out with --skip-bad"
                ), None
            im.draft("RGB", (max(1, width // 8), max(1, height // 8)))  # JPEG: decode at 1/8 scale
            im.load()
    except Exception as exc:  # PIL raises many types for broken files
        return f"cannot be decoded ({type(exc).__name__}: {exc})", None
    if limit is not None and pixels > limit:
        return None, f"{path}: {width}x{height} = {pixels:,} pixels, more than PIL's Image.MAX_IMAGE_PIXELS ({limit:,})"
    return None, None


def find_undecodable(files: list[str], workers: int | None = None, progress: bool = True) -> list[tuple[str, str]]:
    """``(file, reason)`` for each file that does not decode, in the order of ``files``; a warning listing the
    images over PIL's pixel limit (used, but worth a look: a photo that size is unusual)."""
    workers = workers or min(8, os.cpu_count() or 1)
    limit = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None  # process-wide: set here in the calling thread, not in the workers
    try:
        with ThreadPoolExecutor(workers) as pool:
            results = pool.map(partial(check_image, limit=limit), files, chunksize=64)
            bar = tqdm(results, total=len(files), desc="checking images", unit="img", disable=not progress)
            checked = list(zip(files, bar, strict=True))
    finally:
        Image.MAX_IMAGE_PIXELS = limit
    large = [warning for _, (_, warning) in checked if warning]
    if large:
        log.warning(
            "%d image(s) larger than PIL's decompression-bomb warning limit:\n  %s", len(large), "\n  ".join(large)
        )
    return [(f, problem) for f, (problem, _) in checked if problem]
