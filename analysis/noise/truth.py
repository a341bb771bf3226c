"""The ranking scored against a synthetic set's planted truth (``DIR/truth/noise.csv`` and ``disputed.csv``)."""

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
    """A DataError naming ``path`` when ``kinds`` holds one the finder does not know."""
    unknown = sorted(set(kinds) - set(KINDS))
    if unknown:
        raise DataError(
            f"{path}: unknown error kind(s) {', '.join(map(repr, unknown))}; "
            f"the noise finder knows {', '.join(KINDS)} (rename them to one of those)"
        )


def _read_table(path: Path, columns: tuple[str, ...]) -> pd.DataFrame:
    table = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise DataError(f"{path}: missing column(s) {', '.join(missing)}")
    _check_kinds(path, table["kind"])
    return table


def read_truth(data_dir: str | Path) -> pd.DataFrame:
    """``DIR/truth/noise.csv``: the planted errors, every kind one the finder knows (else a DataError)."""
    path = Path(data_dir) / TRUTH_DIR / PLANTED
    if not path.is_file():
        raise DataError(f"{path} is missing: only a synthetic data set (python -m synthetic) has planted truth")
    return _read_table(path, ("path", "image", "kind"))


def read_disputed(data_dir: str | Path) -> dict[str, set[str]]:
    """``DIR/truth/disputed.csv`` by kind: the people whose photos leave their label open (empty: no file)."""
    path = Path(data_dir) / TRUTH_DIR / DISPUTED
    if not path.is_file():
        return {}
    table = _read_table(path, ("path", "kind"))
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
    """Per planted kind: person-level precision and recall of the flags, recall in the top ``top_n`` (2 x planted),
    flagged ``disputed`` people apart; outliers also per photo; only ``people`` (those ranked) are scored."""
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
