"""One process per run directory: a second ``train.py`` on the same run stops with the first one's PID.

The lock is an advisory ``flock`` on ``<run>/.lock``, so the operating system releases it when its process
ends, however it ends (a crash or SIGKILL leaves no stale lock behind).
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from core.errors import RunError
from rundir.layout import LOCK


class RunLock:
    """Hold ``<run_dir>/.lock`` while the run works: ``with RunLock(out): ...``. Entering raises
    :class:`RunError` naming the holder's PID when another process holds it."""

    def __init__(self, run_dir: str | Path):
        self.path = Path(run_dir) / LOCK
        self._fd: int | None = None

    def acquire(self) -> None:
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NONBLOCK, 0o644)
        except OSError as exc:  # not a file (a folder, say): no process can hold it as a lock
            raise RunError(
                f"{self.path} cannot be used as the run's lock ({exc.strerror}): remove it, then run again"
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip()
            holder = holder if holder.isdigit() else "unknown"  # a PID, or what a damaged lock holds
            os.close(fd)
            raise RunError(
                f"{self.path.parent} is in use by another process (PID {holder}): wait for it to finish or stop it "
                "(it saves last.ckpt on SIGTERM; then continue with --resume), or run this one with another --exp"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()
