"""Every kind ranked together: :func:`find_suspects` runs the rules of :mod:`analysis.noise.rules` and
:mod:`analysis.noise.outliers` on an experiment's out-of-fold frames and returns one table, every unit
(person or photo) with its score and flag, the strongest contradiction first."""

from __future__ import annotations

import pandas as pd

from analysis.noise.outliers import outlier_suspects, photo_scores
from analysis.noise.rules import age_suspects, gender_suspects, mask_swap_suspects
from analysis.noise.suspects import FIXED, INCORRECT, MIN_CONFIDENCE, NOT_WEAR, SUSPECT_COLUMNS, ranked
from core.tasks import COMPETITION_AGE_CUTS


def find_suspects(
    frames: dict[str, pd.DataFrame],
    ages: dict[str, int] | None = None,
    cuts: tuple[int, int] = COMPETITION_AGE_CUTS,
    files: dict | None = None,
    min_confidence: float = MIN_CONFIDENCE,
    progress: bool = True,
    mode: str = FIXED,
    reviewed: dict[str, set] | None = None,
    person_frames: dict[str, pd.DataFrame] | None = None,
) -> pd.DataFrame:
    """Every unit of every kind, sorted by score; ``attrs``: ``thresholds`` (by kind or task, and class),
    ``ranked_only`` (by kind, the units the rank-only rules would flag). ``mode``: ``fixed`` (``min_confidence``
    for every rule) or ``adaptive`` (per-class thresholds from the data); ``reviewed``: kind -> the units a
    reviewer kept as labelled (people; for outlier, (person, stem) photos), never flagged and ranked last,
    ``attrs["held_back"]`` counting those the rules would flag; ``person_frames``: other frames for the gender
    and age rules (the nearest training photos' votes), the outlier check still reading ``frames``."""
    parts = [pd.DataFrame(columns=SUSPECT_COLUMNS)]
    judged = {**frames, **(person_frames or {})}
    if "gender" in judged:
        parts.append(gender_suspects(judged["gender"], min_confidence, mode))
    if "age" in judged:
        parts.append(age_suspects(judged["age"], ages, cuts, min_confidence, mode=mode))
    explained: set[tuple[str, str]] = set()
    if "mask" in frames:
        swaps = mask_swap_suspects(frames["mask"], min_confidence, mode)
        parts.append(swaps)
        m = frames["mask"]
        flagged = set(swaps.loc[swaps["flag"], "person"])  # a reviewed swap's too: its photos have been seen
        swapped = m["person"].isin(flagged) & m["label"].isin([INCORRECT, NOT_WEAR])
        explained = set(zip(m.loc[swapped, "person"], m.loc[swapped, "stem"], strict=True))
    scores = photo_scores(frames, files, progress)
    parts.append(outlier_suspects(frames, scores, explained, min_confidence, mode))
    thresholds = {key: value for part in parts for key, value in part.attrs.get("thresholds", {}).items()}
    ranked_only = {key: value for part in parts for key, value in part.attrs.get("ranked_only", {}).items()}
    table = pd.concat([p for p in parts if len(p)] or parts[:1], ignore_index=True)
    out = ranked(table, thresholds, reviewed)
    out.attrs["ranked_only"] = ranked_only
    return out
