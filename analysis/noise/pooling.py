"""How a person's photos become one probability per label, for the person-level rules (gender, age).

- ``mean`` (the default): the normalised geometric mean of the photos' probabilities (the mean
  log-probability), every photo alike. Also the fallback of the learnt pooling when a label is given to
  fewer than ``MIN_PEOPLE`` people (too few to fit), said in a warning.
- ``learnt``: the photos are grouped by what they show, by the mask state their file name gives (worn:
  mask1-5; incorrect_mask; normal; any other name a group of its own), and each group's mean
  log-probabilities (centred across the labels; 0 for a group the person has no photo of) are the features
  of a multinomial logistic regression of the person's true label. It learns how much each kind of photo
  tells: a mask hides the lips and the beard, so an uncovered face can count for more than five masked
  ones, or for less, as the model reads them. The regression is fitted to the given labels as labels that
  are wrong at a rate ``e`` (spread evenly over the other labels), estimated with the weights (the
  label-noise robust logistic regression of Bootkrajang and Kaban, ECML PKDD 2012, with one rate for every
  label): a plain fit would bend its weights to explain the very errors the finder looks for, and come out
  less sure than the photos say. It is
  cross-fitted: the people are split in ``PARTS`` parts (every ``PARTS``-th person in name order) and each
  part is scored by the fit to the others, so no person's own label enters their own score.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.optimize import minimize

from analysis.noise.suspects import log_probs, softmax
from core.tasks import MASK_FILES, TASKS

log = logging.getLogger("noise")

MEAN, LEARNT = "mean", "learnt"
POOLINGS = (MEAN, LEARNT)
PARTS = 5  # cross-fitting: each part of the people is scored by the fit to the other parts
MIN_PEOPLE = 20  # the fewest people given each label for the learnt pooling (else: the mean)
MAX_FLIP_RATE = 0.2  # the most label noise the learnt pooling's fit may assume
L2 = 1.0  # the fit's ridge penalty on the weights (0.5 * L2 * |W|^2, against the log-likelihood summed over people)
OTHER_PHOTO = max(MASK_FILES.values()) + 1  # the kind of a photo whose name is none of MASK_FILES


@dataclass
class Pooled:
    """One probability per person and label."""

    people: pd.Index  # sorted
    probs: np.ndarray  # people x labels
    given: np.ndarray  # each person's given label
    pooling: str  # the pooling used: LEARNT or MEAN (MEAN also when the learnt one could not be fitted)
    flip_rate: float | None = None  # the learnt pooling's estimate of the share of wrong labels (its mean over parts)


def photo_kinds(stems: pd.Series) -> np.ndarray:
    """Each photo's kind: the mask state its file name gives (``OTHER_PHOTO`` for an unknown name)."""
    return stems.map(MASK_FILES).fillna(OTHER_PHOTO).to_numpy(int)


def kind_features(frame: pd.DataFrame, k: int) -> pd.DataFrame:
    """Per person (sorted): the mean centred log-probability of each label over each kind of photo; 0 (no
    evidence) for a kind the person has no photo of."""
    lp = log_probs(frame, k)
    centred = pd.DataFrame(lp - lp.mean(1, keepdims=True), columns=range(k))
    centred["person"], centred["kind"] = frame["person"].to_numpy(), photo_kinds(frame["stem"])
    by_kind = centred.groupby(["person", "kind"], sort=True).mean().unstack("kind")
    return by_kind.fillna(0.0).sort_index()


def _too_few(task: str, given: np.ndarray, k: int) -> str | None:
    counts = np.bincount(given, minlength=k)
    short = [f"{TASKS[task].classes[c]} {counts[c]}" for c in range(k) if counts[c] < MIN_PEOPLE]
    return ", ".join(short) if short else None


def _unpack(theta: np.ndarray, d: int, k: int):
    w = theta[: d * k].reshape(d, k)
    b = theta[d * k : d * k + k]
    rate = MAX_FLIP_RATE / (1 + np.exp(-theta[-1]))
    return w, b, rate


def noisy_label_loss(theta: np.ndarray, x: np.ndarray, y: np.ndarray, k: int) -> tuple[float, np.ndarray]:
    """The negative log-likelihood (plus the ridge penalty) of the given labels ``y`` under a multinomial
    logistic model of the true label whose labels are wrong at a rate ``e`` (spread evenly over the other
    labels): P(given c) = e / (k - 1) + (1 - e k / (k - 1)) * P(true c); and its gradient. ``theta``: the
    weights (features x labels), the biases, and e's logit on (0, MAX_FLIP_RATE)."""
    d = x.shape[1]
    w, b, rate = _unpack(theta, d, k)
    s = softmax(x @ w + b)
    rows = np.arange(len(y))
    a = 1 - rate * k / (k - 1)
    p_given = rate / (k - 1) + a * s[rows, y]
    loss = -np.log(p_given).sum() + 0.5 * L2 * (w**2).sum()
    onehot = np.eye(k)[y]
    g = -(a * s[rows, y] / p_given)[:, None] * (onehot - s)  # d loss / d logits
    d_rate = -((1 - s[rows, y]) / (k - 1) - s[rows, y]) / p_given  # d loss / d e, per person
    d_theta_rate = d_rate.sum() * rate * (1 - rate / MAX_FLIP_RATE)
    grad = np.concatenate([(x.T @ g + L2 * w).ravel(), g.sum(0), [d_theta_rate]])
    return float(loss), grad


def fit_noisy_labels(x: np.ndarray, y: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, float]:
    """Weights, biases and flip rate maximising :func:`noisy_label_loss`'s likelihood."""
    d = x.shape[1]
    prior = np.log(np.bincount(y, minlength=k) + 1.0)
    start = np.concatenate([np.zeros(d * k), prior - prior.mean(), [np.log(0.01 / (MAX_FLIP_RATE - 0.01))]])
    res = minimize(noisy_label_loss, start, args=(x, y, k), jac=True, method="L-BFGS-B")
    return _unpack(res.x, d, k)


def pool(frame: pd.DataFrame, task: str, pooling: str = MEAN) -> Pooled:
    """A person's probability of each label from their photos' out-of-fold probabilities (``pooling``: see
    the module doc)."""
    if pooling not in POOLINGS:
        raise ValueError(f"pooling {pooling!r}: expected one of {', '.join(POOLINGS)}")
    k = TASKS[task].num_classes
    means = pd.DataFrame(log_probs(frame, k), index=frame["person"].to_numpy()).groupby(level=0, sort=True).mean()
    people = means.index
    given = frame.groupby("person", sort=True)["label"].first().reindex(people).to_numpy().astype(int)
    mean = Pooled(people, softmax(means.to_numpy()), given, MEAN)
    if pooling == MEAN:
        return mean
    short = _too_few(task, given, k)
    if short:
        log.warning(
            "%s: the learnt pooling needs %d people given each label (%s): pooled by the mean of the photos",
            task,
            MIN_PEOPLE,
            short,
        )
        return mean
    x = kind_features(frame, k).reindex(people).to_numpy()
    part = np.arange(len(people)) % PARTS  # every PARTS-th person in name order, whatever their label
    probs, rates = np.zeros((len(people), k)), []
    for p in range(PARTS):
        rest = part != p
        if len(np.unique(given[rest])) < k:
            log.warning("%s: the people of a label are all in one part: pooled by the mean of the photos", task)
            return mean
        w, b, rate = fit_noisy_labels(x[rest], given[rest], k)
        probs[~rest] = softmax(x[~rest] @ w + b)
        rates.append(rate)
    return Pooled(people, probs, given, LEARNT, float(np.mean(rates)))
