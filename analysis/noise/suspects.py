"""What a ranked unit is (its columns and kinds) and the decision rule's constants."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd

from core.tasks import ERROR_KINDS, MASK_FILES
from rundir.layout import prob_columns

# One row per unit (a person for gender, age and mask_swap; a photo for outlier); ``score``: :func:`scaled_score`,
# ``reviewed``: listed by a corrections file as looked at and kept as labelled (never flagged, ranked last).
SUSPECT_COLUMNS = "person image kind task given suggested confidence threshold score flag reviewed reason".split()
KINDS = ERROR_KINDS  # the kinds of DIR/truth/noise.csv, and of a corrections file's reviewed section
PROB_FLOOR = 0.01
MIN_CONFIDENCE = 0.9
AGE_MARGIN_YEARS = 5
INCORRECT, NOT_WEAR = MASK_FILES["incorrect_mask"], MASK_FILES["normal"]  # mask labels of those two photos
ADAPTIVE, FIXED = "adaptive", "fixed"  # one cut for every rule (the default), or confident learning's per class
THRESHOLD_MODES = (FIXED, ADAPTIVE)


def log_probs(frame: pd.DataFrame, num_classes: int) -> np.ndarray:
    """Each photo's log-probabilities, clipped to ``PROB_FLOOR`` and renormalised."""
    p = np.clip(frame[prob_columns(num_classes)].to_numpy(float), PROB_FLOOR, 1.0)
    return np.log(p / p.sum(1, keepdims=True))


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def scaled_score(confidence: np.ndarray, threshold: np.ndarray) -> np.ndarray:
    """How far past its threshold a confidence is: the share of the way to 1 above it, to 0 (-1) below it."""
    c, t = np.asarray(confidence, float), np.asarray(threshold, float)
    with np.errstate(divide="ignore", invalid="ignore"):
        above = (c - t) / np.maximum(1 - t, 1e-9)
        below = (c - t) / np.maximum(t, 1e-9)
    return np.clip(np.where(c >= t, above, below), -1.0, 1.0)


def is_reviewed(table: pd.DataFrame, reviewed: dict[str, set]) -> np.ndarray:
    """Which rows ``reviewed`` lists: kind -> people (for ``outlier``: (person, stem) photos)."""
    kinds = table["kind"].to_numpy()
    keys = [
        (p, image_stem(str(i))) if k == "outlier" else p
        for p, i, k in zip(table["person"], table["image"], kinds, strict=True)
    ]
    return np.array([key in reviewed.get(k, ()) for key, k in zip(keys, kinds, strict=True)], bool)


def ranked(table: pd.DataFrame, thresholds: dict, reviewed: dict[str, set] | None = None) -> pd.DataFrame:
    """``table`` sorted by score, the ``reviewed`` units unflagged and last (``attrs["held_back"]`` by kind)."""
    table = table[SUSPECT_COLUMNS].copy()
    table["reviewed"] = table["reviewed"].to_numpy(bool) | (is_reviewed(table, reviewed) if reviewed else False)
    for column in ("confidence", "threshold", "score"):
        table[column] = table[column].astype(float)
    table["flag"] = table["flag"].astype(bool)
    held = table.loc[table["flag"] & table["reviewed"], "kind"].value_counts()  # what the rule would have flagged
    table["flag"] &= ~table["reviewed"]
    table["_kind"] = table["kind"].map({k: i for i, k in enumerate(KINDS)})
    order = ["reviewed", "score", "_kind", "person", "image"]
    table = table.sort_values(order, ascending=[True, False, True, True, True])
    table = table.drop(columns="_kind").reset_index(drop=True)
    table.attrs["thresholds"] = thresholds
    if reviewed:
        table.attrs["held_back"] = {str(k): int(n) for k, n in held.items()}
    return table


def unit_table(person, image, kind, task, given, suggested, confidence, threshold, score, flag, reason):
    """One rule's units as a table of SUSPECT_COLUMNS, none reviewed yet."""
    values = [person, image, kind, task, given, suggested, confidence, threshold, score, flag, False, reason]
    return pd.DataFrame(dict(zip(SUSPECT_COLUMNS, values, strict=True)))


def image_stem(image: str) -> str:
    return os.path.splitext(image)[0]
