"""Read the competition layout: ``train/train.csv`` + person folders, ``eval/info.csv`` + ``eval/images``.

A person is a folder (one id can name two folders). Files are matched by stem, whatever their extension;
hidden files (``._*`` from macOS, ``.DS_Store``) are skipped.
"""

from __future__ import annotations

import math
import os
from pathlib import Path, PurePosixPath

import pandas as pd

from core.errors import DataError, raise_collected
from core.tasks import GENDERS, MASK_FILES
from datamodules.decode import file_problem

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}
TRAIN_COLUMNS = ("id", "gender", "race", "age", "path")
EVAL_COLUMNS = ("ImageID", "ans")
MIN_AGE, MAX_AGE = 0, 120


def check_data_dir(data_dir: str | Path) -> Path:
    """The data directory holding ``train/`` (and ``eval/``); a clear error for the usual mistakes."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise DataError(f"data directory {data_dir} does not exist")
    if (data_dir / "train.csv").is_file() and (data_dir / "images").is_dir():
        raise DataError(
            f"{data_dir} looks like the train/ folder itself: point --data-dir at its parent {data_dir.parent}"
        )
    if not (data_dir / "train" / "train.csv").is_file():
        if not any(data_dir.iterdir()):
            raise DataError(f"data directory {data_dir} is empty: expected train/train.csv and train/images/")
        raise DataError(f"{data_dir / 'train' / 'train.csv'} is missing: expected the competition layout")
    return data_dir


def _read_csv(path: Path, columns: tuple[str, ...]) -> pd.DataFrame:
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot be read as CSV ({exc})") from None
    df.columns = [c.strip() for c in df.columns]
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise DataError(f"{path}: missing column(s) {', '.join(missing)} (expected {','.join(columns)})")
    return df


def is_hidden(name: str) -> bool:
    return name.startswith(".")


def safe_relative(path: str) -> bool:
    """True for a plain relative path that stays inside its folder (no ``..``, not absolute)."""
    p = PurePosixPath(path.replace("\\", "/"))
    return bool(path) and not p.is_absolute() and ".." not in p.parts and not Path(path).is_absolute()


def _person_files(folder: Path) -> tuple[dict[str, str], list[str]]:
    """Stem -> file name of the images in ``folder``; and problems (duplicate stems)."""
    by_stem: dict[str, str] = {}
    problems = []
    for name in sorted(os.listdir(folder)):
        if is_hidden(name):
            continue
        stem, ext = os.path.splitext(name)
        if ext.lower() not in IMAGE_EXTENSIONS:
            continue
        if stem in by_stem:
            problems.append(f"{folder}: two files with the stem {stem!r} ({by_stem[stem]}, {name})")
            continue
        by_stem[stem] = name
    return by_stem, problems


def _whole_years(text: str) -> int:
    """An age cell as whole years: ``45`` and ``45.0`` are read, ``45.5``, ``inf`` and ``nan`` are not (a
    ValueError saying why), since truncating them would put a person in a silently wrong age group."""
    try:
        value = float(text)
    except ValueError:
        raise ValueError("is not a number") from None
    if not math.isfinite(value) or not value.is_integer():
        raise ValueError("is not a whole number of years")
    return int(value)


def read_train(data_dir: str | Path) -> pd.DataFrame:
    """One row per training image: person, id, gender, age, image, stem, mask, file.

    ``gender`` is 0 male / 1 female; ``mask`` is 0 wear / 1 incorrect / 2 not wear (from the file stem).
    """
    data_dir = check_data_dir(data_dir)
    csv = data_dir / "train" / "train.csv"
    images_dir = data_dir / "train" / "images"
    df = _read_csv(csv, TRAIN_COLUMNS)
    problems: list[str] = []
    rows = []
    seen: dict[str, int] = {}
    for i, r in enumerate(df.itertuples(index=False), start=2):
        where = f"{csv} row {i} (path {r.path!r})"
        gender = r.gender.strip().lower()
        if gender not in GENDERS:
            problems.append(f"{where}: gender {r.gender!r} is not male or female")
            continue
        try:
            age = _whole_years(r.age)
        except ValueError as exc:
            problems.append(f"{where}: age {r.age!r} {exc}")
            continue
        if not MIN_AGE <= age <= MAX_AGE:
            problems.append(f"{where}: age {age} is out of range")
            continue
        if not safe_relative(r.path) or len(PurePosixPath(r.path).parts) != 1:
            problems.append(f"{where}: path must be a folder name inside {images_dir}, not {r.path!r}")
            continue
        if r.path in seen:
            problems.append(f"{where}: path {r.path!r} already appears in row {seen[r.path]}")
            continue
        seen[r.path] = i
        folder = images_dir / r.path
        if not folder.is_dir():
            problems.append(f"{where}: folder {folder} does not exist")
            continue
        by_stem, dup = _person_files(folder)
        problems.extend(dup)
        missing = [s for s in MASK_FILES if s not in by_stem]
        if missing:
            problems.append(f"{folder}: missing {', '.join(missing)} (each person needs all 7 photos)")
            continue
        for stem, mask in MASK_FILES.items():
            name = by_stem[stem]
            rows.append((r.path, r.id, GENDERS[gender], age, name, stem, mask, str(folder / name)))
    if not problems and not rows:
        problems.append(f"{csv}: no people listed")
    raise_collected(problems, f"the training data in {data_dir} has errors")
    cols = ["person", "id", "gender", "age", "image", "stem", "mask", "file"]
    return pd.DataFrame(rows, columns=cols)


def read_eval(data_dir: str | Path) -> pd.DataFrame:
    """The evaluation images in ``eval/info.csv`` order: ImageID and file."""
    data_dir = Path(data_dir)
    csv = data_dir / "eval" / "info.csv"
    images_dir = data_dir / "eval" / "images"
    if not csv.is_file():
        raise DataError(f"{csv} is missing: expected eval/info.csv and eval/images/")
    df = _read_csv(csv, EVAL_COLUMNS)
    if df.empty:  # else the check passes and prediction dies on an empty batch list after training
        raise DataError(f"{csv}: lists no images (expected one row per evaluation image, ImageID,ans)")
    present = {}
    if images_dir.is_dir():
        for name in os.listdir(images_dir):
            if not is_hidden(name):
                present.setdefault(name, name)
                present.setdefault(os.path.splitext(name)[0], name)
    problems = []
    seen: dict[str, int] = {}
    files = []
    for i, image_id in enumerate(df["ImageID"], start=2):
        if image_id in seen:
            problems.append(f"{csv} row {i}: ImageID {image_id!r} already appears in row {seen[image_id]}")
            continue
        seen[image_id] = i
        name = present.get(image_id) or present.get(os.path.splitext(image_id)[0])
        if not safe_relative(image_id) or name is None:
            problems.append(f"{csv} row {i}: image {image_id!r} is not in {images_dir}")
            continue
        problem = file_problem(str(images_dir / name))  # before any model is loaded: a FIFO would hang decoding
        if problem:
            problems.append(f"{csv} row {i}: {images_dir / name} {problem}")
        files.append(str(images_dir / name))
    raise_collected(problems, f"the evaluation data in {data_dir} has errors")
    return pd.DataFrame({"ImageID": df["ImageID"].tolist(), "file": files})
