"""Write files under a temporary name and rename them, so a crash never leaves a half file that looks whole."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path``, on error it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    try:
        yield tmp
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomic(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def place_problem(path: str | Path, folder: bool = False) -> str | None:
    """Why the file (or with ``folder``, the folder) ``path`` could not be written: it is a folder (a file), a
    folder above it is a file, or the nearest existing folder above it is not writable; None when it can be.
    Creates nothing, so that a command checks its outputs' place before its work."""
    path = Path(path).absolute()
    if path.is_dir() != folder and path.exists():
        return "is a folder; name a file" if not folder else "is a file; name a folder"
    above = path if folder and path.is_dir() else path.parent
    while not above.exists() and above != above.parent:
        above = above.parent
    if not above.is_dir():
        return f"cannot be made: {above} is a file, not a folder"
    if not os.access(above, os.W_OK | os.X_OK):
        return f"cannot be written: {above} is not writable"
    return None
