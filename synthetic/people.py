"""Who the synthetic people are: the real data's label priors, ids with their quirks, how female each one looks,
and the label noise planted among them (recorded for truth/noise.csv)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from core.tasks import COMPETITION_AGE_CUTS, MASK_FILES, age_group

MASK_STEMS = tuple(MASK_FILES)  # a person's 7 photos, in drawing order: mask1..mask5, incorrect_mask, normal

# --- difficulty knobs -------------------------------------------------------------------------------
GENDER_AMBIGUOUS_P = 14 / 2700  # share of people drawn midway between the genders: the real data's 14 disputed
GENDER_AMBIGUITY = (0.45, 0.55)  # their femaleness (0 male cues, 1 female cues) is uniform in this range

# --- layout -----------------------------------------------------------------------------------------
DUPLICATED_ID = 3397
MAX_ID = 6959
SUFFIXED_P = 0.015

# --- label priors (DATA-FACTS.md, by person out of 2,700) -------------------------------------------
FEMALE_P = 1658 / 2700
AGES = np.arange(18, 61)


def _age_prior() -> np.ndarray:
    counts = np.zeros(len(AGES))
    fixed = {18: 192, 19: 407, 20: 267, 57: 106, 58: 159, 59: 85, 60: 192}
    for age, n in fixed.items():
        counts[age - 18] = n
    counts[21 - 18 : 30 - 18] = (1281 - 192 - 407 - 267) / 9
    counts[30 - 18 : 57 - 18] = (1227 - 106 - 159 - 85) / 27
    return counts / counts.sum()


AGE_P = _age_prior()

# --- planted noise rates ----------------------------------------------------------------------------
NOISE_P = {"gender": 0.005, "mask_swap": 0.002, "age": 0.003}  # per person
OUTLIER_P = 0.002  # per train image


def _folder(pid: str, gender: str, age: int) -> str:
    return f"{pid}_{gender}_Asian_{age}"


def sample_labels(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """True genders ("male"/"female") and ages of n people, from the real data's priors."""
    gender = np.where(rng.random(n) < FEMALE_P, "female", "male")
    age = rng.choice(AGES, size=n, p=AGE_P)
    return gender, age


def _sample_ids(n: int, rng: np.random.Generator) -> list[str]:
    """Unique 6-digit ids, one duplicated id (003397) and a few suffixed ids when n >= 20."""
    nums = rng.choice(np.arange(1, max(MAX_ID, 2 * n) + 1), size=n, replace=False)
    nums.sort()
    ids = [f"{x:06d}" for x in nums]
    if n < 20:
        return ids
    if DUPLICATED_ID not in nums:
        ids[int(rng.integers(n))] = f"{DUPLICATED_ID:06d}"
    dup = ids.index(f"{DUPLICATED_ID:06d}")
    others = [i for i in rng.permutation(n) if i != dup]
    ids[others[0]] = ids[dup]
    n_suffixed = max(1, round(SUFFIXED_P * n))
    base = ""
    for k, i in enumerate(others[1 : 1 + n_suffixed]):
        base = base if k % 2 == 1 else ids[i]  # pairs share a base: 001774-1, 001774-2
        ids[i] = f"{base}-{k % 2 + 1}"
    return ids


def sample_people(n: int, seed: int = 0) -> pd.DataFrame:
    """Train people with TRUE labels: id, gender, age from the real data's priors (the people that
    `generate(people=n, seed=seed)` draws, before noise and sorting)."""
    rng = np.random.default_rng([seed, 21])
    return sample_train(n, rng)


def sample_train(n: int, rng: np.random.Generator) -> pd.DataFrame:
    """n train people (id, gender, age) with true labels; the duplicated id's two folders are one person a
    year apart."""
    ids = _sample_ids(n, rng)
    gender, age = sample_labels(n, rng)
    df = pd.DataFrame({"id": ids, "gender": gender, "age": age.astype(int)})
    dup = df.index[df["id"] == f"{DUPLICATED_ID:06d}"]
    if len(dup) == 2:  # like 003397_female_Asian_19 / _20: same gender, next age, different folder
        a, b = dup
        df.loc[b, "gender"] = df.loc[a, "gender"]
        df.loc[b, "age"] = df.loc[a, "age"] + (1 if df.loc[a, "age"] < 60 else -1)
    return df


