"""Corrections and exclusions from YAML files, applied to the image table with a log of every change.

File format (every section optional; a person is named by id, e.g. ``"006359"``, or by folder, e.g.
``"006359_female_Asian_18"``; an image by ``"<person>/<stem>"``)::

    gender: {"006359": male}                 # person -> male | female
    age: {"004348": 60}                      # person -> age in years
    swap_incorrect_normal: ["000020"]        # the two photos are swapped: incorrect_mask is not_wear,
                                             # normal is incorrect (listing it twice changes nothing)
    mask: {"000645/incorrect_mask": wear}    # image -> wear | incorrect | not_wear
    exclude_people: ["001234"]               # drop the whole person
    exclude_images: ["000001_female_Asian_45/mask3"]   # drop one photo
    reviewed:                                # looked at and kept as labelled: changes nothing here; the
      gender: ["000225"]                     # noise finder (python -m analysis.noise) does not flag these
      outlier: ["000010/mask3"]              # again. Kinds: gender, age, mask_swap (people), outlier (images)
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import yaml

from configs.config import CONFIG_DIR
from core.errors import DataError, raise_collected
from core.tasks import ERROR_KINDS, GENDERS, MASK_FILES, TASKS

SECTIONS = ("gender", "age", "swap_incorrect_normal", "mask", "exclude_people", "exclude_images", "reviewed")
REVIEWED = "reviewed"  # the section of units a reviewer looked at and kept as labelled, by error kind
MASK_NAMES = {name: i for i, name in enumerate(TASKS["mask"].classes)}
CHANGE_COLUMNS = ["source", "person", "image", "field", "old", "new"]


def resolve_relabel_path(name: str) -> Path:
    """``competition`` (or any bare name) means ``configs/relabel/<name>.yaml``; otherwise a file path."""
    shipped = CONFIG_DIR / "relabel" / f"{name}.yaml"
    if "/" not in name and not name.endswith((".yaml", ".yml")) and shipped.is_file():
        return shipped
    path = Path(name)
    if not path.is_file():
        raise DataError(f"relabel file {name!r} does not exist (data.relabel)")
    return path


class IdLoader(yaml.SafeLoader):
    """YAML that keeps a number with leading zeros as text: YAML 1.1 reads an unquoted ``000123`` as the octal
    number 83 (and ``1:30`` as 90), which would name another person; here they stay the id as written. Plain
    whole numbers (an age, ``60``) are still numbers."""


IdLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:int"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
IdLoader.add_implicit_resolver("tag:yaml.org,2002:int", re.compile(r"^[-+]?(0|[1-9][0-9_]*)$"), list("-+0123456789"))


def read_relabel(path: Path) -> dict:
    try:
        data = yaml.load(path.read_text(), Loader=IdLoader) or {}  # noqa: S506 (a SafeLoader)
    except yaml.YAMLError as exc:
        raise DataError(f"relabel file {path} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise DataError(f"relabel file {path}: expected a mapping with sections {', '.join(SECTIONS)}")
    unknown = sorted(set(data) - set(SECTIONS))
    if unknown:
        raise DataError(f"relabel file {path}: unknown section(s) {', '.join(unknown)}")
    return data


class _People:
    """Resolve a person reference (id or folder) to exactly one folder."""

    def __init__(self, images: pd.DataFrame):
        people = images.drop_duplicates("person")
        self.folders = set(people["person"])
        self.by_id: dict[str, list[str]] = {}
        for pid, folder in zip(people["id"], people["person"], strict=True):
            self.by_id.setdefault(str(pid), []).append(folder)

    def resolve(self, ref, where: str, problems: list[str]) -> str | None:
        ref = str(ref)
        if ref in self.folders:
            return ref
        folders = self.by_id.get(ref, [])
        if len(folders) == 1:
            return folders[0]
        if len(folders) > 1:
            problems.append(f"{where}: id {ref!r} names {len(folders)} folders ({', '.join(folders)}); use one")
        else:
            problems.append(f"{where}: person {ref!r} is not in train.csv")
        return None


def _mapping(data: dict, section: str, path: Path) -> dict:
    value = data.get(section) or {}
    if not isinstance(value, dict):
        raise DataError(f"relabel file {path}: section {section} must map a person or image to a value")
    return value


def _listing(data: dict, section: str, path: Path) -> list:
    value = data.get(section) or []
    if not isinstance(value, list):
        raise DataError(f"relabel file {path}: section {section} must be a list")
    return value


def _image_ref(ref: str, people: _People, where: str, problems: list[str]) -> tuple[str, str] | None:
    person, _, stem = str(ref).rpartition("/")
    if not person or stem not in MASK_FILES:
        problems.append(f"{where}: image {ref!r} must read <person>/<stem>, stem one of {', '.join(MASK_FILES)}")
        return None
    folder = people.resolve(person, where, problems)
    return (folder, stem) if folder else None


def _reviewed(data: dict, people: _People, path: Path, problems: list[str]) -> dict[str, set]:
    """The ``reviewed`` section resolved: kind -> folders (for ``outlier``: (folder, stem) photos)."""
    section = data.get(REVIEWED) or {}
    if not isinstance(section, dict):
        raise DataError(f"relabel file {path}: section reviewed must map a kind ({', '.join(ERROR_KINDS)}) to a list")
    unknown = sorted(set(map(str, section)) - set(ERROR_KINDS))
    if unknown:
        raise DataError(
            f"relabel file {path}: reviewed: unknown kind(s) {', '.join(unknown)}; expected {', '.join(ERROR_KINDS)}"
        )
    units: dict[str, set] = {kind: set() for kind in ERROR_KINDS}
    for kind, refs in section.items():
        where = f"{path}: reviewed {kind}"
        if not isinstance(refs, list | type(None)):
            raise DataError(f"relabel file {path}: reviewed {kind} must be a list")
        for ref in refs or []:
            if kind == "outlier":
                hit = _image_ref(ref, people, where, problems)
            else:
                hit = people.resolve(ref, where, problems)
            if hit is not None:
                units[kind].add(hit)
    return units


def read_reviewed(images: pd.DataFrame, names: Sequence[str]) -> dict[str, set]:
    """The units under ``reviewed`` in the corrections files ``names`` (as ``data.relabel`` names them),
    resolved against ``images`` (its ``person`` and ``id`` columns): kind -> folders (``outlier``: (folder,
    stem) photos). A reference that names no one, or two folders, is a DataError."""
    people, problems = _People(images), []
    units: dict[str, set] = {kind: set() for kind in ERROR_KINDS}
    for name in names:
        path = resolve_relabel_path(name)
        for kind, found in _reviewed(read_relabel(path), people, path, problems).items():
            units[kind] |= found
    raise_collected(problems, f"the reviewed units of {', '.join(map(str, names))} do not fit the data")
    return units


def apply_relabel(images: pd.DataFrame, path: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Apply one corrections file; return the new table and the changes (one row per changed value)."""
    data = read_relabel(path)
    people = _People(images)
    images = images.copy()
    changes: list[tuple] = []
    problems: list[str] = []
    src = path.name

    def person_rows(ref, section):
        folder = people.resolve(ref, f"{path}: {section}", problems)
        return (images["person"] == folder) if folder else None, folder

    for ref, value in _mapping(data, "gender", path).items():
        rows, folder = person_rows(ref, "gender")
        if rows is None:
            continue
        if str(value).lower() not in GENDERS:
            problems.append(f"{path}: gender of {ref!r} must be male or female, not {value!r}")
            continue
        new = GENDERS[str(value).lower()]
        old = int(images.loc[rows, "gender"].iloc[0])
        if old != new:
            images.loc[rows, "gender"] = new
            changes.append((src, folder, "", "gender", old, new))
    for ref, value in _mapping(data, "age", path).items():
        rows, folder = person_rows(ref, "age")
        if rows is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 120:
            problems.append(f"{path}: age of {ref!r} must be a whole number of years, not {value!r}")
            continue
        old = int(images.loc[rows, "age"].iloc[0])
        if old != value:
            images.loc[rows, "age"] = value
            changes.append((src, folder, "", "age", old, value))
    for ref in _listing(data, "swap_incorrect_normal", path):
        rows, folder = person_rows(ref, "swap_incorrect_normal")
        if rows is None:
            continue
        # the fact "these two photos are swapped": absolute labels, so a second listing changes nothing
        for stem, new in (("incorrect_mask", MASK_NAMES["not_wear"]), ("normal", MASK_NAMES["incorrect"])):
            photo = rows & (images["stem"] == stem)
            if not photo.any():  # left out by an earlier file's exclude_images
                continue
            old = int(images.loc[photo, "mask"].iloc[0])
            if old != new:
                images.loc[photo, "mask"] = new
                changes.append((src, folder, stem, "mask", old, new))
    for ref, value in _mapping(data, "mask", path).items():
        hit = _image_ref(ref, people, f"{path}: mask", problems)
        if hit is None:
            continue
        if value not in MASK_NAMES:
            problems.append(f"{path}: mask of {ref!r} must be one of {', '.join(MASK_NAMES)}, not {value!r}")
            continue
        rows = (images["person"] == hit[0]) & (images["stem"] == hit[1])
        old, new = int(images.loc[rows, "mask"].iloc[0]), MASK_NAMES[value]
        if old != new:
            images.loc[rows, "mask"] = new
            changes.append((src, hit[0], hit[1], "mask", old, new))
    drop = pd.Series(False, index=images.index)
    for ref in _listing(data, "exclude_people", path):
        rows, folder = person_rows(ref, "exclude_people")
        if rows is not None:
            drop |= rows
            changes.append((src, folder, "", "excluded", "", "person"))
    for ref in _listing(data, "exclude_images", path):
        hit = _image_ref(ref, people, f"{path}: exclude_images", problems)
        if hit is not None:
            drop |= (images["person"] == hit[0]) & (images["stem"] == hit[1])
            changes.append((src, hit[0], hit[1], "excluded", "", "image"))
    _reviewed(data, people, path, problems)  # checked against the data; it changes nothing
    raise_collected(problems, f"relabel file {path} does not fit the data")
    return images[~drop].reset_index(drop=True), pd.DataFrame(changes, columns=CHANGE_COLUMNS)


def corrections_fingerprint(names: Sequence[str]) -> str:
    """A digest of what the corrections files ``names`` say (every section, ``reviewed`` included; not their
    comments or layout), in order; empty when there are none. A resumed run must see the labels its checkpoint
    was trained on, and the same names may hold other corrections since."""
    if not names:
        return ""
    digest = hashlib.sha256()
    for name in names:
        digest.update(json.dumps(read_relabel(resolve_relabel_path(name)), sort_keys=True, default=str).encode())
    return digest.hexdigest()[:12]


def apply_relabels(images: pd.DataFrame, names: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Apply each corrections file in order; the changes of all of them in one table."""
    all_changes = [pd.DataFrame(columns=CHANGE_COLUMNS)]
    for name in names:
        images, changes = apply_relabel(images, resolve_relabel_path(name))
        all_changes.append(changes)
    return images, pd.concat(all_changes, ignore_index=True)
