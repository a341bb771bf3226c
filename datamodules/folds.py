"""Person-level splits: stratified k-fold, an 80/20 holdout and ``full``, written once per data set.

Splits stratify on the labels as given in train.csv (gender x age group at the competition's cuts 30/60),
before any relabelling or exclusion, so every experiment on one data set (other cuts, other corrections)
sees the same people in the same fold. The file lives in the data set's fingerprint folder, so a changed
data set gets new folds instead of a stale split.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import GroupKFold, StratifiedGroupKFold, train_test_split

from core.atomic import atomic_path
from core.errors import DataError
from core.tasks import COMPETITION_AGE_CUTS, age_group

log = logging.getLogger(__name__)

SPLIT_STRATA_CUTS = COMPETITION_AGE_CUTS  # fixed, whatever data.age_cuts a task trains with


def _strata(people: pd.DataFrame) -> np.ndarray:
    return people["gender"].to_numpy() * 3 + age_group(people["age"].to_numpy(), SPLIT_STRATA_CUTS)


def person_folds(people: pd.DataFrame, n_folds: int, seed: int) -> pd.Series:
    """Fold index (0..n_folds-1) per person; every person in exactly one fold, strata spread evenly."""
    people = people.reset_index(drop=True)
    if len(people) < n_folds:
        raise DataError(f"{len(people)} people cannot make {n_folds} folds: lower data.n_folds")
    strata = _strata(people)
    if np.bincount(strata).max() >= n_folds:
        splitter = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    else:  # a tiny data set: no stratum fills every fold, so split people without stratifying (shuffle: sklearn 1.6)
        splitter = GroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    folds = np.full(len(people), -1)
    with warnings.catch_warnings():  # a stratum smaller than k is fine: it lands in fewer folds
        warnings.filterwarnings("ignore", message="The least populated class")
        for k, (_, val) in enumerate(splitter.split(people, strata, groups=people["person"])):
            folds[val] = k
    return pd.Series(folds, index=people["person"], name="fold")


def holdout_split(people: pd.DataFrame, fraction: float, seed: int) -> pd.Series:
    """True for the people in the stratified holdout (validation) part."""
    people = people.reset_index(drop=True)
    strata = _strata(people)
    counts = np.bincount(strata)
    stratify = strata if counts[counts > 0].min() >= 2 else None
    _, val = train_test_split(np.arange(len(people)), test_size=fraction, random_state=seed, stratify=stratify)
    mask = np.zeros(len(people), dtype=bool)
    mask[val] = True
    return pd.Series(mask, index=people["person"], name="holdout")


def load_or_make_splits(people: pd.DataFrame, cache: Path, n_folds: int, fraction: float, seed: int) -> pd.DataFrame:
    """The split table (person, fold, holdout) from ``cache``, made and written on first use."""
    path = cache / f"splits-k{n_folds}-h{fraction:g}-seed{seed}.csv"
    if path.is_file():
        try:
            splits = pd.read_csv(path, dtype={"person": str})
            fits = splits["fold"].isin(range(n_folds)).all() and splits["holdout"].dtype == bool
            if fits and set(splits["person"]) == set(people["person"]):
                return splits
        except (ValueError, KeyError, pd.errors.ParserError) as exc:  # damaged: made again, the same (seeded)
            log.warning("%s cannot be read as a split table (%s): making it again", path, exc)
    people = people.sort_values("person").reset_index(drop=True)
    splits = pd.DataFrame(
        {
            "person": people["person"],
            "fold": person_folds(people, n_folds, seed).to_numpy(),
            "holdout": holdout_split(people, fraction, seed).to_numpy(),
        }
    )
    with atomic_path(path) as tmp:
        splits.to_csv(tmp, index=False)
    return splits


def select(split: pd.DataFrame, fold: int | str) -> tuple[set[str], set[str]]:
    """Train and validation people for ``fold`` (an index, ``holdout`` or ``full``)."""
    everyone = set(split["person"])
    if fold == "full":
        return everyone, set()
    if fold == "holdout":
        val = set(split.loc[split["holdout"].astype(bool), "person"])
    else:
        n = int(split["fold"].max()) + 1
        if not 0 <= int(fold) < n:
            raise ValueError(f"fold {fold} does not exist: there are {n} folds (0..{n - 1})")
        val = set(split.loc[split["fold"] == int(fold), "person"])
    return everyone - val, val
