"""The one base of every model: raw uint8 pixels in, normalised on the model's device, a backbone and one or
more heads, a weighted loss per head, the validation scores, the train/validation/predict steps (one
``model_step``) and the optimiser. Subclasses say only how the network is built and what a batch's labels
mean (``TaskModule``: one head; ``MultiHeadModule``: a head per task)."""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch
from torch import nn
from torchmetrics import MaxMetric
from torchmetrics.classification import MulticlassAccuracy, MulticlassConfusionMatrix, MulticlassF1Score

from configs.config import config_from_dict
from core.distributed import gather_shards
from core.tasks import side_by_side
from lightning_modules.mixing import build_mixer, mix_batch
from lightning_modules.optim import configure_optimizers
from lightning_modules.ordinal import group_probs


def normalize(images: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """uint8 (or 0..255 float) NCHW batch -> float32 ``(x / 255 - mean) / std``, on whatever device the
    batch is on: batches travel as uint8 (4x less to copy) and are normalised on the GPU."""
    return (images.float() - mean.view(1, -1, 1, 1) * 255.0) / (std.view(1, -1, 1, 1) * 255.0)


class ClassifierModule(pl.LightningModule):
    """Shared by every model. A subclass builds its network and losses, then calls :meth:`init_heads`, and
    defines :meth:`head_logits_of` (normalised images -> logits per head), :meth:`losses`,
    :meth:`training_targets` and :meth:`validation_targets` (a batch's labels -> targets per head, the scored
    labels and the scored labels at the competition's age cuts) and :meth:`scored_probs` (per-head
    probabilities -> probabilities over the scored classes).

    Validation scores: macro F1 at the model's own age cuts (``val/f1``, what ``best.ckpt`` follows) and at the
    competition's cuts 30/60 (``val/f1_competition``: the same for a model trained at those cuts), each with its
    best so far (``val/f1_best``, ``val/f1_competition_best``). The bests are stored in every checkpoint and
    restored on ``--resume``, so a resumed run goes on from them."""

    BEST = {"val/f1_best": "val_f1_best", "val/f1_competition_best": "val_f1_competition_best"}

    def __init__(self, config: dict[str, Any], mean: list[float], std: list[float]):
        super().__init__()
        self.cfg = config_from_dict(config)
        # batches arrive as uint8 pixels and are normalised here, on the model's device (not saved: the
        # statistics are in the hyperparameters)
        self.register_buffer("pixel_mean", torch.tensor(mean, dtype=torch.float32), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(std, dtype=torch.float32), persistent=False)
        self.ordinal_age = self.cfg.model.age_head == "ordinal"
        self.age_cuts = tuple(self.cfg.data.age_cuts)  # an ordinal age head's groups: settable after training
        self.mixer = build_mixer(self.cfg.augment)  # MixUp/CutMix of training batches, None when off
        # set for the device by lightning_modules.hardware: batches in channels_last memory, the precision the
        # model was trained at (from its checkpoint) and the one it predicts at
        self.channels_last = False
        self.trained_precision: str | None = None
        self.precision = "32-true"

    def init_heads(self, sizes: dict[str, int], weights: dict[str, float], scored_classes: int) -> None:
        """The heads (name -> classes, in :meth:`probabilities`' column order), their loss weights, and the
        validation metrics over the ``scored_classes`` classes."""
        self.sizes, self.weights = dict(sizes), dict(weights)
        self.val_f1 = MulticlassF1Score(scored_classes, average="macro")
        self.val_f1_competition = MulticlassF1Score(scored_classes, average="macro")
        self.val_acc = MulticlassAccuracy(scored_classes, average="micro")
        self.val_confusion = MulticlassConfusionMatrix(scored_classes)
        self.val_f1_best = MaxMetric()
        self.val_f1_competition_best = MaxMetric()
        self.val_probs: list[torch.Tensor] = []
        self.last_val: dict[str, torch.Tensor] = {}  # probs, labels and confusion of the last validation
        self._restored_best: dict[str, float] = {}

    # ------------------------------------------------------------------ what a subclass defines

    def head_logits_of(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def losses(self) -> dict[str, nn.Module]:
        raise NotImplementedError

    def training_targets(self, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def validation_targets(self, labels: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def scored_probs(self, probs: dict[str, torch.Tensor]) -> torch.Tensor:
        raise NotImplementedError

    def backbone_module(self) -> nn.Module:
        """The part that ``trainer.compile`` compiles."""
        raise NotImplementedError

    def features_of(self, images: torch.Tensor) -> torch.Tensor:
        """The backbone's pooled features ``(N, D)`` of normalised images (what the heads read)."""
        raise NotImplementedError

    # ------------------------------------------------------------------ the shared model

    def head_logits(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Each head's logits for a batch of raw pixels: uint8 (or 0..255 float) NCHW."""
        images = normalize(images, self.pixel_mean, self.pixel_std)
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        return self.head_logits_of(images)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """The backbone's pooled features ``(N, D)`` for a batch of raw pixels: an embedding of the image's
        appearance (used to group the photos of one person)."""
        return self.features_of(normalize(images, self.pixel_mean, self.pixel_std))

    def head_slices(self) -> dict[str, slice]:
        """Where each head's probabilities sit in :meth:`probabilities`' columns."""
        return {name: slice(cols.start, cols.stop) for name, cols in side_by_side(self.sizes).items()}

    def head_probs(self, name: str, logits: torch.Tensor) -> torch.Tensor:
        """A head's probabilities over its classes: the softmax, or for an ordinal age head the groups at
        :attr:`age_cuts` read from its ``P(age >= t)``."""
        if name == "age" and self.ordinal_age:
            return group_probs(logits.float().sigmoid(), self.age_cuts)
        return logits.float().softmax(1)

    def probabilities(self, images: torch.Tensor) -> torch.Tensor:
        """Each head's probabilities (:meth:`head_probs`), side by side in :meth:`head_slices` order."""
        return torch.cat([self.head_probs(name, lg) for name, lg in self.head_logits(images).items()], 1)

    def model_step(
        self, images: torch.Tensor, targets: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """The weighted sum of the heads' losses, each head's loss, and each head's logits."""
        logits = self.head_logits(images)
        total, parts = self.weighted_loss(logits, targets)
        return total, parts, logits

    def weighted_loss(
        self, logits: dict[str, torch.Tensor], targets: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The weighted sum of the heads' losses, and each head's loss."""
        criteria = self.losses()
        parts = {name: criteria[name](logits[name], targets[name]) for name in self.sizes}
        return sum(self.weights[name] * part for name, part in parts.items()), parts

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        images, labels = batch
        targets = self.training_targets(labels)
        if self.mixer is not None:
            images, targets = mix_batch(self.mixer, images, targets, self.sizes)
        loss, parts, _ = self.model_step(images, targets)
        n = len(labels)
        self.log("train/loss", loss, on_step=True, prog_bar=True, batch_size=n)
        self.log("train/loss_epoch", loss, on_step=False, on_epoch=True, batch_size=n, sync_dist=True)
        if len(parts) > 1:
            for name, part in parts.items():
                self.log(f"train/loss_{name}", part, on_step=False, on_epoch=True, batch_size=n, sync_dist=True)
        return loss

    def validation_step(self, batch, batch_idx: int) -> None:
        images, labels = batch
        targets, truth, competition = self.validation_targets(labels)
        loss, _, logits = self.model_step(images, targets)
        probs = {name: self.head_probs(name, lg) for name, lg in logits.items()}
        self.update_scores(self.scored_probs(probs), truth, competition)
        self.update_head_scores(probs, targets)
        self.log("val/loss", loss, on_epoch=True, prog_bar=True, batch_size=len(labels), sync_dist=True)

    def update_head_scores(self, probs: dict[str, torch.Tensor], targets: dict[str, torch.Tensor]) -> None:
        """Per-head validation metrics beyond the scored ones (none here)."""

    def on_validation_epoch_end(self) -> None:
        self.close_validation()

    def predict_step(self, batch, batch_idx: int, dataloader_idx: int = 0) -> torch.Tensor:
        """Each image's :meth:`probabilities` in two views, as it is and mirrored (the flip TTA's): ``(N, 2,
        C)``, to the host once, by the writer."""
        images = batch[0]
        return torch.stack([self.probabilities(images), self.probabilities(images.flip(-1))], 1)

    def configure_optimizers(self):
        return configure_optimizers(self.parameters(), self.cfg.optim, self.cfg.trainer.max_epochs)

    # ------------------------------------------------------------------ validation scores

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
        if self._trainer is not None:  # the precision it trains at (Lightning's name), which it predicts at
            checkpoint["precision"] = str(self._trainer.precision)

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self._restored_best = dict(checkpoint.get("best_scores") or {})
        self.trained_precision = checkpoint.get("precision")

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
