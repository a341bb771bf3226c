"""A fingerprint of a data set (its CSVs and every file's name and size) that keys cached work."""

from __future__ import annotations

import hashlib
import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path

from core.atomic import write_text_atomic


def data_fingerprint(data_dir: str | Path) -> str:
    """Hex digest over train.csv, eval/info.csv and the relative path and size of every image file.

    Renaming, adding, removing or resizing a file, or editing a CSV, changes it; touching a file does not.
    Linked folders are walked (once each, so a link loop ends); a link that leads nowhere counts by its text.
    """
    data_dir = Path(data_dir)
    h = hashlib.sha256()
    for csv in ("train/train.csv", "eval/info.csv"):
        path = data_dir / csv
        h.update(csv.encode())
        h.update(path.read_bytes() if path.is_file() else b"<missing>")
    for sub in ("train/images", "eval/images"):
        root = data_dir / sub
        try:
            top = os.stat(root)
        except OSError:  # no such folder (read_train names what is missing)
            continue
        for line in _tree_lines(str(root), sub, {(top.st_dev, top.st_ino)}):
            h.update(line.encode())
    return h.hexdigest()[:20]


def _link_text(path: str) -> str:
    try:
        return os.readlink(path)
    except OSError:  # not a link: a folder reached twice by another route (a bind mount)
        return "<seen>"


def _tree_lines(folder: str, rel: str, visited: set[tuple[int, int]]) -> Iterator[str]:
    """``<rel>/<name>\\0<size>`` per file under ``folder``, as ``os.walk`` orders them (a folder's files,
    then its sorted subfolders), following linked folders unless ``visited`` (by device and inode) holds them;
    a link that cannot be followed (dangling, a loop) or leads back to a walked folder gives ``-> <target>``."""
    try:
        names = sorted(os.listdir(folder))
    except OSError:  # unreadable: os.walk skipped it too
        return
    folders = []
    for name in names:
        path = os.path.join(folder, name)
        try:
            st = os.stat(path)  # follows links
        except OSError:
            yield f"{rel}/{name}\0-> {_link_text(path)}\n"
            continue
        if not stat.S_ISDIR(st.st_mode):
            yield f"{rel}/{name}\0{st.st_size}\n"
        elif (st.st_dev, st.st_ino) in visited:
            yield f"{rel}/{name}/\0-> {_link_text(path)}\n"
        else:
            visited.add((st.st_dev, st.st_ino))
            folders.append((path, f"{rel}/{name}"))
    for path, sub in folders:
        yield from _tree_lines(path, sub, visited)


def cache_dir_for(cache_root: str | Path, fingerprint: str) -> Path:
    """The cache folder of one data set: a new data set never sees another's fold file or statistics."""
    path = Path(cache_root) / fingerprint
    path.mkdir(parents=True, exist_ok=True)
    return path


def write_json_atomic(path: Path, data) -> None:
    write_text_atomic(path, json.dumps(data, indent=2))
