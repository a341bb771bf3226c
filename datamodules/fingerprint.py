"""A fingerprint of a data set (its CSVs and every file's name and size) that keys cached work."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from datamodules.atomic import write_text_atomic


def data_fingerprint(data_dir: str | Path) -> str:
    """Hex digest over train.csv, eval/info.csv and the relative path and size of every image file.

    Renaming, adding, removing or resizing a file, or editing a CSV, changes it; touching a file does not.
    """
    data_dir = Path(data_dir)
    h = hashlib.sha256()
    for csv in ("train/train.csv", "eval/info.csv"):
        path = data_dir / csv
        h.update(csv.encode())
        h.update(path.read_bytes() if path.is_file() else b"<missing>")
    for sub in ("train/images", "eval/images"):
        root = data_dir / sub
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            rel = os.path.relpath(dirpath, data_dir)
            for name in sorted(filenames):
                size = os.stat(os.path.join(dirpath, name)).st_size
                h.update(f"{rel}/{name}\0{size}\n".encode())
    return h.hexdigest()[:20]


def cache_dir_for(cache_root: str | Path, fingerprint: str) -> Path:
    """The cache folder of one data set: a new data set never sees another's fold file or statistics."""
    path = Path(cache_root) / fingerprint
    path.mkdir(parents=True, exist_ok=True)
    return path


def write_json_atomic(path: Path, data) -> None:
    write_text_atomic(path, json.dumps(data, indent=2))
