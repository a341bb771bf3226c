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
    """``accumulate_grad_batches`` so that devices x batch_size x it reaches ``effective_batch``."""
    if batch_size < 1 or devices < 1:
        raise ValueError(f"batch_size and devices must be at least 1, got {batch_size} and {devices}")
    return max(1, math.ceil(effective_batch / (batch_size * devices)))


def configure_optimizers(params: Iterable[Any], cfg: OptimConfig, max_epochs: int):
    """What a LightningModule's ``configure_optimizers`` returns: the optimizer, with its scheduler if any."""
    optimizer = build_optimizer(params, cfg)
    scheduler = build_scheduler(optimizer, cfg, max_epochs)
    if scheduler is None:
        return optimizer
    return {"optimizer": optimizer, "lr_scheduler": scheduler}
