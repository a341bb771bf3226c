"""``--task multihead``: one backbone with a head per task (mask, gender, age, and optionally the 18 classes),
trained together with a weighted sum of the heads' losses, on the shared
:class:`~lightning_modules.base.ClassifierModule`.

Batches carry ``(images, labels)`` with ``labels[:, 0..2]`` = mask, gender, age group (and in validation
``labels[:, 3]``: the age group at the competition's cuts; with the ordinal age head the rows end with the
person's age). The model is scored as the competition is:
``val/f1`` is the 18-class macro F1 of the three heads combined, as ``predict.py`` combines them. Its
checkpoints feed ``predict.py`` like the three separate models' do.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torchmetrics.classification import MulticlassF1Score

from configs.config import Config
from core.tasks import CLASS18, MULTIHEAD_TASK, NUM_CLASSES, TASK_NAMES, TASKS, class18, joint_probs
from lightning_modules.base import ClassifierModule
from lightning_modules.losses import build_loss
from lightning_modules.ordinal import OrdinalHead, build_ordinal_loss, cumulative_targets, group_probs
from lightning_modules.weights import create_backbone


def head_sizes(cfg: Config) -> dict[str, int]:
    sizes = {t: TASKS[t].num_classes for t in TASK_NAMES}
    if cfg.multihead.class18_weight > 0:
        sizes[CLASS18] = NUM_CLASSES
    return sizes


class MultiHeadModule(ClassifierModule):
    """A timm backbone (features only) and one linear head per task; hyperparameters are plain data."""

    def __init__(
        self,
        config: dict[str, Any],
        mean: list[float],
        std: list[float],
        class_counts: dict[str, list[int]] | None = None,
        fingerprint: str = "",
    ):
        super().__init__(config, mean, std)
        self.save_hyperparameters()
        self.task = MULTIHEAD_TASK
        sizes = head_sizes(self.cfg)
        self.backbone = create_backbone(self.cfg, 0)
        features = self.backbone.num_features
        self.heads = nn.ModuleDict({name: nn.Linear(features, n) for name, n in sizes.items()})
        mh = self.cfg.multihead
        counts = class_counts or {}
        losses = {name: getattr(mh, f"{name}_loss") or self.cfg.loss for name in sizes}
        self.criteria = nn.ModuleDict(
            {name: build_loss(losses[name], n, name, counts.get(name)) for name, n in sizes.items() if name != "age"}
        )
        if self.ordinal_age:
            self.heads["age"] = OrdinalHead(features)
            self.criteria["age"] = build_ordinal_loss(losses["age"], self.age_cuts)
        else:
            self.criteria["age"] = build_loss(losses["age"], sizes["age"], "age", counts.get("age"))
        self.init_heads(sizes, {name: getattr(mh, f"{name}_weight") for name in sizes}, NUM_CLASSES)
        self.head_f1 = nn.ModuleDict({name: MulticlassF1Score(n, average="macro") for name, n in sizes.items()})

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Each head's logits for a batch of raw pixels (uint8 or 0..255 float, NCHW)."""
        return self.head_logits(images)

    def head_logits_of(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        features = self.backbone(images)
        return {name: head(features) for name, head in self.heads.items()}

    def losses(self) -> dict[str, nn.Module]:
        return dict(self.criteria)

    def backbone_module(self) -> nn.Module:
        return self.backbone

    def features_of(self, images: torch.Tensor) -> torch.Tensor:
        return self.backbone(images)

    def training_targets(self, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        targets = {name: labels[:, i] for i, name in enumerate(TASK_NAMES)}
        if self.ordinal_age:  # the rows end with the person's age
            targets["age"] = cumulative_targets(labels[:, -1])
        if CLASS18 in self.sizes:
            targets[CLASS18] = class18(labels[:, 0], labels[:, 1], labels[:, 2])
        return targets

    def validation_targets(self, labels: torch.Tensor):
        truth = class18(labels[:, 0], labels[:, 1], labels[:, 2])
        competition = class18(labels[:, 0], labels[:, 1], labels[:, 3])
        return self.training_targets(labels), truth, competition

    def scored_probs(self, probs: dict[str, torch.Tensor]) -> torch.Tensor:
        return joint_probs(*(probs[t] for t in TASK_NAMES))

    def update_head_scores(self, probs: dict[str, torch.Tensor], targets: dict[str, torch.Tensor]) -> None:
        for name in self.sizes:
            target = targets[name]
            if target.is_floating_point():  # the ordinal head's P(age >= t): its group at the model's cuts
                target = group_probs(target, self.age_cuts).argmax(1)
            self.head_f1[name].update(probs[name].argmax(1), target)

    def on_validation_epoch_end(self) -> None:
        heads = {f"val/f1_{name}": metric.compute() for name, metric in self.head_f1.items()}
        self.log_dict(heads, sync_dist=True)
        self.close_validation(self.head_f1.values())
