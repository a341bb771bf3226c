"""One LightningModule for every task (mask, gender or age): a timm backbone with a head sized to the task's
classes (or for ``model.age_head=ordinal`` the ordinal age head), on the shared
:class:`~lightning_modules.base.ClassifierModule`."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from core.tasks import TASKS
from lightning_modules.base import ClassifierModule
from lightning_modules.losses import build_loss
from lightning_modules.ordinal import OrdinalHead, build_ordinal_loss, cumulative_targets
from lightning_modules.weights import create_backbone


class TaskModule(ClassifierModule):
    """Classifier for ``task``. Its hyperparameters are plain data: the resolved config, the normalisation and
    the data fingerprint, so a checkpoint says how to feed it. Training labels are the task's labels; validation
    labels are two columns: the label, and the label at the competition's age cuts."""

    def __init__(
        self,
        task: str,
        config: dict[str, Any],
        mean: list[float],
        std: list[float],
        class_counts: list[int] | None = None,
        fingerprint: str = "",
    ):
        super().__init__(config, mean, std)
        self.save_hyperparameters()
        self.task = TASKS[task]
        n = self.task.num_classes
        self.ordinal_task = self.ordinal_age and task == "age"
        if self.ordinal_task:  # pooled features into the ordinal head
            self.model = create_backbone(self.cfg, 0)
            self.ordinal = OrdinalHead(self.model.num_features)
            self.criterion = build_ordinal_loss(self.cfg.loss, self.age_cuts)
        else:
            self.model = create_backbone(self.cfg, n)  # timm's own classifier is the head
            self.criterion = build_loss(self.cfg.loss, n, task, class_counts)
        self.init_heads({task: n}, {task: 1.0}, n)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Logits for a batch of raw pixels: uint8 (or 0..255 float) NCHW."""
        return self.head_logits(images)[self.task.name]

    def head_logits_of(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.ordinal_task:
            return {self.task.name: self.ordinal(self.model(images))}
        return {self.task.name: self.model(images)}

    def losses(self) -> dict[str, nn.Module]:
        return {self.task.name: self.criterion}

    def backbone_module(self) -> nn.Module:
        return self.model

    def features_of(self, images: torch.Tensor) -> torch.Tensor:
        if self.ordinal_task:
            return self.model(images)
        return self.model.forward_head(self.model.forward_features(images), pre_logits=True)

    def training_targets(self, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.ordinal_task:  # rows (age group, age)
            return {self.task.name: cumulative_targets(labels[:, -1])}
        return {self.task.name: labels}

    def validation_targets(self, labels: torch.Tensor):
        # rows (label, label at the competition's cuts[, age for the ordinal head])
        target = cumulative_targets(labels[:, 2]) if self.ordinal_task else labels[:, 0]
        return {self.task.name: target}, labels[:, 0], labels[:, 1]

    def scored_probs(self, probs: dict[str, torch.Tensor]) -> torch.Tensor:
        return probs[self.task.name]
