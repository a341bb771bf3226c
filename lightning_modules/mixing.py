"""MixUp and CutMix of a training batch on the device (``augment.mixup_alpha`` / ``augment.cutmix_alpha``), with
timm's ``Mixup``: it draws the mixing weight and mixes each image with its partner in the batch (the batch
reversed). Every head's target is mixed with the same weights, as ``(N, C)`` probabilities the losses take."""

from __future__ import annotations

import torch
from timm.data import Mixup
from torch import Tensor

from configs.config import AugmentConfig
from lightning_modules.losses import soft


def build_mixer(aug: AugmentConfig) -> Mixup | None:
    """timm's batch mixer for the configured alphas; None when both are 0 (off)."""
    if aug.mixup_alpha <= 0 and aug.cutmix_alpha <= 0:
        return None
    return Mixup(
        mixup_alpha=aug.mixup_alpha,
        cutmix_alpha=aug.cutmix_alpha,
        prob=aug.mix_prob,
        switch_prob=aug.mix_switch_prob,
        mode="batch",
        label_smoothing=0.0,  # smoothing is the loss's business (loss.kind=label_smoothing)
        num_classes=2,  # set per batch below
    )


def mix_batch(
    mixer: Mixup, images: Tensor, targets: dict[str, Tensor], sizes: dict[str, int]
) -> tuple[Tensor, dict[str, Tensor]]:
    """``images`` (raw pixels) mixed, and each head's target (classes, or probabilities) mixed alike. An odd-sized
    batch (the last one of an epoch) is left as it is: timm mixes pairs."""
    n = len(images)
    if n % 2:
        return images, targets
    # mixing the identity's one-hot rows gives the mixing matrix itself: weights[i, j] = share of image j in i
    mixer.num_classes = n
    mixed, weights = mixer(images.float(), torch.arange(n, device=images.device))
    return mixed, {name: weights @ soft(target, sizes[name]) for name, target in targets.items()}
