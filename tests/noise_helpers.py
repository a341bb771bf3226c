"""Out-of-fold frames for the noise finder's tests: hand-made ones, simulated weak and seeded gender models,
and a synthetic set's simulated predictions written as an experiment. No model is trained.

``simulate_oof`` draws from the synthetic set's truth with model errors at the levels real models trained on
the 2,700-person synthetic set showed (benchmarks/results/noise-finder-*.json):

- mask: the state each photo really shows (the incorrect_mask and normal states of a swapped person
  exchanged); wrong on 0.3% of photos, and then unsure (0.4 to 0.9 on the wrong state); right ones get
  0.9 to 1.0 on the true state.
- gender: a person looks like their true gender, with a logit towards it of N(4, 1), except for the
  set's disputed people (``truth/disputed.csv``, drawn between the genders), whose logit is N(0, 1); each
  photo adds N(0, 1).
- age: a person looks their true age plus N(0, 3) years, each photo adds N(0, 2); the probability of
  each group falls off smoothly (2 years per logit) across the cuts.
- outlier photos fit nothing: their probabilities are drawn from a flat Dirichlet on every head.

``weak_gender`` is unsure on every photo (image-level F1 0.83), so that hardly a person reaches the fixed cut
of 0.9, while their photos, pooled, still tell the gender.
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from analysis import noise
from core.tasks import MASK_FILES
from datamodules.layout import read_train
from rundir.layout import OOF_COLUMNS, prob_columns, write_done

STEMS = list(MASK_FILES)


def frame(rows: list[tuple]) -> pd.DataFrame:
    """An OOF frame from ``(person, stem, label, [probabilities])`` rows."""
    k = len(rows[0][3])
    data = [(p, f"{s}.jpg", s, 0, lab, *probs) for p, s, lab, probs in rows]
    return pd.DataFrame(data, columns=OOF_COLUMNS + prob_columns(k))


def person(name: str, label: int, per_photo: list[list[float]]) -> list[tuple]:
    return [(name, stem, label, p) for stem, p in zip(STEMS, per_photo, strict=True)]


def mask_rows(name: str, probs: dict[str, list[float]] | None = None) -> list[tuple]:
    """A person's 7 mask photos, each confidently its labelled state unless ``probs`` says otherwise."""
    rows = []
    for stem, lab in MASK_FILES.items():
        p = [0.01, 0.01, 0.01]
        p[lab] = 0.98
        rows.append((name, stem, lab, (probs or {}).get(stem, p)))
    return rows


def flagged(table: pd.DataFrame) -> pd.DataFrame:
    return table[table["flag"]]


