"""The suspects scored against a synthetic set's planted truth (``DIR/truth/noise.csv`` and
``DIR/truth/disputed.csv``): person-level precision and recall per error kind."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from analysis.noise.suspects import KINDS, image_stem
from core.errors import DataError

TRUTH_DIR = "truth"  # a synthetic set's DIR/truth/
PLANTED = "noise.csv"  # the planted errors: path (the person), image, kind, ...
DISPUTED = "disputed.csv"  # the people whose photos leave a label open: path, kind, ...
TRUTH_SCORES_NAME = "truth-scores.json"


def read_truth(data_dir: str | Path) -> pd.DataFrame:
    path = Path(data_dir) / TRUTH_DIR / PLANTED
    if not path.is_file():
        raise DataError(f"{path} is missing: only a synthetic data set (python -m synthetic) has planted truth")
    truth = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = [c for c in ("path", "image", "kind") if c not in truth.columns]
    if missing:
        raise DataError(f"{path}: missing column(s) {', '.join(missing)}")
    return truth


def read_disputed(data_dir: str | Path) -> dict[str, set[str]]:
    """``DIR/truth/disputed.csv`` by kind: the people whose photos leave their label open (a synthetic set's
    people drawn between the genders); empty when the file is absent."""
    path = Path(data_dir) / TRUTH_DIR / DISPUTED
    if not path.is_file():
        return {}
    table = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = [c for c in ("path", "kind") if c not in table.columns]
    if missing:
        raise DataError(f"{path}: missing column(s) {', '.join(missing)}")
    return {kind: set(rows["path"]) for kind, rows in table.groupby("kind")}


def score_against_truth(suspects: pd.DataFrame, data_dir: str | Path) -> dict[str, dict] | None:
    """``score_suspects`` against a synthetic set's planted truth; None for data without ``truth/noise.csv``."""
    if not (Path(data_dir) / TRUTH_DIR / PLANTED).is_file():
        return None
    return score_suspects(suspects, read_truth(data_dir), read_disputed(data_dir))


def _ratio(a: int, b: int) -> float | None:
    return round(a / b, 4) if b else None


def score_suspects(
    suspects: pd.DataFrame, truth: pd.DataFrame, disputed: dict[str, set[str]] | None = None
) -> dict[str, dict]:
    """Person-level precision and recall of the suspects for each error kind planted in ``truth``
    (``DIR/truth/noise.csv``: a person is its ``path``). ``disputed[kind]`` names people whose photos
    leave that label open (``DIR/truth/disputed.csv``): how many of them were flagged is reported, and
    ``precision_without_disputed`` leaves them out. Outliers are also scored per photo."""
    report = {}
    for kind in [k for k in KINDS if k in set(truth["kind"])] + sorted(set(truth["kind"]) - set(KINDS)):
        planted = set(truth.loc[truth["kind"] == kind, "path"])
        flagged = set(suspects.loc[suspects["kind"] == kind, "person"])
        found = planted & flagged
        entry = {
            "planted": len(planted),
            "flagged": len(flagged),
            "found": len(found),
            "precision": _ratio(len(found), len(flagged)),
            "recall": _ratio(len(found), len(planted)),
        }
        if disputed and kind in disputed:
            other = (disputed[kind] & flagged) - planted
            entry["flagged_disputed"] = len(other)
            entry["precision_without_disputed"] = _ratio(len(found), len(flagged - other))
        if kind == "outlier":
            rows = truth[truth["kind"] == kind]
            planted_img = set(zip(rows["path"], rows["image"].map(image_stem), strict=True))
            s = suspects[suspects["kind"] == kind]
            flagged_img = set(zip(s["person"], s["image"].astype(str).map(image_stem), strict=True))
            hit = planted_img & flagged_img
            entry["photos"] = {
                "planted": len(planted_img),
                "flagged": len(flagged_img),
                "found": len(hit),
                "precision": _ratio(len(hit), len(flagged_img)),
                "recall": _ratio(len(hit), len(planted_img)),
            }
        report[kind] = entry
    return report
