"""Losses for one task head, built by name from :class:`LossConfig`.

Every loss takes ``logits (N, C)`` and a ``target``: integer classes ``(N,)``, or soft ``(N, C)`` probabilities
(what MixUp/CutMix make of two images' labels), and returns a scalar. Logits are cast to float32 first, so the
losses stay exact under bf16 autocast.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from configs.config import LossConfig, check_loss
from core.errors import ConfigError


def soft(target: Tensor, num_classes: int) -> Tensor:
    """``target`` as ``(N, C)`` float probabilities: one-hot for integer classes, as it is for soft targets."""
    if target.is_floating_point():
        return target.float()
    return F.one_hot(target, num_classes).float()


def _check_shapes(logits: Tensor, target: Tensor, num_classes: int, name: str) -> None:
    if logits.ndim != 2 or logits.shape[1] != num_classes:
        raise ValueError(
            f"{name} was built for {num_classes} classes but got logits of shape {tuple(logits.shape)}; "
            "build the loss with the task's class count"
        )
    if target.is_floating_point():
        if target.shape != logits.shape:
            raise ValueError(f"{name}: soft targets of shape {tuple(target.shape)} for logits {tuple(logits.shape)}")
        return
    if not target.is_cuda and ((target < 0) | (target >= num_classes)).any():  # no GPU sync per step
        raise ValueError(
            f"{name} was built for {num_classes} classes but got targets in [{int(target.min())}, {int(target.max())}]"
        )


class F1Loss(nn.Module):
    """1 - soft macro F1 over the batch: softmax probabilities against one-hot targets."""

    def __init__(self, num_classes: int, eps: float = 1e-7) -> None:
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"F1Loss needs at least 2 classes, got {num_classes}")
        self.num_classes = num_classes
        self.eps = eps

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        _check_shapes(logits, target, self.num_classes, "F1Loss")
        return soft_f1_loss(logits.float().softmax(dim=1), soft(target, self.num_classes), self.eps)


def soft_f1_loss(probs: Tensor, target: Tensor, eps: float = 1e-7) -> Tensor:
    """1 - the batch's soft macro F1 of ``probs`` against ``target`` probabilities, both ``(N, C)``."""
    tp = (probs * target).sum(dim=0)
    fp = (probs * (1 - target)).sum(dim=0)
    fn = ((1 - probs) * target).sum(dim=0)
    f1 = 2 * tp / (2 * tp + fp + fn + eps)
    return 1 - f1.mean()


class CrossEntropy(nn.Module):
    """Cross entropy in float32, optionally class-weighted and label-smoothed.

    ``target`` may also be soft, ``(N, C)`` probabilities, as the Gaussian age loss uses.
    """

    def __init__(self, weight: Tensor | None = None, label_smoothing: float = 0.0) -> None:
        super().__init__()
        self.register_buffer("weight", weight)
        self.label_smoothing = label_smoothing

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        return F.cross_entropy(logits.float(), target, weight=self.weight, label_smoothing=self.label_smoothing)


class CeF1Loss(nn.Module):
    """The seed recipe's mix ``(1 - f) * CE + f * F1``."""

    def __init__(self, num_classes: int, f1_weight: float, weight: Tensor | None = None) -> None:
        super().__init__()
        self.ce = CrossEntropy(weight)
        self.f1 = F1Loss(num_classes)
        self.f1_weight = f1_weight

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        f = self.f1_weight
        return (1 - f) * self.ce(logits, target) + f * self.f1(logits, target)


class FocalLoss(nn.Module):
    """Focal loss ``-(1 - p_t)^gamma log p_t``; with class weights, a weighted mean like torch's CE."""

    def __init__(self, gamma: float, weight: Tensor | None = None) -> None:
        super().__init__()
        self.gamma = gamma
        self.register_buffer("weight", weight)

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        log_p = logits.float().log_softmax(dim=1)
        q = soft(target, logits.shape[1])
        loss = -(q * (1 - log_p.exp()) ** self.gamma * log_p).sum(1)
        if self.weight is None:
            return loss.mean()
        w = q @ self.weight
        return (w * loss).sum() / w.sum()


def gaussian_targets(target: Tensor, num_classes: int, sigma: float) -> Tensor:
    """Soft targets ``q_j ∝ exp(-(j - y)^2 / (2 sigma^2))`` over ordered classes, each row summing to 1."""
    classes = torch.arange(num_classes, device=target.device, dtype=torch.float32)
    dist2 = (classes[None, :] - target[:, None].float()) ** 2
    return (-dist2 / (2 * sigma**2)).softmax(dim=1)


class GaussianLoss(nn.Module):
    """Soft cross entropy against :func:`gaussian_targets`: a neighbouring age group is a smaller mistake."""

    def __init__(self, num_classes: int, sigma: float, weight: Tensor | None = None) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.sigma = sigma
        self.ce = CrossEntropy(weight)

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        _check_shapes(logits, target, self.num_classes, "GaussianLoss")
        if target.is_floating_point():  # mixed targets: each class's share smoothed over its neighbours
            classes = torch.arange(self.num_classes, device=target.device)
            kernel = gaussian_targets(classes, self.num_classes, self.sigma)
            return self.ce(logits, target.float() @ kernel)
        return self.ce(logits, gaussian_targets(target, self.num_classes, self.sigma))


def balanced_weights(class_counts: list[int], num_classes: int) -> Tensor:
    """Per-class weights ``N / (C * count_c)``; a class with no examples counts as one."""
    if len(class_counts) != num_classes:
        raise ValueError(f"class_counts has {len(class_counts)} entries but the task has {num_classes} classes")
    counts = torch.tensor(class_counts, dtype=torch.float32)
    if (counts < 0).any():
        raise ValueError(f"class_counts must not be negative, got {class_counts}")
    return counts.sum() / (num_classes * counts.clamp(min=1))


def build_loss(cfg: LossConfig, num_classes: int, task: str, class_counts: list[int] | None = None) -> nn.Module:
    """The loss named by ``cfg.kind`` for a head with ``num_classes`` classes.

    ``class_counts`` (training examples per class) is needed when ``cfg.class_weights == "balanced"``;
    the weights apply to the cross-entropy parts only (macro F1 already weighs classes equally).
    """
    check_loss(cfg)
    if cfg.kind == "gaussian" and task != "age":
        raise ConfigError(f"loss.kind: 'gaussian' smooths over ordered age groups; task {task!r} is not 'age'")
    weight = None
    if cfg.class_weights == "balanced":
        if class_counts is None:
            raise ValueError("loss.class_weights: 'balanced' needs the training class counts (class_counts)")
        weight = balanced_weights(class_counts, num_classes)

    if cfg.kind == "ce":
        return CrossEntropy(weight)
    if cfg.kind == "f1":
        return F1Loss(num_classes)
    if cfg.kind == "ce_f1":
        return CeF1Loss(num_classes, cfg.f1_weight, weight)
    if cfg.kind == "focal":
        return FocalLoss(cfg.focal_gamma, weight)
    if cfg.kind == "label_smoothing":
        return CrossEntropy(weight, label_smoothing=cfg.smoothing)
    return GaussianLoss(num_classes, cfg.gaussian_sigma, weight)
