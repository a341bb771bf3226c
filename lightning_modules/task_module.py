"""One LightningModule for every task: a timm backbone with a head sized to the task's classes."""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import timm
import torch
from torchmetrics import MaxMetric
from torchmetrics.classification import MulticlassAccuracy, MulticlassConfusionMatrix, MulticlassF1Score

from configs.config import Config, ConfigError, config_from_dict
from datamodules.labels import TASKS
from lightning_modules.losses import build_loss
from lightning_modules.optim import build_optimizer, build_scheduler


def create_backbone(cfg: Config, num_classes: int) -> torch.nn.Module:
    """``timm.create_model`` by name; a clear error for an unknown name or unavailable weights."""
    name = cfg.model.backbone
    if not timm.is_model(name):
        raise ConfigError(f"model.backbone: timm has no model {name!r} (see timm.list_models())")
    try:
        return timm.create_model(
            name, pretrained=cfg.model.pretrained, num_classes=num_classes, drop_rate=cfg.model.drop_rate
        )
    except Exception as exc:
        if not cfg.model.pretrained:
            raise
        raise ConfigError(
            f"model.pretrained: timm could not load weights for {name!r} ({type(exc).__name__}: {exc}); "
            "put them in the Hugging Face cache or set model.pretrained=false"
        ) from None


class TaskModule(pl.LightningModule):
    """Classifier for ``task`` (mask, gender or age). Its hyperparameters are plain data: the resolved
    config, the normalisation and the data fingerprint, so a checkpoint says how to feed it."""

    def __init__(
        self,
        task: str,
        config: dict[str, Any],
        mean: list[float],
        std: list[float],
        class_counts: list[int] | None = None,
        fingerprint: str = "",
    ):
        super().__init__()
        self.save_hyperparameters()
        self.cfg = config_from_dict(config)
        self.task = TASKS[task]
        n = self.task.num_classes
        self.model = create_backbone(self.cfg, n)
        self.criterion = build_loss(self.cfg.loss, n, task, class_counts)
        self.val_f1 = MulticlassF1Score(n, average="macro")
        self.val_acc = MulticlassAccuracy(n, average="micro")
        self.val_confusion = MulticlassConfusionMatrix(n)
        self.val_f1_best = MaxMetric()
        self.val_probs: list[torch.Tensor] = []
        self.last_val: dict[str, torch.Tensor] = {}  # probs, labels and confusion of the last validation

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if self.device.type == "cuda":
            images = images.contiguous(memory_format=torch.channels_last)
        return self.model(images)

    def on_train_start(self) -> None:
        self.val_f1_best.reset()  # forget the sanity check's score

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        images, labels = batch
        loss = self.criterion(self(images), labels)
        self.log("train/loss", loss, on_step=True, prog_bar=True, batch_size=len(labels))
        self.log("train/loss_epoch", loss, on_step=False, on_epoch=True, batch_size=len(labels))
        return loss

    def validation_step(self, batch, batch_idx: int) -> None:
        images, labels = batch
        logits = self(images)
        loss = self.criterion(logits, labels)
        preds = logits.argmax(1)
        self.val_f1.update(preds, labels)
        self.val_acc.update(preds, labels)
        self.val_confusion.update(preds, labels)
        self.val_probs.append(torch.cat([logits.float().softmax(1), labels[:, None].float()], 1).cpu())
        self.log("val/loss", loss, on_epoch=True, prog_bar=True, batch_size=len(labels), sync_dist=True)

    def on_validation_epoch_end(self) -> None:
        f1 = self.val_f1.compute()
        self.val_f1_best.update(f1)
        acc, best = self.val_acc.compute(), self.val_f1_best.compute()
        self.log_dict({"val/f1": f1, "val/acc": acc, "val/f1_best": best}, prog_bar=True)
        joined = torch.cat(self.val_probs) if self.val_probs else torch.zeros(0, self.task.num_classes + 1)
        self.last_val = {
            "probs": joined[:, :-1],
            "labels": joined[:, -1].long(),
            "confusion": self.val_confusion.compute().cpu(),
        }
        for metric in (self.val_f1, self.val_acc, self.val_confusion):
            metric.reset()
        self.val_probs.clear()

    def predict_step(self, batch, batch_idx: int, dataloader_idx: int = 0) -> torch.Tensor:
        return self(batch[0]).float().softmax(1).cpu()

    def configure_optimizers(self):
        optimizer = build_optimizer(self.parameters(), self.cfg.optim)
        scheduler = build_scheduler(optimizer, self.cfg.optim, self.cfg.trainer.max_epochs)
        if scheduler is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": scheduler}