def femaleness(rng: np.random.Generator, female: np.ndarray) -> np.ndarray:
    """How female each person's gender cues look: 1 or 0 for most, uniform in GENDER_AMBIGUITY for the
    GENDER_AMBIGUOUS_P share (rounded to whole people, as in the real data: 14 of 2,700) whose gender no photo
    settles (listed in truth/disputed.csv)."""
    female = np.asarray(female, bool)
    ambiguous = np.zeros(len(female), bool)
    ambiguous[rng.choice(len(female), round(GENDER_AMBIGUOUS_P * len(female)), replace=False)] = True
    middle = rng.uniform(*GENDER_AMBIGUITY, size=len(female))
    return np.where(ambiguous, middle, female.astype(float))


# --- planted noise ----------------------------------------------------------------------------------


def _count(rate: float, n: int, at_least_one: bool) -> int:
    return max(int(at_least_one), round(rate * n))


def _wrong_age(age: int, rng: np.random.Generator) -> int:
    """An age in another of the competition's age groups."""
    group = age_group(age, COMPETITION_AGE_CUTS)
    if group == 0:
        return int(rng.integers(31, 49))
    if group == 2:
        return int(rng.integers(45, 60))
    return 60 if age >= 55 else int(rng.integers(20, 29))


def plant_noise(people: pd.DataFrame, rng: np.random.Generator) -> tuple[pd.DataFrame, list[dict]]:
    """Add given_gender/given_age/swap columns and pick outlier photos; returns (people, noise rows)."""
    n = len(people)
    df = people.copy()
    df["given_gender"] = df["gender"]
    df["given_age"] = df["age"]
    df["swap"] = False
    many = n >= 100
    counts = {kind: _count(p, n, many) for kind, p in NOISE_P.items()}
    duplicated = df["id"].duplicated(keep=False).to_numpy()
    pool = [i for i in rng.permutation(n) if not duplicated[i]]
    picks: dict[str, list[int]] = {}
    for kind, k in counts.items():
        picks[kind], pool = pool[:k], pool[k:]
    for i in picks["gender"]:
        df.loc[i, "given_gender"] = "male" if df.loc[i, "gender"] == "female" else "female"
    for i in picks["age"]:
        df.loc[i, "given_age"] = _wrong_age(int(df.loc[i, "age"]), rng)
    df.loc[picks["mask_swap"], "swap"] = True
    n_out = min(_count(OUTLIER_P, 7 * n, many), len(pool))
    outliers = {int(i): MASK_STEMS[int(rng.integers(7))] for i in pool[:n_out]}
    df["outlier"] = [outliers.get(i, "") for i in range(n)]
    df["path"] = [_folder(*r) for r in zip(df["id"], df["given_gender"], df["given_age"], strict=True)]
    kinds = {i: kind for kind, rows in picks.items() for i in rows}
    kinds.update(dict.fromkeys(outliers, "outlier"))
    return df, [{"person": i, "kind": kind} for i, kind in kinds.items()]


def noise_rows(df: pd.DataFrame, marks: list[dict]) -> pd.DataFrame:
    """truth/noise.csv from `plant_noise`'s marks (path, image, kind, given, true); outlier rows name the photo
    file, so `df` needs the people's file extensions (column exts, in MASK_STEMS order)."""
    rows = []
    for mark in marks:
        r = df.loc[mark["person"]]
        kind = mark["kind"]
        if kind == "gender":
            row = ("", r["given_gender"], r["gender"])
        elif kind == "age":
            row = ("", str(r["given_age"]), str(r["age"]))
        elif kind == "mask_swap":  # file stems as given, and what each file really shows
            row = ("", "incorrect_mask/normal", "normal/incorrect_mask")
        else:
            stem = r["outlier"]
            row = (stem + r["exts"][MASK_STEMS.index(stem)], stem, "outlier")
        rows.append((r["path"], *row, kind))
    noise = pd.DataFrame(rows, columns=["path", "image", "given", "true", "kind"])
    return noise[["path", "image", "kind", "given", "true"]].sort_values(["path", "kind"], ignore_index=True)
