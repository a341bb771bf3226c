"""The decision rules for a person's labels: person posteriors, gender and age suspects, swapped
``incorrect_mask``/``normal`` pairs, and :func:`find_suspects`, every kind ranked together."""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.noise.outliers import outlier_suspects, photo_scores
from analysis.noise.suspects import (
    AGE_MARGIN_YEARS,
    INCORRECT,
    KINDS,
    MIN_CONFIDENCE,
    NOT_WEAR,
    SUSPECT_COLUMNS,
    log_probs,
    softmax,
)
from core.tasks import COMPETITION_AGE_CUTS, TASKS

MASK_CLASSES = TASKS["mask"].num_classes


def person_posteriors(frame: pd.DataFrame, task: str) -> pd.DataFrame:
    """Per person: the given label, each label's probability (normalised geometric mean over the photos),
    the best label, and how many photos favour it."""
    k = TASKS[task].num_classes
    lp = pd.DataFrame(log_probs(frame, k), index=frame["person"].to_numpy())
    grouped = lp.groupby(level=0, sort=True)
    post = softmax(grouped.mean().to_numpy())
    people = grouped.mean().index
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


def gender_suspects(frame: pd.DataFrame, min_confidence: float = MIN_CONFIDENCE) -> pd.DataFrame:
    names = TASKS["gender"].classes
    post = person_posteriors(frame, "gender")
    hits = post[(post["pred"] != post["given"]) & (post["confidence"] >= min_confidence)]
    rows = [
        (
            person,
            "",
            "gender",
            names[r.given],
            names[r.pred],
            r.confidence,
            f"gender model favours {names[r.pred]} on {r.agree}/{r.photos} photos (person-level {r.confidence:.3f})",
            "gender",
        )
        for person, r in zip(hits.index, hits.itertuples(index=False), strict=True)
    ]
    return pd.DataFrame(rows, columns=SUSPECT_COLUMNS)


def age_suspects(
    frame: pd.DataFrame,
    ages: dict[str, int] | None = None,
    cuts: tuple[int, int] = COMPETITION_AGE_CUTS,
    min_confidence: float = MIN_CONFIDENCE,
    margin: int = AGE_MARGIN_YEARS,
) -> pd.DataFrame:
    """Age suspects; ``ages`` (person -> years) enables the margin rule and the suggested age."""
    names = TASKS["age"].classes
    post = person_posteriors(frame, "age")
    hits = post[(post["pred"] != post["given"]) & (post["confidence"] >= min_confidence)]
    rows = []
    for person, r in zip(hits.index, hits.itertuples(index=False), strict=True):
        lo, hi = group_range(int(r.pred), cuts)
        pred_text = f"{names[r.pred]} ({lo}-{hi})" if hi < 120 else f"{names[r.pred]} ({lo}+)"
        reason = f"age model favours {names[r.pred]} on {r.agree}/{r.photos} photos (person-level {r.confidence:.3f})"
        age = (ages or {}).get(person)
        if age is not None:
            outside = max(lo - age, age - hi, 0)
            if outside < margin:
                continue
            given = f"{age} ({names[r.given]})"
            reason += f"; given age {age} is {outside} years outside that group"
        else:
            given = names[r.given]
        rows.append((person, "", "age", given, pred_text, r.confidence, reason, "age"))
    return pd.DataFrame(rows, columns=SUSPECT_COLUMNS)


def swap_pairs(mask: pd.DataFrame) -> pd.DataFrame:
    """Per person with one photo labelled incorrect and one labelled not worn: P(the two are swapped)."""
    lp = pd.DataFrame(log_probs(mask, MASK_CLASSES), index=mask.index)
    inc = mask[mask["label"] == INCORRECT].drop_duplicates("person", keep=False).set_index("person")
    nor = mask[mask["label"] == NOT_WEAR].drop_duplicates("person", keep=False).set_index("person")
    people = inc.index.intersection(nor.index)
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


def mask_swap_suspects(mask: pd.DataFrame, min_confidence: float = MIN_CONFIDENCE) -> pd.DataFrame:
    mask = mask.reset_index(drop=True).assign(row=lambda d: d.index)
    pairs = swap_pairs(mask)
    hits = pairs[pairs["confidence"] >= min_confidence]
    rows = [
        (
            person,
            f"{r.image_incorrect};{r.image_normal}",
            "mask",
            "incorrect/not_wear",
            "not_wear/incorrect",
            r.confidence,
            f"incorrect_mask looks not worn ({r.p_inc_looks_normal:.3f}) and normal looks incorrect "
            f"({r.p_normal_looks_inc:.3f})",
            "mask_swap",
        )
        for person, r in zip(hits.index, hits.itertuples(index=False), strict=True)
    ]
    return pd.DataFrame(rows, columns=SUSPECT_COLUMNS)


def find_suspects(
    frames: dict[str, pd.DataFrame],
    ages: dict[str, int] | None = None,
    cuts: tuple[int, int] = COMPETITION_AGE_CUTS,
    files: dict | None = None,
    min_confidence: float = MIN_CONFIDENCE,
    progress: bool = True,
) -> pd.DataFrame:
    """Every suspect of every kind, most suspicious first."""
    parts = [pd.DataFrame(columns=SUSPECT_COLUMNS)]
    if "gender" in frames:
        parts.append(gender_suspects(frames["gender"], min_confidence))
    if "age" in frames:
        parts.append(age_suspects(frames["age"], ages, cuts, min_confidence))
    explained: set[tuple[str, str]] = set()
    if "mask" in frames:
        swaps = mask_swap_suspects(frames["mask"], min_confidence)
        parts.append(swaps)
        m = frames["mask"]
        swapped = m["person"].isin(set(swaps["person"])) & m["label"].isin([INCORRECT, NOT_WEAR])
        explained = set(zip(m.loc[swapped, "person"], m.loc[swapped, "stem"], strict=True))
    scores = photo_scores(frames, files, progress)
    parts.append(outlier_suspects(frames, scores, explained, min_confidence))
    out = pd.concat([p for p in parts if len(p)] or parts[:1], ignore_index=True)
    out["confidence"] = out["confidence"].astype(float).round(4)
    out["_kind"] = out["kind"].map({k: i for i, k in enumerate(KINDS)})
    out = out.sort_values(["confidence", "_kind", "person", "image"], ascending=[False, True, True, True])
    return out.drop(columns="_kind").reset_index(drop=True)