def flip_some(n: int, flips: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``n`` people's true genders, their labels with ``flips`` of them the other gender, and who those are."""
    true = rng.integers(2, size=n)
    flipped = rng.choice(n, flips, replace=False)
    label = true.copy()
    label[flipped] = 1 - label[flipped]
    return true, label, flipped


def gender_frame(female: np.ndarray, label: np.ndarray) -> pd.DataFrame:
    """A gender OOF frame: person ``p0000``... labelled ``label[i]``, their photo ``STEMS[j]`` read as female
    at ``female[i, j]``."""
    rows = [
        (f"p{i:04d}", stem, int(label[i]), [1 - female[i, j], female[i, j]])
        for i in range(len(label))
        for j, stem in enumerate(STEMS)
    ]
    return frame(rows)


def weak_gender(n: int = 2000, flips: int = 20, seed: int = 0) -> tuple[pd.DataFrame, set[str]]:
    """A weak, unsure gender model (image-level macro F1 0.83): each person a logit of N(1.5, 0.3) towards
    their true gender, each photo N(0, 1.5) more; ``flips`` people carry the other gender's label. Its
    photos agree with each other, but none is sure, so hardly anyone reaches 0.9."""
    rng = np.random.default_rng(seed)
    true, label, flipped = flip_some(n, flips, rng)
    towards = np.where(true == 1, 1.0, -1.0)[:, None]
    female = 1 / (1 + np.exp(-(rng.normal(1.5, 0.3, (n, 1)) * towards + rng.normal(0, 1.5, (n, 7)))))
    return gender_frame(female, label), {f"p{i:04d}" for i in flipped}


def seed_gender(true: np.ndarray, label: np.ndarray, seed: int) -> pd.DataFrame:
    """One seed of a gender model whose reading of each person varies from seed to seed: a logit towards the
    true gender of N(4, 3) per person (a tenth of the people misread), N(0, 1) more per photo."""
    rng = np.random.default_rng(seed)
    towards = np.where(true == 1, 1.0, -1.0)[:, None]
    female = 1 / (1 + np.exp(-(rng.normal(4, 3, (len(true), 1)) * towards + rng.normal(0, 1, (len(true), 7)))))
    f = gender_frame(female, label)
    f["fold"] = [int(p[1:]) % 3 for p in f["person"]]
    return f


def simulate_oof(data_dir: Path, seed: int = 0, folds: int = 3) -> dict[str, pd.DataFrame]:
    """OOF frames drawn from the set's truth with the model errors of the module doc."""
    rng = np.random.default_rng(seed)
    images = read_train(data_dir)
    truth = noise.read_truth(data_dir)
    people = images.drop_duplicates("person").set_index("person")
    true_gender = people["gender"].copy()
    true_age = people["age"].astype(float).copy()
    for r in truth.itertuples():
        if r.kind == "gender":
            true_gender[r.path] = 1 - true_gender[r.path]
        elif r.kind == "age":
            true_age[r.path] = float(r.true)
    swapped = set(truth.loc[truth["kind"] == "mask_swap", "path"])
    outliers = {(r.path, Path(r.image).stem) for r in truth[truth["kind"] == "outlier"].itertuples()}
    disputed = people.index.isin(noise.read_disputed(data_dir)["gender"])
    towards_female = np.where(true_gender == 1, 1, -1)
    strength = np.where(disputed, rng.normal(0, 1, len(people)), rng.normal(4, 1, len(people)) * towards_female)
    strength = pd.Series(strength, index=people.index)
    looks_age = true_age + rng.normal(0, 3, len(people))
    fold = pd.Series(rng.integers(folds, size=len(people)), index=people.index)

    rows = {"mask": [], "gender": [], "age": []}
    for r in images.itertuples():
        base = (r.person, r.image, r.stem, int(fold[r.person]))
        age_group = int((r.age >= 30) + (r.age >= 60))
        if (r.person, r.stem) in outliers:
            probs = {t: rng.dirichlet(np.ones(k)) for t, k in (("mask", 3), ("gender", 2), ("age", 3))}
        else:
            state = r.mask
            if r.person in swapped and state in (1, 2):
                state = 3 - state
            if rng.random() < 0.003:
                state = int(rng.choice([s for s in range(3) if s != state]))
                top = rng.uniform(0.4, 0.9)
            else:
                top = rng.uniform(0.9, 1.0)
            pm = np.full(3, (1 - top) / 2)
            pm[state] = top
            pf = 1 / (1 + np.exp(-(strength[r.person] + rng.normal(0, 1))))
            a = looks_age[r.person] + rng.normal(0, 2)
            young, old = 1 / (1 + np.exp((a - 29.5) / 2)), 1 / (1 + np.exp(-(a - 59.5) / 2))
            pa = np.array([young, max(1 - young - old, 1e-4), old])
            probs = {"mask": pm, "gender": np.array([1 - pf, pf]), "age": pa / pa.sum()}
        rows["mask"].append((*base, r.mask, *probs["mask"]))
        rows["gender"].append((*base, r.gender, *probs["gender"]))
        rows["age"].append((*base, age_group, *probs["age"]))
    frames = {t: pd.DataFrame(v, columns=OOF_COLUMNS + prob_columns(len(v[0]) - 5)) for t, v in rows.items()}
    return frames


def write_experiment(
    runs: Path, exp: str, frames: dict[str, pd.DataFrame], data_dir: Path, relabel: list[str] | None = None
) -> Path:
    for task, f in frames.items():
        for k, part in f.groupby("fold"):
            out = runs / exp / task / f"fold{k}"
            out.mkdir(parents=True)
            part.to_csv(out / "oof.csv", index=False, float_format="%.6f")
            write_done(out, {"task": task, "fold": str(k)})  # a finished run
            cfg = {"exp": exp, "data": {"dir": str(data_dir), "age_cuts": [30, 60], "relabel": relabel or []}}
            (out / "config.yaml").write_text(yaml.safe_dump(cfg | {"wandb": {"mode": "disabled"}}))
    return runs / exp


def run_main(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = noise.main(list(argv))
    return rc, out.getvalue(), err.getvalue()


def read_ranking(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, dtype={"person": str}, keep_default_na=False)
