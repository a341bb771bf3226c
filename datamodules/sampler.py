"""A class-balanced sampler that shards one shared, seeded sequence across processes."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import Sampler


def balanced_weights(labels: Sequence[int]) -> np.ndarray:
    """Per-sample weights ``1 / count(label)``: every class is drawn equally often in expectation."""
    labels = np.asarray(labels)
    counts = np.bincount(labels)
    return 1.0 / counts[labels]


class BalancedSampler(Sampler[int]):
    """Draws ``num_samples`` indices per epoch with replacement, weighted so classes come out balanced.

    All processes draw the same sequence from ``seed + epoch``; process ``rank`` of ``world_size`` keeps
    every ``world_size``-th index from ``rank`` on, so the shards are disjoint and together one sequence.
    Lightning calls :meth:`set_epoch` each epoch. :meth:`resume_at` starts an epoch part-way, where a killed
    run stopped.
    """

    def __init__(
        self,
        labels: Sequence[int],
        num_samples: int | None = None,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ):
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is outside world size {world_size}")
        self.weights = torch.as_tensor(balanced_weights(labels), dtype=torch.double)
        total = num_samples if num_samples is not None else len(self.weights)
        self.per_rank = math.ceil(total / world_size)
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.epoch = 0
        self.start = 0  # positions of this epoch's shard to leave out (already trained on before a resume)

    def set_epoch(self, epoch: int) -> None:
        if epoch != self.epoch:
            self.start = 0
        self.epoch = epoch

    def resume_at(self, epoch: int, start: int) -> None:
        """Iterate ``epoch`` from position ``start`` of this process's shard on: the rest of the epoch, exactly
        as an uninterrupted run would have gone on. ``len`` stays the whole epoch's (Lightning counts the
        batches before ``start`` as done); :meth:`set_epoch` to another epoch starts from 0 again."""
        if start < 0:
            raise ValueError(f"start {start} is negative")
        self.epoch, self.start = epoch, start

    def shared_sequence(self) -> torch.Tensor:
        g = torch.Generator().manual_seed(self.seed + self.epoch)
        return torch.multinomial(self.weights, self.per_rank * self.world_size, replacement=True, generator=g)

    def __iter__(self) -> Iterator[int]:
        return iter(self.shared_sequence()[self.rank :: self.world_size][self.start :].tolist())

    def __len__(self) -> int:
        return self.per_rank


class ShuffleSampler(BalancedSampler):
    """Plain shuffling without replacement, sharded the same way (the ``shuffle`` sampler setting)."""

    def __init__(self, labels: Sequence[int], seed: int = 0, rank: int = 0, world_size: int = 1):
        super().__init__(labels, None, seed, rank, world_size)

    def shared_sequence(self) -> torch.Tensor:
        g = torch.Generator().manual_seed(self.seed + self.epoch)
        n = len(self.weights)
        order = torch.randperm(n, generator=g)
        pad = self.per_rank * self.world_size - n
        return torch.cat([order, order[:pad]]) if pad > 0 else order
