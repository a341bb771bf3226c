"""W&B media at each validation end: the confusion matrix and a table of the worst misclassified images."""

from __future__ import annotations

import pytorch_lightning as pl
import torch

from datamodules.decode import read_rgb


def worst_misclassified(probs: torch.Tensor, labels: torch.Tensor, n: int) -> list[tuple[int, int, float]]:
    """``(row, prediction, confidence)`` of the ``n`` wrong predictions made with the highest confidence."""
    conf, pred = probs.max(1)
    wrong = (pred != labels).nonzero().flatten()
    order = wrong[conf[wrong].argsort(descending=True)][:n]
    return [(int(i), int(pred[i]), float(conf[i])) for i in order]


class WandbMediaCallback(pl.Callback):
    """Logs, on the main process and only when a W&B logger is attached, the validation confusion matrix
    and the worst misclassified validation images (image, label, prediction, confidence)."""

    def __init__(self, val_files: list[str], class_names: tuple[str, ...], rows: int = 16):
        self.val_files = val_files
        self.class_names = list(class_names)
        self.rows = rows

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # after the module's own on_validation_epoch_end, which fills pl_module.last_val
        from pytorch_lightning.loggers import WandbLogger

        loggers = [lg for lg in trainer.loggers if isinstance(lg, WandbLogger)]
        last = getattr(pl_module, "last_val", None)
        if trainer.sanity_checking or not trainer.is_global_zero or not loggers or not last:
            return
        import wandb

        probs, labels = last["probs"], last["labels"]
        if len(labels) == 0:
            return
        table = wandb.Table(columns=["image", "file", "label", "prediction", "confidence"])
        for row, pred, conf in worst_misclassified(probs, labels, self.rows):
            path = self.val_files[row] if row < len(self.val_files) else ""
            image = wandb.Image(read_rgb(path)) if path else None
            table.add_data(image, path, self.class_names[int(labels[row])], self.class_names[pred], conf)
        confusion = wandb.plot.confusion_matrix(
            y_true=labels.tolist(), preds=probs.argmax(1).tolist(), class_names=self.class_names
        )
        loggers[0].experiment.log(
            {"val/confusion_matrix": confusion, "val/worst_images": table, "trainer/global_step": trainer.global_step}
        )
