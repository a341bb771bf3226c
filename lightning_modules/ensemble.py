"""Merging predictions: across folds and TTA views per task (soft or hard voting), and the three task heads
into the competition's 18 classes. Small pure functions on arrays."""

from __future__ import annotations

import numpy as np

from core.tasks import HEAD_SIZES, class18, joint_probs


def soft_vote(probs: np.ndarray) -> np.ndarray:
    """Mean probability over models: ``(models, images, classes)`` -> ``(images, classes)``."""
    return np.asarray(probs, dtype=np.float64).mean(0)


def hard_vote(probs: np.ndarray) -> np.ndarray:
    """Majority vote of the models' argmax, ties broken by the mean probability.

    Returns one-hot-like scores ``(images, classes)``: votes plus the mean probability as a tie-breaker
    scaled below one vote, renormalised to sum to 1 so they can still be combined like probabilities.
    """
    probs = np.asarray(probs, dtype=np.float64)
    votes = np.zeros(probs.shape[1:])
    for model_probs in probs:
        votes[np.arange(len(votes)), model_probs.argmax(1)] += 1
    scores = votes + probs.mean(0) * 0.5  # mean prob < 1, so it only orders classes with equal votes
    return scores / scores.sum(1, keepdims=True)


def merge(probs: np.ndarray, how: str) -> np.ndarray:
    """``soft``, ``hard`` or ``none`` (exactly one model) over ``(models, images, classes)``."""
    probs = np.asarray(probs)
    if how == "soft":
        return soft_vote(probs)
    if how == "hard":
        return hard_vote(probs)
    if how == "none":
        if len(probs) != 1:
            raise ValueError(f"--ensemble none needs exactly one checkpoint per task, found {len(probs)}")
        return probs[0].astype(np.float64)
    raise ValueError(f"unknown ensemble {how!r}: soft, hard or none")


def combine_heads(mask: np.ndarray, gender: np.ndarray, age: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The 18-class probabilities (``core.tasks.joint_probs``: the heads taken as independent) and the answer,
    the 18-class index of each head's argmax."""
    mask, gender, age = (np.asarray(p, dtype=np.float64) for p in (mask, gender, age))
    if (mask.shape[1], gender.shape[1], age.shape[1]) != HEAD_SIZES:
        raise ValueError(
            f"expected 3 mask, 2 gender and 3 age columns, got {mask.shape[1]}/{gender.shape[1]}/{age.shape[1]}"
        )
    answer = class18(mask.argmax(1), gender.argmax(1), age.argmax(1))
    return joint_probs(mask, gender, age), answer
