"""Validation and out-of-fold prediction split across the processes of a multi-device (DDP) run, every image
predicted exactly once, and the processes' results put back together in the validation frame's row order.

Lightning's ``DistributedSampler`` pads the shards to equal length with repeated images, so some images would
be predicted, scored and written twice. :class:`ShardSampler` pads nothing: process ``rank`` of ``world_size``
takes rows ``rank, rank + world_size, rank + 2 * world_size, ...``, so the shards are disjoint, together every
row once, and differ in length by at most one. ``core.distributed.gather_rows`` collects every process's values
with their rows and sorts them by row.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch.distributed as dist
from torch.utils.data import Sampler

from core.distributed import distributed


class ShardSampler(Sampler[int]):
    """Rows ``rank, rank + world_size, ...`` of ``0 .. n - 1``, in order: this process's shard, no padding.

    Without ``rank`` and ``world_size`` they are read from the process group each time the shard is asked for
    (one process when there is none), so a loader made before the processes exist (``ddp_spawn`` pickles it
    into each) still gives each process its own shard.
    """

    def __init__(self, n: int, rank: int | None = None, world_size: int | None = None):
        if n < 0:
            raise ValueError(f"n must be 0 or more, got {n}")
        if (rank is None) != (world_size is None):
            raise ValueError("give both rank and world_size, or neither")
        if rank is not None and not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is outside world size {world_size}")
        self.n, self.rank, self.world_size = n, rank, world_size

    @property
    def rows(self) -> range:
        if self.rank is not None:
            rank, world_size = self.rank, self.world_size
        else:
            rank, world_size = (dist.get_rank(), dist.get_world_size()) if distributed() else (0, 1)
        return range(rank, self.n, world_size)

    def __iter__(self) -> Iterator[int]:
        return iter(self.rows)

    def __len__(self) -> int:
        return len(self.rows)
