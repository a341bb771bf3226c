"""``--task multihead``: one backbone with a head per task (mask, gender, age, and optionally the 18 classes),
trained together with a weighted sum of the heads' losses.

Batches carry ``(images, labels)`` with ``labels[:, 0..2]`` = mask, gender, age group. The model is scored
as the competition is: ``val/f1`` is the 18-class macro F1 of the three heads combined, as ``predict.py``
combines them. Its checkpoints feed ``predict.py`` like the three separate models' do.
"""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch
from torch import nn
from torchmetrics.classification import MulticlassF1Score

from configs.config import Config, config_from_dict
from datamodules.labels import MULTIHEAD_TASK, NUM_CLASSES, TASKS
from datamodules.transforms import normalize
from lightning_modules.losses import build_loss
from lightning_modules.optim import configure_optimizers
from lightning_modules.task_module import ValidationScores, create_backbone

HEADS = ("mask", "gender", "age")


def head_sizes(cfg: Config) -> dict[str, int]:
    sizes = {t: TASKS[t].num_classes for t in HEADS}
    if cfg.multihead.class18_weight > 0:
        sizes["class18"] = NUM_CLASSES
    return sizes


def joint18(mask: torch.Tensor, gender: torch.Tensor, age: torch.Tensor) -> torch.Tensor:
    """``p[m*6 + g*3 + a] = p_mask[m] p_gender[g] p_age[a]`` (as lightning_modules.ensemble.combine_heads)."""
    return (mask[:, :, None, None] * gender[:, None, :, None] * age[:, None, None, :]).flatten(1)


class MultiHeadModule(ValidationScores, pl.LightningModule):
    """A timm backbone (features only) and one linear head per task; hyperparameters are plain data."""

    def __init__(
        self,
        config: dict[str, Any],
        mean: list[float],
        std: list[float],
        class_counts: dict[str, list[int]] | None = None,
        fingerprint: str = "",
    ):
        super().__init__()
        self.save_hyperparameters()
        self.cfg = config_from_dict(config)
        self.task = MULTIHEAD_TASK
        self.sizes = head_sizes(self.cfg)
        self.backbone = create_backbone(self.cfg, 0)
        features = self.backbone.num_features
        self.heads = nn.ModuleDict({name: nn.Linear(features, n) for name, n in self.sizes.items()})
        mh = self.cfg.multihead
        counts = class_counts or {}
        self.criteria = nn.ModuleDict(
            {
                name: build_loss(getattr(mh, f"{name}_loss") or self.cfg.loss, n, name, counts.get(name))
                for name, n in self.sizes.items()
            }
        )
        self.weights = {name: getattr(mh, f"{name}_weight") for name in self.sizes}
        self.register_buffer("pixel_mean", torch.tensor(mean, dtype=torch.float32), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(std, dtype=torch.float32), persistent=False)
        self.init_scores(NUM_CLASSES)
        self.head_f1 = nn.ModuleDict({name: MulticlassF1Score(n, average="macro") for name, n in self.sizes.items()})

    def head_slices(self) -> dict[str, slice]:
        """Where each head's probabilities sit in :meth:`probabilities`' columns."""
        out, start = {}, 0
        for name, n in self.sizes.items():
            out[name] = slice(start, start + n)
            start += n
        return out

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Each head's logits for a batch of raw pixels (uint8 or 0..255 float, NCHW)."""
        images = normalize(images, self.pixel_mean, self.pixel_std)
        if self.device.type == "cuda":
            images = images.contiguous(memory_format=torch.channels_last)
        features = self.backbone(images)
        return {name: head(features) for name, head in self.heads.items()}

    def probabilities(self, images: torch.Tensor) -> torch.Tensor:
        """Each head's softmax, side by side in :meth:`head_slices` order."""
        return torch.cat([logits.float().softmax(1) for logits in self(images).values()], 1)

    def _targets(self, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        targets = {name: labels[:, i] for i, name in enumerate(HEADS)}
        if "class18" in self.sizes:
            targets["class18"] = labels[:, 0] * 6 + labels[:, 1] * 3 + labels[:, 2]
        return targets

    def _loss(self, logits: dict[str, torch.Tensor], labels: torch.Tensor) -> tuple[torch.Tensor, dict]:
        targets = self._targets(labels)
        parts = {name: self.criteria[name](logits[name], targets[name]) for name in self.sizes}
        total = sum(self.weights[name] * part for name, part in parts.items())
        return total, parts

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        images, labels = batch
        loss, parts = self._loss(self(images), labels)
        n = len(labels)
        self.log("train/loss", loss, on_step=True, prog_bar=True, batch_size=n)
        self.log("train/loss_epoch", loss, on_step=False, on_epoch=True, batch_size=n, sync_dist=True)
        for name, part in parts.items():
            self.log(f"train/loss_{name}", part, on_step=False, on_epoch=True, batch_size=n, sync_dist=True)
        return loss

    def validation_step(self, batch, batch_idx: int) -> None:
        """``labels``: mask, gender, age group, and in validation the age group at the competition's cuts."""
        images, labels = batch
        logits = self(images)
        loss, _ = self._loss(logits, labels)
        probs = {name: lg.float().softmax(1) for name, lg in logits.items()}
        p18 = joint18(probs["mask"], probs["gender"], probs["age"])
        truth = self._targets(labels)
        y18 = labels[:, 0] * 6 + labels[:, 1] * 3 + labels[:, 2]
        competition = labels[:, 0] * 6 + labels[:, 1] * 3 + labels[:, 3]
        self.update_scores(p18, y18, competition)
        for name in self.sizes:
            self.head_f1[name].update(probs[name].argmax(1), truth[name])
        self.log("val/loss", loss, on_epoch=True, prog_bar=True, batch_size=len(labels), sync_dist=True)

    def on_validation_epoch_end(self) -> None:
        heads = {f"val/f1_{name}": metric.compute() for name, metric in self.head_f1.items()}
        self.log_dict(heads, sync_dist=True)
        self.close_validation(self.head_f1.values())

    def predict_step(self, batch, batch_idx: int, dataloader_idx: int = 0) -> torch.Tensor:
        return self.probabilities(batch[0])

    def configure_optimizers(self):
        return configure_optimizers(self.parameters(), self.cfg.optim, self.cfg.trainer.max_epochs)
