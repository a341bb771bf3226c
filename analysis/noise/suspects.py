"""What a suspect is (its columns and kinds) and the decision rule's constants, shared by the rules, the
outlier scores, the outputs and the truth scores."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd

from core.tasks import MASK_FILES
from rundir.layout import prob_columns

SUSPECT_COLUMNS = ["person", "image", "task", "given", "predicted", "confidence", "reason", "kind"]
KINDS = ("gender", "age", "mask_swap", "outlier")  # the kinds of DIR/truth/noise.csv
PROB_FLOOR = 0.01
MIN_CONFIDENCE = 0.9
AGE_MARGIN_YEARS = 5
INCORRECT, NOT_WEAR = MASK_FILES["incorrect_mask"], MASK_FILES["normal"]  # mask labels of those two photos


def log_probs(frame: pd.DataFrame, num_classes: int) -> np.ndarray:
    """Each photo's log-probabilities, clipped to ``PROB_FLOOR`` and renormalised."""
    p = np.clip(frame[prob_columns(num_classes)].to_numpy(float), PROB_FLOOR, 1.0)
    return np.log(p / p.sum(1, keepdims=True))


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def image_stem(image: str) -> str:
    return os.path.splitext(image)[0]
