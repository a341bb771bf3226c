"""One LightningModule for every task (mask, gender or age): a timm backbone with a head sized to the task's
classes, on the shared :class:`~lightning_modules.base.ClassifierModule`."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from core.tasks import TASKS
from lightning_modules.base import ClassifierModule, create_backbone
from lightning_modules.losses import build_loss


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
        self.model = create_backbone(self.cfg, n)  # timm's own classifier is the head
        self.criterion = build_loss(self.cfg.loss, n, task, class_counts)
        self.init_heads({task: n}, {task: 1.0}, n)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Logits for a batch of raw pixels: uint8 (or 0..255 float) NCHW."""
        return self.head_logits(images)[self.task.name]

    def head_logits_of(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        return {self.task.name: self.model(images)}

    def losses(self) -> dict[str, nn.Module]:
        return {self.task.name: self.criterion}

    def backbone_module(self) -> nn.Module:
        return self.model

    def training_targets(self, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        return {self.task.name: labels}

    def validation_targets(self, labels: torch.Tensor):
        return {self.task.name: labels[:, 0]}, labels[:, 0], labels[:, 1]

    def scored_probs(self, probs: dict[str, torch.Tensor]) -> torch.Tensor:
        return probs[self.task.name]
