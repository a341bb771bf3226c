"""Writes the out-of-fold predictions of the best checkpoint: one row per validation image."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import BasePredictionWriter

from datamodules.atomic import atomic_path

OOF_COLUMNS = ["person", "image", "stem", "fold", "label"]


def prob_columns(num_classes: int) -> list[str]:
    return [f"prob_{k}" for k in range(num_classes)]


class OOFWriter(BasePredictionWriter):
    """On ``trainer.predict`` over the validation loader, write ``oof.csv``: person, image, stem, fold,
    label and one probability column per class, in the validation frame's row order."""

    def __init__(self, path: Path, frame: pd.DataFrame, label_column: str):
        super().__init__(write_interval="epoch")
        self.path = Path(path)
        self.frame = frame
        self.label_column = label_column

    def write_on_epoch_end(self, trainer, pl_module: pl.LightningModule, predictions, batch_indices) -> None:
        if not trainer.is_global_zero:
            return
        probs = torch.cat(predictions).numpy()
        if len(probs) != len(self.frame):
            raise RuntimeError(f"{len(probs)} predictions for {len(self.frame)} validation images")
        out = self.frame[["person", "image", "stem", "fold"]].reset_index(drop=True).copy()
        out["label"] = self.frame[self.label_column].to_numpy()
        out[prob_columns(probs.shape[1])] = probs
        with atomic_path(self.path) as tmp:
            out.to_csv(tmp, index=False, float_format="%.6f")
