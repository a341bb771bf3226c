"""Validation and out-of-fold prediction split across the processes of a multi-device (DDP) run, every image
predicted exactly once, and the processes' results put back together in the validation frame's row order.

Lightning's ``DistributedSampler`` pads the shards to equal length with repeated images, so some images would
be predicted, scored and written twice. :class:`ShardSampler` pads nothing: process ``rank`` of ``world_size``
takes rows ``rank, rank + world_size, rank + 2 * world_size, ...``, so the shards are disjoint, together every
row once, and differ in length by at most one. :func:`gather_rows` collects every process's values with their
rows and sorts them by row.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.distributed as dist
from torch.utils.data import Sampler


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


def shard_rows(count: int, rank: int, world_size: int) -> torch.Tensor:
    """The rows of the first ``count`` items of process ``rank``'s :class:`ShardSampler` shard."""
    return torch.arange(count, dtype=torch.long) * world_size + rank


def distributed() -> bool:
    """Whether this process is one of several in an initialised process group."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def all_gather_uneven(tensor: torch.Tensor) -> list[torch.Tensor]:
    """Every process's ``tensor``, in rank order; their first dimensions may differ (each is padded to the
    longest for the exchange, then cut back). A collective call."""
    sizes = [torch.zeros(1, dtype=torch.long, device=tensor.device) for _ in range(dist.get_world_size())]
    dist.all_gather(sizes, torch.tensor([len(tensor)], device=tensor.device))
    lengths = [int(size.item()) for size in sizes]
    padded = tensor.new_zeros((max(lengths), *tensor.shape[1:]))
    padded[: len(tensor)] = tensor
    parts = [torch.empty_like(padded) for _ in lengths]
    dist.all_gather(parts, padded)
    return [part[:length] for part, length in zip(parts, lengths, strict=True)]


def gather_rows(values: torch.Tensor, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Every process's ``values`` (one per row, first dimension) and their ``rows``, concatenated and sorted by
    row, on every process. Shards may differ in length (an empty one too). On a single process: returned as
    given. A collective call: every process must make it. With NCCL, pass tensors on this process's GPU."""
    if not distributed():
        return values, rows
    values = torch.cat(all_gather_uneven(values))
    rows = torch.cat(all_gather_uneven(rows.to(values.device, torch.long)))
    order = rows.argsort(stable=True)
    return values[order], rows[order]


def gather_shards(local: torch.Tensor, rank: int, world_size: int) -> torch.Tensor:
    """Every process's ``local`` values, one per item its :class:`ShardSampler` shard yielded (the first
    ``len(local)`` of them), in row order, on every process; ``local`` itself on one process. A collective
    call when ``world_size > 1``."""
    if world_size == 1:
        return local
    values, _ = gather_rows(local, shard_rows(len(local), rank, world_size).to(local.device))
    return values
