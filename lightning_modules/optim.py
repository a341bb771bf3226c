"""Optimizer, learning-rate schedule and gradient accumulation, built by name from :class:`OptimConfig`."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import madgrad
import torch

from configs.config import OptimConfig


def build_optimizer(params: Iterable[Any], cfg: OptimConfig) -> torch.optim.Optimizer:
    """The optimizer named by ``cfg.name``: madgrad (the seed's), adamw, or sgd (Nesterov with momentum)."""
    if cfg.name == "madgrad":
        return madgrad.MADGRAD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    if cfg.name == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.name == "sgd":
        return torch.optim.SGD(
            params,
            lr=cfg.lr,
            momentum=cfg.momentum,
            weight_decay=cfg.weight_decay,
            nesterov=cfg.momentum > 0,
        )
    raise ValueError(f"optim.name: unknown optimizer {cfg.name!r}; choose madgrad, adamw or sgd")


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: OptimConfig, max_epochs: int) -> dict[str, Any] | None:
    """A Lightning ``lr_scheduler`` config stepped once per epoch, or None for ``scheduler: none``."""
    if cfg.scheduler == "none":
        return None
    if cfg.scheduler == "cosine":
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, max_epochs))
    elif cfg.scheduler == "step":
        if cfg.step_size < 1:
            raise ValueError(f"optim.step_size: must be at least 1, got {cfg.step_size}")
        scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=cfg.step_size, gamma=cfg.gamma)
    elif cfg.scheduler == "plateau":
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode="max", factor=cfg.gamma, patience=cfg.patience
        )
        return {"scheduler": scheduler, "interval": "epoch", "monitor": "val/f1"}
    else:
        raise ValueError(f"optim.scheduler: unknown scheduler {cfg.scheduler!r}; choose none, cosine, step or plateau")
    return {"scheduler": scheduler, "interval": "epoch"}


def accumulation(effective_batch: int, batch_size: int, devices: int) -> int:
    """``accumulate_grad_batches`` so that devices x batch_size x it comes nearest ``effective_batch`` (at least
    1; halfway rounds up). It is exact only when ``effective_batch`` is a multiple of devices x batch_size."""
    if batch_size < 1 or devices < 1:
        raise ValueError(f"batch_size and devices must be at least 1, got {batch_size} and {devices}")
    return max(1, math.floor(effective_batch / (batch_size * devices) + 0.5))


def fit_schedule_to_length(scheduler: Any, max_epochs: int) -> bool:
    """After a resume with another ``trainer.max_epochs``: make a restored schedule the one a run planned for
    ``max_epochs`` would follow from its current epoch on; True when it changed.

    The rule, for every scheduler: the learning rate of each epoch is the one a run planned for the new length
    uses. Cosine depends on the length (``T_max``), so it is stretched over the new one and the current rate set
    from its closed form (resumed from a finished 4-epoch run with max_epochs 6, epochs 4 and 5 get the rates of
    epochs 4/6 and 5/6 of the cosine, not 0 and then a climb). Step and plateau do not depend on the length: their
    restored state already continues as planned."""
    if not isinstance(scheduler, torch.optim.lr_scheduler.CosineAnnealingLR):
        return False
    length = max(1, max_epochs)
    if scheduler.T_max == length:
        return False
    scheduler.T_max = length
    epoch = min(scheduler.last_epoch, length)
    rates = [
        scheduler.eta_min + (base - scheduler.eta_min) * (1 + math.cos(math.pi * epoch / length)) / 2
        for base in scheduler.base_lrs
    ]
    for group, rate in zip(scheduler.optimizer.param_groups, rates, strict=True):
        group["lr"] = rate
    scheduler._last_lr = rates  # what get_last_lr() and Lightning's LearningRateMonitor read
    return True


def configure_optimizers(params: Iterable[Any], cfg: OptimConfig, max_epochs: int):
    """What a LightningModule's ``configure_optimizers`` returns: the optimizer, with its scheduler if any."""
    optimizer = build_optimizer(params, cfg)
    scheduler = build_scheduler(optimizer, cfg, max_epochs)
    if scheduler is None:
        return optimizer
    return {"optimizer": optimizer, "lr_scheduler": scheduler}
