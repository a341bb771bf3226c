"""One short fold trained, resumed and predicted with given device settings, checked against the same weights run
eagerly in fp32: shared by tests/test_hardware.py (on the CPU) and tests/test_cuda.py (on a CUDA device)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytorch_lightning as pl
import torch
from conftest import tiny_config

import train
from datamodules.layout import read_eval
from inference.models import load_model
from inference.predictor import predict_images
from lightning_modules.checkpoint import model_from_checkpoint

TASK = "multihead"  # one model serves every task: the submission can be predicted from it alone


class SeenInTraining(pl.Callback):
    """What the model trained with: the Trainer's precision, its convolutions' memory format, a compiled
    backbone."""

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        conv = next(m for m in pl_module.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size != (1, 1))
        self.precision = trainer.precision
        self.channels_last = conv.weight.is_contiguous(memory_format=torch.channels_last)
        self.compiled = pl_module.backbone_module()._compiled_call_impl is not None  # set by nn.Module.compile


def train_resume_predict(data: Path, tmp_path: Path, *settings: str) -> dict:
    """Train fold 0 of ``data`` for one short epoch with ``settings``, resume it for a second, and predict the
    validation and evaluation images from its best.ckpt as ``predict.py`` does and eagerly in fp32. Returns what
    training saw, the checkpoint, the run's out-of-fold probabilities, and the two predictions of each set."""
    cfg = tiny_config(
        data,
        tmp_path / "cache",
        f"runs_dir={tmp_path / 'runs'}",
        "trainer.max_epochs=1",
        "loader.batch_size=7",  # every batch full (56 training, 28 validation images): one shape to compile
        "trainer.effective_batch=7",
        "trainer.limit_train_batches=0.5",
        "trainer.progress_bar=false",
        *settings,
    )
    seen = SeenInTraining()
    out = train.train(cfg, TASK, 0, callbacks=[seen])
    first_step = torch.load(out / "last.ckpt", weights_only=True)["global_step"]
    cfg.trainer.max_epochs = 2
    train.train(cfg, TASK, 0, resume=True)
    last = torch.load(out / "last.ckpt", weights_only=True)
    assert last["epoch"] == 1 and last["global_step"] == 2 * first_step  # one more epoch, not two from scratch
    best = out / "best.ckpt"
    device = torch.device("cuda" if cfg.trainer.accelerator != "cpu" and torch.cuda.is_available() else "cpu")
    ready = load_model(best, device)  # as predict.py loads it
    eager = model_from_checkpoint(best, "retrain").to(device)  # fp32, contiguous, not compiled
    oof = pd.read_csv(out / "oof.csv")
    val_files = [str(data / "train" / "images" / p / i) for p, i in zip(oof["person"], oof["image"], strict=True)]
    predicted = {}
    for name, files in (("val", val_files), ("eval", read_eval(data)["file"].tolist())):
        (as_run,), (as_eager,) = predict_images([ready, eager], files, [False], cfg, None)
        predicted[name] = (as_run, as_eager)
    return {
        "seen": seen,
        "checkpoint": torch.load(best, weights_only=True),
        "model": ready,
        "oof": oof[[c for c in oof.columns if c.startswith("prob_")]].to_numpy(),
        "predicted": predicted,
    }


def check_names_and_predictions(run: dict, atol: float) -> None:
    """The checkpoint's parameter names are the eager model's (nothing like ``_orig_mod.``), and the run's
    predictions (the out-of-fold ones training wrote, and ``predict.py``'s) are within ``atol`` of the same weights
    run eagerly in fp32."""
    names = list(run["checkpoint"]["state_dict"])
    assert not [n for n in names if "_orig_mod" in n or "module." in n[:7]], names[:5]
    val_run, val_eager = run["predicted"]["val"]
    assert np.abs(run["oof"] - val_eager).max() < atol  # the training's own prediction of its validation images
    for as_run, as_eager in run["predicted"].values():
        assert np.abs(as_run - as_eager).max() < atol
        assert np.allclose(as_run.sum(1), 3, atol=1e-2)  # three heads' probabilities, each summing to 1
