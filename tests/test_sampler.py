import numpy as np

from datamodules.sampler import BalancedSampler, ShuffleSampler


def _labels():
    return [0] * 900 + [1] * 90 + [2] * 10


def test_classes_come_out_balanced():
    labels = np.array(_labels())
    drawn = labels[list(BalancedSampler(labels, num_samples=30000, seed=0))]
    share = np.bincount(drawn, minlength=3) / len(drawn)
    assert np.allclose(share, 1 / 3, atol=0.02)


def test_seeded_and_changes_per_epoch():
    a, b = BalancedSampler(_labels(), seed=5), BalancedSampler(_labels(), seed=5)
    assert list(a) == list(b)
    first = list(a)
    a.set_epoch(1)
    assert list(a) != first
    assert list(BalancedSampler(_labels(), seed=6)) != first


def test_two_processes_draw_disjoint_shards_of_one_sequence():
    labels = _labels()
    whole = BalancedSampler(labels, num_samples=1000, seed=3)
    shards = [BalancedSampler(labels, num_samples=1000, seed=3, rank=r, world_size=2) for r in (0, 1)]
    for s in shards:
        s.set_epoch(2)
    whole.set_epoch(2)
    seq = whole.shared_sequence()[:1000].tolist()
    r0, r1 = list(shards[0]), list(shards[1])
    assert len(r0) == len(r1) == 500
    assert r0 == seq[0::2] and r1 == seq[1::2]  # positions are disjoint and cover the sequence
    interleaved = [x for pair in zip(r0, r1, strict=True) for x in pair]
    assert interleaved == seq


def test_shuffle_sampler_visits_every_index_once():
    s = ShuffleSampler(list(range(10)) * 7, seed=1)
    assert sorted(s) == list(range(70))
    parts = [list(ShuffleSampler(list(range(70)), seed=1, rank=r, world_size=2)) for r in (0, 1)]
    assert sorted(parts[0] + parts[1]) == list(range(70))
