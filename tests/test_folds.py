import re
import tomllib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from datamodules.folds import _strata, holdout_split, load_or_make_splits, person_folds, select


def _people(n=300, seed=0):
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "person": [f"{i:06d}_x" for i in range(n)],
            "gender": rng.choice(2, n, p=[0.39, 0.61]),
            "age": rng.choice([19, 25, 40, 55, 60], n, p=[0.25, 0.22, 0.25, 0.2, 0.08]),
        }
    )


def test_every_person_in_exactly_one_fold_and_strata_spread():
    people = _people()
    folds = person_folds(people, 5, seed=1)
    assert folds.index.is_unique and len(folds) == len(people)
    assert sorted(folds.unique()) == [0, 1, 2, 3, 4]
    sizes = folds.value_counts()
    assert sizes.max() - sizes.min() <= 3
    strata = people["gender"].to_numpy() * 3 + (people["age"] >= 30).to_numpy() + (people["age"] >= 60).to_numpy()
    table = pd.crosstab(strata, folds.to_numpy())
    assert ((table.max(axis=1) - table.min(axis=1)) <= 1).all()  # each stratum split as evenly as can be


def test_holdout_fraction_and_full():
    people = _people()
    hold = holdout_split(people, 0.2, seed=1)
    assert hold.sum() == 60
    split = pd.DataFrame(
        {"person": people["person"], "fold": person_folds(people, 5, 1).to_numpy(), "holdout": hold.to_numpy()}
    )
    train, val = select(split, "holdout")
    assert len(val) == 60 and not train & val and len(train | val) == 300
    train, val = select(split, "full")
    assert len(train) == 300 and not val
    for k in range(5):
        train, val = select(split, k)
        assert not train & val and len(train | val) == 300
    with pytest.raises(ValueError, match="there are 5 folds"):
        select(split, 7)


def test_fold_file_written_once_reused_and_not_stale(tmp_path):
    people = _people()
    first = load_or_make_splits(people, tmp_path, 5, 0.2, seed=3)
    files = list(tmp_path.glob("splits-*.csv"))
    assert len(files) == 1
    pd.DataFrame({"person": first["person"], "fold": 0, "holdout": False}).to_csv(files[0], index=False)
    reused = load_or_make_splits(people, tmp_path, 5, 0.2, seed=3)
    assert (reused["fold"] == 0).all()  # read back, not recomputed
    fewer = people.iloc[:-10]
    fresh = load_or_make_splits(fewer, tmp_path, 5, 0.2, seed=3)
    assert set(fresh["person"]) == set(fewer["person"]) and fresh["fold"].nunique() == 5


def test_tiny_data_sets_split_people_without_stratifying():
    # 9 people in 6 strata, at most 2 per stratum: no stratum fills 3 folds, so GroupKFold(shuffle) splits them
    people = pd.DataFrame(
        {
            "person": [f"p{i}" for i in range(9)],
            "gender": [0, 0, 0, 1, 1, 1, 0, 1, 0],
            "age": [19, 40, 61, 19, 40, 61, 20, 41, 62],
        }
    )
    assert np.bincount(_strata(people)).max() < 3  # the branch under test
    folds = person_folds(people, 3, seed=1)
    assert folds.index.tolist() == people["person"].tolist()  # every person exactly once
    assert sorted(folds.unique()) == [0, 1, 2] and folds.value_counts().tolist() == [3, 3, 3]
    assert person_folds(people, 3, seed=1).equals(folds)
    others = [person_folds(people, 3, seed=s) for s in range(2, 7)]
    assert any(not other.equals(folds) for other in others)  # the seed shuffles people across folds


def test_scikit_learn_floor_has_group_k_fold_shuffle():
    """GroupKFold(shuffle=..., random_state=...), used for tiny data sets, came in scikit-learn 1.6."""
    pyproject = tomllib.loads((Path(__file__).resolve().parent.parent / "pyproject.toml").read_text())
    (spec,) = [d for d in pyproject["project"]["dependencies"] if re.match(r"scikit-learn\b", d)]
    floor = re.search(r">=\s*([\d.]+)", spec)
    assert floor, f"{spec!r} has no lower bound"
    assert tuple(int(p) for p in floor.group(1).split(".")[:2]) >= (1, 6), spec
