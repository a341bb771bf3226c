"""The person-level rules: gender, age (ranks only: its flags were mostly wrong) and swapped mask pairs."""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.noise.suspects import (
    AGE_MARGIN_YEARS,
    FIXED,
    INCORRECT,
    MIN_CONFIDENCE,
    NOT_WEAR,
    log_probs,
    ranked,
    softmax,
    unit_table,
)
from analysis.noise.thresholds import class_thresholds, judge, thresholds_by_name
from core.tasks import COMPETITION_AGE_CUTS, TASKS

MASK_CLASSES = TASKS["mask"].num_classes


def person_posteriors(frame: pd.DataFrame, task: str) -> pd.DataFrame:
    """Per person: the given label, each label's probability (their photos' normalised geometric mean), the best
    label, and how many photos favour it."""
    k = TASKS[task].num_classes
    lp = pd.DataFrame(log_probs(frame, k), index=frame["person"].to_numpy())
    grouped = lp.groupby(level=0, sort=True)
    means = grouped.mean()
    post, people = softmax(means.to_numpy()), means.index
    out = pd.DataFrame(post, index=people, columns=[f"p{c}" for c in range(k)])
    out["given"] = frame.groupby("person", sort=True)["label"].first().reindex(people).to_numpy().astype(int)
    out["pred"] = post.argmax(1)
    out["confidence"] = post.max(1)
    out["photos"] = grouped.size().to_numpy()
    favours = lp.to_numpy().argmax(1) == out["pred"].reindex(lp.index).to_numpy()
    out["agree"] = pd.Series(favours, index=lp.index).groupby(level=0, sort=True).sum().reindex(people).astype(int)
    out.index.name = "person"
    return out


def group_range(group: int, cuts: tuple[int, int]) -> tuple[int, int]:
    """The ages (inclusive) of an age group under ``cuts``."""
    young, old = cuts
    return [(0, young - 1), (young, old - 1), (old, 120)][group]


def _years_outside(age: int, group: int, cuts: tuple[int, int]) -> int:
    lo, hi = group_range(group, cuts)
    return max(lo - age, age - hi, 0)


def _group_text(group: int, cuts: tuple[int, int]) -> str:
    lo, hi = group_range(group, cuts)
    name = TASKS["age"].classes[group]
    return f"{name} ({lo}-{hi})" if hi < 120 else f"{name} ({lo}+)"


def _person_table(task: str, post: pd.DataFrame, v, given: list[str], suggested: list[str], reasons: list[str]):
    return unit_table(post.index.to_numpy(), "", task, task, given, suggested, *v.columns(), reasons)


def _favours(task: str, post: pd.DataFrame) -> list[str]:
    names = TASKS[task].classes
    return [
        f"{task} model favours {names[r.pred]} on {r.agree}/{r.photos} photos (person-level {r.confidence:.3f})"
        for r in post.itertuples(index=False)
    ]


def _judged(post: pd.DataFrame, k: int, mode: str, min_confidence: float, eligible=None):
    probs = post[[f"p{c}" for c in range(k)]].to_numpy()
    return judge(probs, post["given"].to_numpy(), mode, min_confidence, eligible)


def gender_suspects(frame: pd.DataFrame, min_confidence: float = MIN_CONFIDENCE, mode: str = FIXED) -> pd.DataFrame:
    """Every person, ranked by how strongly their photos, pooled, contradict the given gender."""
    names = TASKS["gender"].classes
    post = person_posteriors(frame, "gender")
    v = _judged(post, len(names), mode, min_confidence)
    given = [names[g] for g in post["given"]]
    suggested = [names[s] for s in v.suggestion]
    table = _person_table("gender", post, v, given, suggested, _favours("gender", post))
    return ranked(table, {"gender": thresholds_by_name(v.thresholds, names)})


