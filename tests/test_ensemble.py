import numpy as np
import pytest

from core.tasks import class18, split_class18
from lightning_modules.ensemble import combine_heads, hard_vote, merge, soft_vote


def _onehot(idx, n):
    out = np.full((len(idx), n), 0.01)
    out[np.arange(len(idx)), idx] = 1 - 0.01 * (n - 1)
    return out


def test_all_18_classes_round_trip_through_the_combiner():
    classes = np.arange(18)
    m, g, a = split_class18(classes)
    probs18, answer = combine_heads(_onehot(m, 3), _onehot(g, 2), _onehot(a, 3))
    assert answer.tolist() == classes.tolist()
    assert probs18.argmax(1).tolist() == classes.tolist()
    assert np.allclose(probs18.sum(1), 1)
    assert class18(2, 1, 0) == 15


def test_combiner_rejects_swapped_heads():
    with pytest.raises(ValueError, match="3 mask, 2 gender and 3 age"):
        combine_heads(np.ones((2, 2)), np.ones((2, 3)), np.ones((2, 3)))


def test_soft_and_hard_disagree_where_they_should():
    # three models, one image: two vote class 0 weakly, one votes class 1 very confidently
    probs = np.array([[[0.55, 0.45]], [[0.55, 0.45]], [[0.0, 1.0]]])
    assert soft_vote(probs).argmax(1).tolist() == [1]  # mean: 0.367 vs 0.633
    assert hard_vote(probs).argmax(1).tolist() == [0]  # majority: 2 votes to 1


def test_hard_vote_tie_is_broken_by_mean_probability():
    # two models, one vote each: class 2 has the higher mean probability
    probs = np.array([[[0.5, 0.1, 0.4]], [[0.05, 0.0, 0.95]]])
    scores = hard_vote(probs)
    assert scores.argmax(1).tolist() == [2]
    assert np.allclose(scores.sum(1), 1)
    # reversed confidence flips the tie-break
    probs = np.array([[[0.9, 0.1, 0.0]], [[0.45, 0.0, 0.55]]])
    assert hard_vote(probs).argmax(1).tolist() == [0]


def test_none_refuses_several_models():
    probs = np.random.default_rng(0).dirichlet([1, 1, 1], size=(2, 4))
    with pytest.raises(ValueError, match="exactly one checkpoint"):
        merge(probs, "none")
    assert np.allclose(merge(probs[:1], "none"), probs[0])
