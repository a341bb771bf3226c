"""The ranking scored against a synthetic set's planted truth (``DIR/truth/noise.csv`` and
``DIR/truth/disputed.csv``): person-level precision and recall of the flags per error kind, and the
recall within the top of the ranking (twice as many units as were planted)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from analysis.noise.suspects import KINDS, image_stem
from core.errors import DataError

TRUTH_DIR = "truth"  # a synthetic set's DIR/truth/
PLANTED = "noise.csv"  # the planted errors: path (the person), image, kind, ...
DISPUTED = "disputed.csv"  # the people whose photos leave a label open: path, kind, ...
TRUTH_SCORES_NAME = "truth-scores.json"


TOP_FACTOR = 2  # recall is also measured within the top TOP_FACTOR x planted units of each kind's ranking


def _check_kinds(path: Path, kinds: pd.Series) -> None:
    unknown = sorted(set(kinds) - set(KINDS))
    if unknown:
        raise DataError(
            f"{path}: unknown error kind(s) {', '.join(map(repr, unknown))}; "
            f"the noise finder knows {', '.join(KINDS)} (rename them to one of those)"
        )


def read_truth(data_dir: str | Path) -> pd.DataFrame:
    """``DIR/truth/noise.csv``: the planted errors, every kind one the finder knows (else a DataError)."""
    path = Path(data_dir) / TRUTH_DIR / PLANTED
    if not path.is_file():
        raise DataError(f"{path} is missing: only a synthetic data set (python -m synthetic) has planted truth")
    truth = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = [c for c in ("path", "image", "kind") if c not in truth.columns]
    if missing:
        raise DataError(f"{path}: missing column(s) {', '.join(missing)}")
    _check_kinds(path, truth["kind"])
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
    _check_kinds(path, table["kind"])
    return {kind: set(rows["path"]) for kind, rows in table.groupby("kind")}


def _ratio(a: int, b: int) -> float | None:
    return round(a / b, 4) if b else None


def _scores(planted: set, flagged: set, top: set) -> dict:
    found = planted & flagged
    return {
        "planted": len(planted),
        "flagged": len(flagged),
        "found": len(found),
        "precision": _ratio(len(found), len(flagged)),
        "recall": _ratio(len(found), len(planted)),
        "top_n": TOP_FACTOR * len(planted),
        "recall_top_n": _ratio(len(planted & top), len(planted)),
    }


def score_suspects(
    suspects: pd.DataFrame,
    truth: pd.DataFrame,
    disputed: dict[str, set[str]] | None = None,
    people: set[str] | None = None,
) -> dict[str, dict]:
    """Person-level precision and recall of the flags for each error kind planted in ``truth``
    (``DIR/truth/noise.csv``: a person is its ``path``), and ``recall_top_n``: the share of the planted
    people among the first ``top_n`` (twice the planted count) units of the kind's ranking, flagged or not.
    ``suspects`` is the finder's ranking (a table without a ``flag`` column counts as all flagged).
    ``disputed[kind]`` names people whose photos leave that label open (``DIR/truth/disputed.csv``): how many
    of them were flagged is reported, and ``precision_without_disputed`` leaves them out. Outliers are also
    scored per photo. ``people``: the people ranked (those of the trained folds), the only ones scored."""
    _check_kinds(Path(TRUTH_DIR) / PLANTED, truth["kind"])
    if people is not None:
        truth = truth[truth["path"].isin(people)]
        disputed = {kind: found & people for kind, found in (disputed or {}).items()}
    if "flag" not in suspects:
        suspects = suspects.assign(flag=True)
    if "score" in suspects:
        suspects = suspects.sort_values("score", ascending=False, kind="stable")
    report = {}
    for kind in [k for k in KINDS if k in set(truth["kind"])]:
        rows = truth[truth["kind"] == kind]
        planted = set(rows["path"])
        units = suspects[suspects["kind"] == kind]
        top = units.head(TOP_FACTOR * len(planted))
        entry = _scores(planted, set(units.loc[units["flag"], "person"]), set(top["person"]))
        if disputed and kind in disputed:
            flagged = set(units.loc[units["flag"], "person"])
            other = (disputed[kind] & flagged) - planted
            entry["flagged_disputed"] = len(other)
            entry["precision_without_disputed"] = _ratio(entry["found"], len(flagged - other))
        if kind == "outlier":
            photo = lambda d, col: set(zip(d[col], d["image"].astype(str).map(image_stem), strict=True))  # noqa: E731
            planted_img = photo(rows, "path")
            top_img = units.head(TOP_FACTOR * len(planted_img))
            entry["photos"] = _scores(planted_img, photo(units[units["flag"]], "person"), photo(top_img, "person"))
        report[kind] = entry
    return report