def age_suspects(
    frame: pd.DataFrame,
    ages: dict[str, int] | None = None,
    cuts: tuple[int, int] = COMPETITION_AGE_CUTS,
    min_confidence: float = MIN_CONFIDENCE,
    mode: str = FIXED,
) -> pd.DataFrame:
    """Every person, ranked by how strongly their photos contradict the given age group, none flagged; ``ages``
    (person -> years) keeps a group within AGE_MARGIN_YEARS of the given age from being suggested."""
    names = TASKS["age"].classes
    post = person_posteriors(frame, "age")
    known = [(ages or {}).get(p) for p in post.index]
    eligible = np.array(
        [[a is None or _years_outside(a, g, cuts) >= AGE_MARGIN_YEARS for g in range(len(names))] for a in known], bool
    ).reshape(len(post), len(names))
    v = _judged(post, len(names), mode, min_confidence, eligible)
    given, suggested, reasons = [], [], _favours("age", post)
    for i, (age, g, s) in enumerate(zip(known, post["given"], v.suggestion, strict=True)):
        given.append(f"{age} ({names[g]})" if age is not None else names[g])
        suggested.append(_group_text(int(s), cuts) if s >= 0 else "")
        if s < 0:
            reasons[i] += f"; given age {age} is within {AGE_MARGIN_YEARS} years of every other group"
        elif age is not None:
            reasons[i] += f"; given age {age} is {_years_outside(age, int(s), cuts)} years outside {names[s]}"
    would = int(v.flag.sum())
    v.flag = np.zeros_like(v.flag)
    out = ranked(
        _person_table("age", post, v, given, suggested, reasons), {"age": thresholds_by_name(v.thresholds, names)}
    )
    out.attrs["ranked_only"] = {"age": would}
    return out


def swap_pairs(mask: pd.DataFrame) -> pd.DataFrame:
    """Per person with one photo labelled incorrect and one labelled not worn: P(the two are swapped)."""
    lp = pd.DataFrame(log_probs(mask, MASK_CLASSES), index=mask.index)
    inc = mask[mask["label"] == INCORRECT].drop_duplicates("person", keep=False).set_index("person")
    nor = mask[mask["label"] == NOT_WEAR].drop_duplicates("person", keep=False).set_index("person")
    people = inc.index.intersection(nor.index).sort_values()
    empty = np.zeros((0, MASK_CLASSES))
    a = lp.loc[inc.loc[people, "row"].to_numpy()].to_numpy() if len(people) else empty
    b = lp.loc[nor.loc[people, "row"].to_numpy()].to_numpy() if len(people) else empty
    swapped = a[:, NOT_WEAR] + b[:, INCORRECT]
    as_given = a[:, INCORRECT] + b[:, NOT_WEAR]
    return pd.DataFrame(
        {
            "image_incorrect": inc.loc[people, "image"].to_numpy(),
            "image_normal": nor.loc[people, "image"].to_numpy(),
            "p_inc_looks_normal": np.exp(a[:, NOT_WEAR]),
            "p_normal_looks_inc": np.exp(b[:, INCORRECT]),
            "confidence": 1 / (1 + np.exp(as_given - swapped)),
        },
        index=people,
    )


def mask_swap_suspects(mask: pd.DataFrame, min_confidence: float = MIN_CONFIDENCE, mode: str = FIXED) -> pd.DataFrame:
    """Every incorrect/normal pair, ranked by P(swapped); adaptive: the threshold is the mean P(as given)."""
    pairs = swap_pairs(mask.reset_index(drop=True).assign(row=lambda d: d.index))
    p = pairs["confidence"].to_numpy()
    probs, labels = np.stack([1 - p, p], 1), np.zeros(len(pairs), int)
    t = min(class_thresholds(probs, labels, min_confidence)[0], min_confidence)  # capped, as judge caps
    v = judge(probs, labels, mode, min_confidence, thresholds=np.array([t, t]) if mode != FIXED else None)
    reasons = [
        f"incorrect_mask looks not worn ({r.p_inc_looks_normal:.3f}) and normal looks incorrect "
        f"({r.p_normal_looks_inc:.3f})"
        for r in pairs.itertuples(index=False)
    ]
    images = [f"{a};{b}" for a, b in zip(pairs["image_incorrect"], pairs["image_normal"], strict=True)]
    given, suggested = "incorrect/not_wear", "not_wear/incorrect"
    table = unit_table(pairs.index.to_numpy(), images, "mask_swap", "mask", given, suggested, *v.columns(), reasons)
    return ranked(table, {"mask_swap": {"swapped": round(float(v.thresholds[1]), 4)}})
