"""How a rule decides each unit's suggestion, confidence, threshold, score and flag: ``fixed``, one cut, or
``adaptive``, confident learning (Northcutt, Jiang and Chuang, JAIR 2021; docs/noise-finder.md)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from analysis.noise.suspects import FIXED, THRESHOLD_MODES, scaled_score


def class_thresholds(probs: np.ndarray, labels: np.ndarray, fallback: float) -> np.ndarray:
    """Per class: its mean probability over the units labelled with it (``fallback`` for none)."""
    t = np.full(probs.shape[1], float(fallback))
    for c in range(probs.shape[1]):
        mine = labels == c
        if mine.any():
            t[c] = float(probs[mine, c].mean())
    return t


@dataclass
class Verdict:
    """Per unit: the suggested class (-1: none), confidence, threshold, score and flag; per class: thresholds."""

    suggestion: np.ndarray
    confidence: np.ndarray
    threshold: np.ndarray
    score: np.ndarray
    flag: np.ndarray
    thresholds: np.ndarray

    def columns(self) -> tuple:
        return self.confidence, self.threshold, self.score, self.flag


def judge(
    probs: np.ndarray,
    labels: np.ndarray,
    mode: str = FIXED,
    cut: float = 0.9,
    eligible: np.ndarray | None = None,
    thresholds: np.ndarray | None = None,
) -> Verdict:
    """Decide every unit; ``eligible[i, c]`` False: ``c`` is never suggested for ``i``; ``cut``: the fixed cut and
    the adaptive thresholds' ceiling; ``thresholds`` overrides the adaptive ones."""
    if mode not in THRESHOLD_MODES:
        raise ValueError(f"threshold mode {mode!r}: expected one of {', '.join(THRESHOLD_MODES)}")
    probs, labels = np.asarray(probs, float), np.asarray(labels, int)
    n, k = probs.shape
    own = np.arange(k)[None, :] == labels[:, None]
    other = ~own if eligible is None else (np.asarray(eligible, bool) & ~own)
    if mode == FIXED:
        thresholds = np.full(k, float(cut))
    elif thresholds is None:
        thresholds = np.minimum(class_thresholds(probs, labels, cut), cut)
    rows = np.arange(n)
    has = other.any(1)
    suggestion = np.where(has, np.where(other, scaled_score(probs, thresholds), -np.inf).argmax(1), -1)
    pick = np.maximum(suggestion, 0)
    confidence = np.where(has, probs[rows, pick], 0.0)
    threshold = np.where(has, thresholds[pick], np.nan)
    score = np.where(has, scaled_score(confidence, threshold), -1.0)
    top = has & (probs.argmax(1) == suggestion)  # the model's most probable label is the suggestion
    if mode == FIXED:
        flag = top & (confidence >= cut)
    else:
        flag = _prune_by_noise_rate(probs, labels, own | other, thresholds, suggestion, score, top)
    return Verdict(suggestion, confidence, threshold, score, flag, thresholds)


def _prune_by_noise_rate(probs, labels, allowed, thresholds, suggestion, score, candidate) -> np.ndarray:
    """Flag, for each (given y, suggested c), the calibrated confident-joint count of the top-scored units."""
    k = probs.shape[1]
    over = allowed & (probs >= thresholds)
    confident = np.where(over.any(1), np.where(over, probs, -1.0).argmax(1), -1)
    flag = np.zeros(len(probs), bool)
    for y in range(k):
        mine = labels == y
        sure = int((mine & (confident >= 0)).sum())
        for c in range(k):
            count = int((mine & (confident == c)).sum())
            if c == y or count == 0:
                continue
            quota = int(np.floor(count * mine.sum() / sure + 0.5))
            cell = np.flatnonzero(mine & (suggestion == c) & candidate)
            flag[cell[np.argsort(-score[cell], kind="stable")[:quota]]] = True
    return flag


def thresholds_by_name(thresholds: np.ndarray, names: tuple[str, ...] | list[str]) -> dict[str, float]:
    return {name: round(float(t), 4) for name, t in zip(names, thresholds, strict=True)}
