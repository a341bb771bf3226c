"""The gather of a multi-device (DDP) run: every process's values for the rows of its shard (rows ``rank,
rank + world_size, ...``: see ``datamodules.shard.ShardSampler``), put back together in row order on every
process. On one process each function returns what it is given."""

from __future__ import annotations

import torch
import torch.distributed as dist


def shard_rows(count: int, rank: int, world_size: int) -> torch.Tensor:
    """The rows of the first ``count`` items of process ``rank``'s shard (``datamodules.shard.ShardSampler``)."""
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
    """Every process's ``local`` values, one per item its shard yielded (the first
    ``len(local)`` of them), in row order, on every process; ``local`` itself on one process. A collective
    call when ``world_size > 1``."""
    if world_size == 1:
        return local
    values, _ = gather_rows(local, shard_rows(len(local), rank, world_size).to(local.device))
    return values
