"""Stopping a run whose training loss or weights stopped being finite (NaN or infinity), with one line saying
where and the likely setting, before a checkpoint holds the broken weights.

The loss is watched without a device sync per step: each batch's "not finite" flag stays on the device and the
flags are read together at the steps where a checkpoint may be written or the loss is logged, and at each
epoch's last batch (before validation and the epoch's checkpoints); the weights are checked at the same points.
"""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch

from callbacks.resume import last_batch_of_epoch, step_boundary
from core.errors import RunError


class FiniteLoss(pl.Callback):
    """Raises :class:`RunError` at the first non-finite training loss (or weights): ``epoch E, batch B (step S)``,
    and ``likely``, the setting that most likely caused it. ``check_every``: the optimizer-step intervals at
    which to read the flags (those of the mid-epoch checkpoints and of logging; 0: none)."""

    def __init__(self, likely: str, check_every: tuple[int, ...] = ()):
        self.likely = likely
        self.check_every = tuple(n for n in check_every if n > 0)
        self._flags: list[tuple[torch.Tensor, tuple[int, int, int]]] = []

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if isinstance(loss, torch.Tensor):
            where = (trainer.current_epoch, batch_idx, trainer.global_step)
            self._flags.append((~torch.isfinite(loss.detach()).all(), where))
        epoch_end = last_batch_of_epoch(trainer)
        due = step_boundary(trainer) and any(trainer.global_step % n == 0 for n in self.check_every)
        if epoch_end or due:
            self.check(trainer, pl_module)

    def check(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Read the flags gathered since the last check, and the weights; raise at the first that is not finite
        (on every process when one found it: a collective call)."""
        flags, self._flags = self._flags, []
        first = None
        if flags:
            bad = torch.stack([flag for flag, _ in flags]).nonzero()
            first = flags[int(bad[0])][1] if len(bad) else None
        params = [p for p in pl_module.parameters() if p.numel()]
        weights_bad = bool(params) and not bool(torch.stack([torch.isfinite(p).all() for p in params]).all())
        if not trainer.strategy.reduce_boolean_decision(first is not None or weights_bad, all=False):
            return
        if first is not None:
            epoch, batch, step = first
            what = f"the training loss became NaN or infinite at epoch {epoch}, batch {batch} (step {step})"
        else:
            epoch, step = trainer.current_epoch, trainer.global_step
            what = f"the weights became NaN or infinite by epoch {epoch}, step {step}"
        raise RunError(f"{what}: {self.likely}; then start the run afresh with --overwrite")
