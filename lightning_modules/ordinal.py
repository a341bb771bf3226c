"""The ordinal age head (``model.age_head=ordinal``): the age groups are ordered, so instead of three unrelated
classes the head predicts ``P(age >= t)`` for every age threshold ``t`` (19 .. 60) with cumulative logits
``score(x) - b_t``, the thresholds' biases kept increasing so the probabilities fall with ``t``. The groups at
any cuts ``(young, old)`` follow after training: ``P(< young) = 1 - P(>= young)``, ``P(young..old-1) =
P(>= young) - P(>= old)``, ``P(>= old)``.

Its loss is the cumulative likelihood (binary cross entropy at every threshold) mixed with the F1 loss on the
groups at the model's cuts, as the seed mixes CE and F1: ``loss.kind`` ``ce``, ``f1`` or ``ce_f1``."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from configs.config import LossConfig
from core.errors import ConfigError
from core.tasks import AGE_RANGE
from lightning_modules.losses import soft_f1_loss

THRESHOLDS = tuple(range(AGE_RANGE[0] + 1, AGE_RANGE[1] + 1))  # P(age >= t) for these t: 19 .. 60
ORDINAL_LOSSES = ("ce", "f1", "ce_f1")


class OrdinalHead(nn.Module):
    """Pooled features -> cumulative logits ``(N, len(THRESHOLDS))``: one score, minus increasing biases."""

    def __init__(self, features: int, n_thresholds: int = len(THRESHOLDS)):
        super().__init__()
        self.score = nn.Linear(features, 1)
        # at the start P(age >= t) falls from about 0.88 at the first threshold to 0.12 at the last
        step = 4.0 / max(1, n_thresholds - 1)
        self.first = nn.Parameter(torch.tensor(-2.0))
        self.gaps = nn.Parameter(torch.full((n_thresholds - 1,), math.log(math.expm1(step))))

    def forward(self, features: Tensor) -> Tensor:
        biases = torch.cat([self.first[None], self.first + torch.cumsum(F.softplus(self.gaps), 0)])
        return self.score(features) - biases[None, :]


def cumulative_targets(ages: Tensor) -> Tensor:
    """``1[age >= t]`` for every threshold: ``(N,)`` ages -> ``(N, len(THRESHOLDS))`` floats."""
    thresholds = torch.tensor(THRESHOLDS, device=ages.device, dtype=torch.float32)
    return (ages.float()[:, None] >= thresholds[None, :]).float()


def group_probs(cumulative: Tensor, cuts: tuple[int, int] | list[int]) -> Tensor:
    """The three age groups' probabilities at ``cuts`` from ``P(age >= t)`` ``(N, len(THRESHOLDS))``."""
    young, old = (THRESHOLDS.index(int(c)) for c in cuts)
    at_least_young, at_least_old = cumulative[:, young], cumulative[:, old]
    groups = torch.stack([1 - at_least_young, at_least_young - at_least_old, at_least_old], 1)
    return groups.clamp(min=0)


class OrdinalLoss(nn.Module):
    """``(1 - f) * BCE`` over the thresholds ``+ f * (1 - soft macro F1)`` of the groups at ``cuts``. The target
    is ``P(age >= t)`` ``(N, len(THRESHOLDS))``: 0/1 for one image, mixed for MixUp/CutMix."""

    def __init__(self, cuts: tuple[int, int] | list[int], f1_weight: float):
        super().__init__()
        self.cuts = tuple(cuts)
        self.f1_weight = f1_weight

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        logits = logits.float()
        if logits.shape != target.shape:
            raise ValueError(f"OrdinalLoss: targets of shape {tuple(target.shape)} for logits {tuple(logits.shape)}")
        f = self.f1_weight
        bce = F.binary_cross_entropy_with_logits(logits, target.float()) if f < 1 else 0.0
        if f == 0:
            return bce
        f1 = soft_f1_loss(group_probs(logits.sigmoid(), self.cuts), group_probs(target.float(), self.cuts))
        return (1 - f) * bce + f * f1


def build_ordinal_loss(cfg: LossConfig, cuts: tuple[int, int] | list[int]) -> OrdinalLoss:
    """The ordinal head's loss for ``cfg.kind`` ce (the likelihood alone), f1 or ce_f1 (``cfg.f1_weight``)."""
    if cfg.kind not in ORDINAL_LOSSES:
        raise ConfigError(
            f"loss.kind: {cfg.kind!r} does not apply to the ordinal age head (model.age_head=ordinal), which takes "
            f"{', '.join(ORDINAL_LOSSES)}; the Gaussian smoothing of neighbouring groups is what the ordinal head "
            "does by construction"
        )
    if cfg.class_weights != "none":
        raise ConfigError("loss.class_weights: the ordinal age head takes none (its F1 part weighs groups equally)")
    return OrdinalLoss(cuts, {"ce": 0.0, "f1": 1.0, "ce_f1": cfg.f1_weight}[cfg.kind])
