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
from datamodules.shard import gather_shards
from datamodules.transforms import normalize
from lightning_modules.losses import build_loss
from lightning_modules.optim import configure_optimizers


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


def close_validation(module: pl.LightningModule, num_classes: int, more_metrics=()) -> None:
    """End of a validation epoch: log ``val/f1``, ``val/acc`` and ``val/f1_best``, keep the epoch's
    probabilities, labels and confusion matrix in ``module.last_val`` (the W&B media callback reads them),
    and reset the metrics."""
    f1 = module.val_f1.compute()
    module.val_f1_best.update(f1)
    acc, best = module.val_acc.compute(), module.val_f1_best.compute()
    # the metrics are synced over the processes' shards by torchmetrics: the values are the same on each
    module.log_dict({"val/f1": f1, "val/acc": acc, "val/f1_best": best}, prog_bar=True, sync_dist=True)
    empty = torch.zeros(0, num_classes + 1, device=module.device)
    joined = torch.cat(module.val_probs) if module.val_probs else empty
    # several processes: each validated its own rows (ShardSampler); every process gets all of them
    joined = gather_shards(joined, module.global_rank, module.trainer.world_size).cpu()
    module.last_val = {
        "probs": joined[:, :-1],
        "labels": joined[:, -1].long(),
        "confusion": module.val_confusion.compute().cpu(),
    }
    for metric in (module.val_f1, module.val_acc, module.val_confusion, *more_metrics):
        metric.reset()
    module.val_probs.clear()


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
        # batches arrive as uint8 pixels and are normalised here, on the model's device (not saved: the
        # statistics are in the hyperparameters)
        self.register_buffer("pixel_mean", torch.tensor(mean, dtype=torch.float32), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(std, dtype=torch.float32), persistent=False)
        self.criterion = build_loss(self.cfg.loss, n, task, class_counts)
        self.val_f1 = MulticlassF1Score(n, average="macro")
        self.val_acc = MulticlassAccuracy(n, average="micro")
        self.val_confusion = MulticlassConfusionMatrix(n)
        self.val_f1_best = MaxMetric()
        self.val_probs: list[torch.Tensor] = []
        self.last_val: dict[str, torch.Tensor] = {}  # probs, labels and confusion of the last validation

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Logits for a batch of raw pixels: uint8 (or 0..255 float) NCHW."""
        images = normalize(images, self.pixel_mean, self.pixel_std)
        if self.device.type == "cuda":
            images = images.contiguous(memory_format=torch.channels_last)
        return self.model(images)

    def head_slices(self) -> dict[str, slice]:
        """Where each task's probabilities sit in :meth:`probabilities`' columns: here, one task, all of them."""
        return {self.task.name: slice(0, self.task.num_classes)}

    def probabilities(self, images: torch.Tensor) -> torch.Tensor:
        return self(images).float().softmax(1)

    def on_train_start(self) -> None:
        self.val_f1_best.reset()  # forget the sanity check's score

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        images, labels = batch
        loss = self.criterion(self(images), labels)
        self.log("train/loss", loss, on_step=True, prog_bar=True, batch_size=len(labels))
        self.log("train/loss_epoch", loss, on_step=False, on_epoch=True, batch_size=len(labels), sync_dist=True)
        return loss

    def validation_step(self, batch, batch_idx: int) -> None:
        images, labels = batch
        logits = self(images)
        loss = self.criterion(logits, labels)
        preds = logits.argmax(1)
        self.val_f1.update(preds, labels)
        self.val_acc.update(preds, labels)
        self.val_confusion.update(preds, labels)
        # kept on the device until the epoch ends: a copy to the host per batch would stall the GPU
        self.val_probs.append(torch.cat([logits.float().softmax(1), labels[:, None].float()], 1))
        self.log("val/loss", loss, on_epoch=True, prog_bar=True, batch_size=len(labels), sync_dist=True)

    def on_validation_epoch_end(self) -> None:
        close_validation(self, self.task.num_classes)

    def predict_step(self, batch, batch_idx: int, dataloader_idx: int = 0) -> torch.Tensor:
        return self.probabilities(batch[0])  # to the host once, by the writer

    def configure_optimizers(self):
        return configure_optimizers(self.parameters(), self.cfg.optim, self.cfg.trainer.max_epochs)
