"""Writes the out-of-fold predictions of the best checkpoint: one row per validation image, as it is
(``oof.csv``) and in the submission's flip TTA (``oof_flip.csv``)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import BasePredictionWriter

from core.atomic import atomic_path
from core.distributed import gather_rows
from lightning_modules.finite import check_finite_probs
from rundir.layout import AGE, OOF, OOF_COLUMNS, OOF_FLIP, prob_columns


class OOFWriter(BasePredictionWriter):
    """On ``trainer.predict`` over the validation loader (the module's ``predict_step``: each image's
    probabilities as it is and mirrored), write ``oof.csv`` into ``run_dir``: person, image, stem, fold,
    label, the person's raw age (so that the predictions can be scored at the competition's age cuts whatever
    ``data.age_cuts`` the label was made at) and one probability column per class, in the validation frame's
    row order; and ``oof_flip.csv``, the same rows with the two views' probabilities averaged, as the
    submission's flip TTA predicts (what the noise finder ranks on)."""

    def __init__(self, run_dir: Path, frame: pd.DataFrame, label_column: str):
        super().__init__(write_interval="epoch")
        self.run_dir = Path(run_dir)
        self.frame = frame
        self.label_column = label_column

    def write_on_epoch_end(self, trainer, pl_module: pl.LightningModule, predictions, batch_indices) -> None:
        probs = torch.cat(predictions).float()  # (N, views, C)
        if trainer.world_size > 1:  # each process predicted its own rows (ShardSampler): put them together
            probs = self._gather(probs, batch_indices, pl_module.device)
        if not trainer.is_global_zero:
            return
        probs = probs.cpu().numpy()
        check_finite_probs(probs, trainer.ckpt_path)  # NaN would be written as empty cells
        if len(probs) != len(self.frame):
            raise RuntimeError(f"{len(probs)} predictions for {len(self.frame)} validation images")
        out = self.frame[OOF_COLUMNS[:-1]].reset_index(drop=True).copy()  # then the label, the age, the probabilities
        out["label"] = self.frame[self.label_column].to_numpy()
        out[AGE] = self.frame[AGE].to_numpy()
        columns = prob_columns(probs.shape[-1])
        for name, view in ((OOF_FLIP, probs.mean(1)), (OOF, probs[:, 0])):  # oof.csv last: it says the run predicted
            out[columns] = view
            with atomic_path(self.run_dir / name) as tmp:
                out.to_csv(tmp, index=False, float_format="%.6f")

    def _gather(self, probs: torch.Tensor, batch_indices, device: torch.device) -> torch.Tensor:
        """Every process's predictions in the validation frame's row order, by the rows each one predicted (as
        Lightning recorded them); an error unless every row is there exactly once. A collective call."""
        rows = torch.tensor([i for batch in (batch_indices[0] if batch_indices else []) for i in batch]).long()
        if len(rows) != len(probs):
            raise RuntimeError(f"{len(probs)} predictions, but the rows of {len(rows)} are known: cannot order them")
        probs, rows = gather_rows(probs.to(device), rows.to(device))
        if not torch.equal(rows.cpu(), torch.arange(len(self.frame))):
            raise RuntimeError(
                f"the processes predicted {len(rows)} rows ({len(rows.unique())} distinct) for {len(self.frame)} "
                "validation images: each must be predicted exactly once"
            )
        return probs
