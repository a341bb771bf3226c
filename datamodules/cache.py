"""A decode-once image cache: every image resized and centre-cropped once into a uint8 memory map.

Decoding a 384x512 JPEG and resizing it costs far more than the random augmentations that follow, and it
gives the same pixels every epoch. The cache stores those pixels, ``(N, crop, crop, 3)`` uint8, in one file
that every DataLoader worker maps read-only, so the workers only augment.

It is keyed by the preprocessing (resize and crop) and by every image's path, size and modification time:
a changed image or setting builds it anew. It is built in parallel under a temporary name, and its index
file (which is what makes it valid) is written last, so an interrupted build is never reused.
"""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing as mp
import os
import signal
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from configs.config import AugmentConfig
from core.atomic import write_text_atomic
from core.errors import DataError, raise_collected
from datamodules.decode import read_rgb
from datamodules.transforms import geometry_only

log = logging.getLogger(__name__)
VERSION = 1  # bump when the stored pixels would change for the same inputs
CHUNK = 32  # images per task handed to a build worker


def usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def cache_key(files: Sequence[str], aug: AugmentConfig) -> str:
    """A digest of the preprocessing and of each file's path, size and modification time."""
    h = hashlib.sha256(json.dumps([VERSION, aug.resize_height, aug.resize_width, aug.crop]).encode())
    for f in files:
        st = os.stat(f)
        h.update(f"{f}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:24]


@dataclass
class ImageCache:
    """The cached pixels of ``files``; ``image(row)`` is the resized, centre-cropped uint8 HxWx3 image."""

    path: Path
    files: list[str]
    size: int  # the crop: images are size x size x 3
    _rows: dict[str, int] = field(init=False, repr=False)
    _array: np.ndarray | None = field(init=False, default=None, repr=False)

    def __post_init__(self) -> None:
        self._rows = {f: i for i, f in enumerate(self.files)}

    def rows(self, files: Sequence[str]) -> np.ndarray:
        """Row of each of ``files`` in the cache; an error naming the first file it does not hold."""
        try:
            return np.fromiter((self._rows[f] for f in files), dtype=np.int64, count=len(files))
        except KeyError as exc:
            raise DataError(f"{exc.args[0]}: not in the image cache {self.path}") from None

    @property
    def array(self) -> np.ndarray:
        if self._array is None:  # opened lazily, so each DataLoader worker maps the file itself
            shape = (len(self.files), self.size, self.size, 3)
            self._array = np.memmap(self.path, dtype=np.uint8, mode="r", shape=shape)
        return self._array

    def image(self, row: int) -> np.ndarray:
        return np.array(self.array[row])  # a private copy: augmentations may write into it

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_array"] = None  # never pickle the mapped pixels into a worker
        return state


def _paths(cache_dir: Path, name: str, aug: AugmentConfig) -> tuple[Path, Path]:
    stem = f"images-{name}-{aug.resize_height}x{aug.resize_width}-c{aug.crop}"
    return cache_dir / f"{stem}.u8", cache_dir / f"{stem}.json"


def open_cache(files: Sequence[str], aug: AugmentConfig, cache_dir: Path, name: str) -> ImageCache | None:
    """The valid cache of ``files`` under ``name``, or None when it is missing, stale or incomplete."""
    data, index = _paths(Path(cache_dir), name, aug)
    if not (data.is_file() and index.is_file()):
        return None
    try:
        meta = json.loads(index.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(meta, dict):  # damaged: built again
        return None
    files = list(files)
    expected = len(files) * aug.crop * aug.crop * 3
    if meta.get("key") != cache_key(files, aug) or meta.get("files") != files or data.stat().st_size != expected:
        return None
    return ImageCache(data, files, aug.crop)


# ------------------------------------------------------------------------------------------- building

_worker: dict = {}


def _init_worker(path: str, shape: tuple, aug: AugmentConfig) -> None:
    _worker["array"] = np.memmap(path, dtype=np.uint8, mode="r+", shape=shape)
    _worker["geometry"] = geometry_only(aug)


def _fill(task: tuple[int, list[str]]) -> tuple[int, list[str]]:
    start, files = task
    array, geometry = _worker["array"], _worker["geometry"]
    bad = []
    for i, f in enumerate(files):
        try:
            array[start + i] = geometry(image=read_rgb(f))["image"]
        except Exception as exc:  # report every bad file at the end, not the first
            bad.append(f"{f}: {exc}")
    array.flush()
    return len(files), bad


def _fill_worker(path: str, shape: tuple, aug: AugmentConfig, tasks: list, next_task, done, conn) -> None:
    """One build process: takes the next chunk of ``tasks`` (a shared counter) until none is left, counts the
    images done in ``done``, and sends the files it could not decode through ``conn`` at the end."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the main process, which ends the workers
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # not a handler inherited from the parent
    _init_worker(path, shape, aug)
    bad: list[str] = []
    while True:
        with next_task.get_lock():
            k = next_task.value
            next_task.value += 1
        if k >= len(tasks):
            break
        count, errors = _fill(tasks[k])
        bad += errors
        with done.get_lock():
            done.value += count
    conn.send(bad)
    conn.close()


def _fill_in_parallel(tmp: Path, shape: tuple, aug: AugmentConfig, tasks: list, workers: int, bar) -> list[str]:
    """Run ``tasks`` in ``workers`` processes; the files that could not be decoded. Plain processes, watched
    from here and killed on the way out whatever happens (Ctrl-C included), so that an interrupted build
    never waits on a worker."""
    ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
    next_task, done = ctx.Value("q", 0), ctx.Value("q", 0)
    procs, pipes = [], []
    try:
        for _ in range(workers):
            receive, send = ctx.Pipe(duplex=False)
            proc = ctx.Process(
                target=_fill_worker, args=(str(tmp), shape, aug, tasks, next_task, done, send), daemon=True
            )
            proc.start()
            send.close()
            procs.append(proc)
            pipes.append(receive)
        bad: list[str] = []
        waiting = set(range(workers))
        while waiting:
            for i in sorted(waiting):
                if not pipes[i].poll():  # still at work (a process that ended has sent, or closed its end)
                    continue
                try:
                    bad += pipes[i].recv()
                except EOFError:  # it ended without reporting: killed
                    procs[i].join(timeout=10)
                    raise DataError(
                        f"a process building the image cache {tmp.name} died (exit code {procs[i].exitcode}; -9 is "
                        "often the out-of-memory killer): run again, or set data.cache_images=false"
                    ) from None
                waiting.discard(i)
            bar.update(done.value - bar.n)
            time.sleep(0.05)
        return bad
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.kill()
            proc.join()


def build_cache(
    files: Sequence[str],
    aug: AugmentConfig,
    cache_dir: Path,
    name: str,
    workers: int | None = None,
    progress: bool = True,
) -> ImageCache:
    """Decode, resize and crop ``files`` into the cache ``name`` (reusing it when it is valid)."""
    files = list(files)
    found = open_cache(files, aug, cache_dir, name)
    if found is not None:
        return found
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    data, index = _paths(cache_dir, name, aug)
    key = cache_key(files, aug)  # before reading: a file changed during the build makes the cache stale
    shape = (len(files), aug.crop, aug.crop, 3)
    gib = np.prod(shape) / 2**30
    workers = max(1, min(workers or usable_cpus(), len(files) // CHUNK + 1))
    log.info(
        "caching %d %s images at %dx%d (%.2f GiB, %d processes): %s", len(files), name, *shape[1:3], gib, workers, data
    )
    index.unlink(missing_ok=True)  # from here on the old cache is invalid, whatever happens
    tmp = data.with_name(data.name + ".tmp")
    try:
        np.memmap(tmp, dtype=np.uint8, mode="w+", shape=shape).flush()
        tasks = [(s, files[s : s + CHUNK]) for s in range(0, len(files), CHUNK)]
        bad: list[str] = []
        bar = tqdm(total=len(files), desc=f"caching {name} images", unit="img", disable=not progress)
        try:
            if workers == 1:
                _init_worker(str(tmp), shape, aug)
                for done, errors in map(_fill, tasks):
                    bad += errors
                    bar.update(done)
            else:
                bad = _fill_in_parallel(tmp, shape, aug, tasks, workers, bar)
        finally:
            bar.close()
            _worker.clear()
        raise_collected(sorted(bad), "some images cannot be decoded while caching")
        tmp.replace(data)
    finally:
        tmp.unlink(missing_ok=True)
    write_text_atomic(index, json.dumps({"key": key, "shape": list(shape), "files": files}))
    return ImageCache(data, files, aug.crop)
