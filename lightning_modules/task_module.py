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


class ValidationScores:
    """The validation scores both module kinds keep: macro F1 at the model's own age cuts (``val/f1``, what
    ``best.ckpt`` follows) and at the competition's cuts 30/60 (``val/f1_competition``: the same for a model
    trained at those cuts), each with its best so far (``val/f1_best``, ``val/f1_competition_best``). The bests
    are stored in every checkpoint and restored on ``--resume``, so a resumed run goes on from them."""

    BEST = {"val/f1_best": "val_f1_best", "val/f1_competition_best": "val_f1_competition_best"}

    def init_scores(self, num_classes: int) -> None:
        self.val_f1 = MulticlassF1Score(num_classes, average="macro")
        self.val_f1_competition = MulticlassF1Score(num_classes, average="macro")
        self.val_acc = MulticlassAccuracy(num_classes, average="micro")
        self.val_confusion = MulticlassConfusionMatrix(num_classes)
        self.val_f1_best = MaxMetric()
        self.val_f1_competition_best = MaxMetric()
        self.val_probs: list[torch.Tensor] = []
        self.last_val: dict[str, torch.Tensor] = {}  # probs, labels and confusion of the last validation
        self._restored_best: dict[str, float] = {}

    def update_scores(self, probs: torch.Tensor, labels: torch.Tensor, competition: torch.Tensor) -> None:
        """One validation batch: ``probs`` over the scored classes, the labels at the model's cuts and at the
        competition's."""
        preds = probs.argmax(1)
        self.val_f1.update(preds, labels)
        self.val_f1_competition.update(preds, competition)
        self.val_acc.update(preds, labels)
        self.val_confusion.update(preds, labels)
        # kept on the device until the epoch ends: a copy to the host per batch would stall the GPU
        self.val_probs.append(torch.cat([probs, labels[:, None].float()], 1))

    def on_train_start(self) -> None:
        for name, attr in self.BEST.items():
            getattr(self, attr).reset()  # forget a sanity check's score
            if name in self._restored_best:  # a resumed run: its best so far
                getattr(self, attr).update(torch.tensor(self._restored_best[name], device=self.device))

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        best = {name: getattr(self, attr) for name, attr in self.BEST.items()}
        checkpoint["best_scores"] = {name: float(m.compute()) for name, m in best.items() if m.update_count}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self._restored_best = dict(checkpoint.get("best_scores") or {})

    def close_validation(self, more_metrics=()) -> None:
        """End of a validation epoch: log the scores and their bests, keep the epoch's probabilities, labels and
        confusion matrix in ``last_val`` (the W&B media callback reads them), and reset the metrics."""
        f1, competition = self.val_f1.compute(), self.val_f1_competition.compute()
        self.val_f1_best.update(f1)
        self.val_f1_competition_best.update(competition)
        scores = {
            "val/f1": f1,
            "val/acc": self.val_acc.compute(),
            "val/f1_best": self.val_f1_best.compute(),
            "val/f1_competition": competition,
            "val/f1_competition_best": self.val_f1_competition_best.compute(),
        }
        # the metrics are synced over the processes' shards by torchmetrics: the values are the same on each
        shown = ("val/f1", "val/f1_best")  # on the progress bar
        self.log_dict({k: v for k, v in scores.items() if k in shown}, prog_bar=True, sync_dist=True)
        self.log_dict({k: v for k, v in scores.items() if k not in shown}, sync_dist=True)
        num_classes = self.val_confusion.num_classes
        empty = torch.zeros(0, num_classes + 1, device=self.device)
        joined = torch.cat(self.val_probs) if self.val_probs else empty
        # several processes: each validated its own rows (ShardSampler); every process gets all of them
        joined = gather_shards(joined, self.global_rank, self.trainer.world_size).cpu()
        self.last_val = {
            "probs": joined[:, :-1],
            "labels": joined[:, -1].long(),
            "confusion": self.val_confusion.compute().cpu(),
        }
        for metric in (self.val_f1, self.val_f1_competition, self.val_acc, self.val_confusion, *more_metrics):
            metric.reset()
        self.val_probs.clear()


class TaskModule(ValidationScores, pl.LightningModule):
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
        self.init_scores(n)

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

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        images, labels = batch
        loss = self.criterion(self(images), labels)
        self.log("train/loss", loss, on_step=True, prog_bar=True, batch_size=len(labels))
        self.log("train/loss_epoch", loss, on_step=False, on_epoch=True, batch_size=len(labels), sync_dist=True)
        return loss

    def validation_step(self, batch, batch_idx: int) -> None:
        images, targets = batch  # per image: the label, and the label at the competition's age cuts
        labels, competition = targets[:, 0], targets[:, 1]
        logits = self(images)
        loss = self.criterion(logits, labels)
        self.update_scores(logits.float().softmax(1), labels, competition)
        self.log("val/loss", loss, on_epoch=True, prog_bar=True, batch_size=len(labels), sync_dist=True)

    def on_validation_epoch_end(self) -> None:
        self.close_validation()

    def predict_step(self, batch, batch_idx: int, dataloader_idx: int = 0) -> torch.Tensor:
        return self.probabilities(batch[0])  # to the host once, by the writer

    def configure_optimizers(self):
        return configure_optimizers(self.parameters(), self.cfg.optim, self.cfg.trainer.max_epochs)
