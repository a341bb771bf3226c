"""Checkpointing (``best.ckpt`` on ``val/f1``, ``last.ckpt`` for ``--resume``), stopping on a non-finite loss,
early stopping, learning-rate monitoring, and per-epoch metrics as CSV."""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import pytorch_lightning as pl
from pytorch_lightning.callbacks import EarlyStopping, EMAWeightAveraging, LearningRateMonitor

from callbacks.finite_loss import FiniteLoss
from callbacks.resume import RESUME_HINT, AtomicModelCheckpoint, LastCheckpoint, SamplerPosition, ScheduleLength
from configs.config import Config
from core.atomic import atomic_path
from rundir.layout import BEST, LAST_CKPT, METRICS

log = logging.getLogger(__name__)


def training_callbacks(
    cfg: Config, run_dir: Path, validate: bool, lr_monitor: bool, resume_hint: str = RESUME_HINT
) -> list[pl.Callback]:
    """What a training run leaves in ``run_dir``: ``best.ckpt``, ``last.ckpt`` (``resume_hint``: the command that
    resumes the run, told when a signal stops it), ``metrics.csv``; and the weights' moving average
    (``trainer.ema_decay``), early stopping and the learning-rate monitor when asked for. A loss or weights that
    stop being finite end the run with an error (before a checkpoint holds them)."""
    t = cfg.trainer
    callbacks: list[pl.Callback] = [
        FiniteLoss(likely_cause(cfg), (t.checkpoint_every_n_steps, t.log_every_n_steps)),
        AtomicModelCheckpoint(
            dirpath=run_dir,
            filename=BEST,
            monitor="val/f1" if validate else None,
            mode="max",
            save_top_k=1,
            save_last=False,  # ModelCheckpoint writes "last" only when the best improves: LastCheckpoint does
            enable_version_counter=False,
        ),
        LastCheckpoint(run_dir / LAST_CKPT, cfg.trainer.checkpoint_every_n_steps, resume_hint),
        SamplerPosition(),
        ScheduleLength(),
        EpochMetricsCSV(run_dir / METRICS),
    ]
    if cfg.trainer.ema_decay > 0:  # validated with, and saved as, the average (the training weights kept beside it)
        callbacks.append(EMAWeightAveraging(decay=cfg.trainer.ema_decay))
    if validate and cfg.trainer.early_stopping_patience > 0:
        callbacks.append(EarlyStopping("val/f1", mode="max", patience=cfg.trainer.early_stopping_patience))
    if lr_monitor:
        callbacks.append(LearningRateMonitor("epoch"))
    return callbacks


def likely_cause(cfg: Config) -> str:
    """The settings that most likely made the training loss NaN or infinite, and what to do."""
    cause = f"optim.lr={cfg.optim.lr:g} is likely too high for optim.name={cfg.optim.name}: lower it"
    if cfg.trainer.precision == "16-mixed":
        cause += ", or use trainer.precision=bf16-mixed (float16 overflows sooner)"
    return cause


class EpochMetricsCSV(pl.Callback):
    """One row per epoch with every epoch-level metric (``train/loss_epoch``, ``val/f1``, ...) and the
    learning rate the epoch trained with (``lr``, of the first parameter group)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._lr: float | None = None

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # a resume in the middle of an epoch has no epoch start: the restored optimizer holds that epoch's rate
        self.on_train_epoch_start(trainer, pl_module)

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # read here: Lightning steps an epoch's schedule before the epoch-end hooks run
        self._lr = trainer.optimizers[0].param_groups[0]["lr"] if trainer.optimizers else None

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if not k.endswith("_step")}
        lr = {} if self._lr is None else {"lr": self._lr}
        row = {"epoch": trainer.current_epoch, "step": trainer.global_step, **lr, **metrics}
        rows = [r for r in self._read() if r["epoch"] != str(row["epoch"])] + [row]  # a resumed epoch replaces
        keys = list(dict.fromkeys(k for r in rows for k in r))
        with atomic_path(self.path) as tmp, tmp.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=keys)
            writer.writeheader()
            writer.writerows(rows)

    def _read(self) -> list[dict]:
        """The rows written so far; none, with a warning, when the file is not a metrics table (damaged)."""
        if not self.path.is_file():
            return []
        try:
            with self.path.open(newline="") as f:
                rows = list(csv.DictReader(f))
        except (OSError, UnicodeDecodeError, csv.Error) as exc:
            rows, why = None, str(exc)
        else:
            why = "it has no epoch column"
        if rows is None or any(not isinstance(r.get("epoch"), str) for r in rows):
            log.warning("%s cannot be read as a metrics table (%s): starting it anew", self.path, why)
            return []
        return rows
