"""Train one model per (task, fold), watched in W&B.

    python train.py --task age --fold 2
    python train.py --task all --fold all --config configs/quick.yaml

Outputs go to ``runs/<exp>/<task>/fold<k>/``: best.ckpt, last.ckpt, config.yaml, metrics.csv, oof.csv.
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
import warnings
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch

from callbacks.checkpoints import BEST, LAST, training_callbacks
from callbacks.oof_writer import OOFWriter
from callbacks.wandb_media import WandbMediaCallback
from callbacks.wandb_run import finish_wandb, start_wandb_logger
from configs.config import TASK_NAMES, Config, load_config, save_config
from datamodules.datamodule import MaskDataModule, parse_fold
from datamodules.errors import run_cli
from datamodules.prepare import prepare
from datamodules.summary import summarize
from lightning_modules.optim import accumulation
from lightning_modules.task_module import TaskModule

log = logging.getLogger("train")
QUIET = (  # Lightning's advice that does not apply here
    r".*exists and is not empty.*",
    r".*litlogger.*",
    r".*LeafSpec.*",
    r".*was configured so 100% of the batches.*",
)


def quiet_lightning() -> None:
    for pattern in QUIET:
        warnings.filterwarnings("ignore", message=pattern)
    logging.getLogger("pytorch_lightning.utilities.rank_zero").addFilter(
        lambda record: not any(re.match(p, record.getMessage(), re.S) for p in QUIET)
    )


def run_dir(cfg: Config, task: str, fold: int | str) -> Path:
    return Path(cfg.runs_dir) / cfg.exp / task / f"fold{fold}"


def hardware(cfg: Config) -> dict:
    """Accelerator, precision and accumulation: bf16 on CUDA, fp32 on CPU, the effective batch kept."""
    t = cfg.trainer
    cuda = t.accelerator in ("gpu", "cuda") or (t.accelerator == "auto" and torch.cuda.is_available())
    precision = t.precision if t.precision != "auto" else ("bf16-mixed" if cuda else "32-true")
    accumulate = accumulation(t.effective_batch, cfg.loader.batch_size, t.devices)
    return {
        "accelerator": "gpu" if cuda else "cpu",
        "devices": t.devices,
        "strategy": t.strategy,
        "precision": precision,
        "accumulate_grad_batches": accumulate,
        "benchmark": cuda,
    }


def train(cfg: Config, task: str, fold: int | str, resume: bool = False) -> Path:
    """Train ``task`` on ``fold``; return its run directory."""
    fold = parse_fold(fold, cfg.data.n_folds)
    out = run_dir(cfg, task, fold)
    out.mkdir(parents=True, exist_ok=True)
    quiet_lightning()
    pl.seed_everything(cfg.seed, workers=True)
    dm = MaskDataModule(cfg, task, fold, progress=cfg.trainer.progress_bar)
    dm.prepare_data()
    dm.setup("fit")
    validate = len(dm.val_frame) > 0
    hw = hardware(cfg)
    log.info(
        "%s fold %s: %d train / %d validation images; effective batch %d = %d device(s) x batch %d x "
        "accumulation %d; %s, %s",
        task,
        fold,
        len(dm.train_frame),
        len(dm.val_frame),
        hw["devices"] * cfg.loader.batch_size * hw["accumulate_grad_batches"],
        hw["devices"],
        cfg.loader.batch_size,
        hw["accumulate_grad_batches"],
        hw["accelerator"],
        hw["precision"],
    )
    counts = np.bincount(dm.labels(dm.train_frame), minlength=dm.task.num_classes).tolist()
    model = TaskModule(task, cfg.to_dict(), *dm.mean_std, class_counts=counts, fingerprint=dm.data.fingerprint)
    if hw["accelerator"] == "gpu":
        model = model.to(memory_format=torch.channels_last)
    save_config(cfg, out / "config.yaml")
    logger = start_wandb_logger(cfg, task, fold)
    try:
        callbacks = training_callbacks(cfg, out, validate, lr_monitor=logger is not None)
        if validate:
            callbacks += [
                OOFWriter(out / "oof.csv", dm.val_frame, dm.task.column),
                WandbMediaCallback(dm.val_frame["file"].tolist(), dm.task.classes, cfg.trainer.worst_images),
            ]
        trainer = pl.Trainer(
            max_epochs=cfg.trainer.max_epochs,
            callbacks=callbacks,
            logger=logger if logger is not None else False,
            use_distributed_sampler=False,  # the sampler shards itself per process
            deterministic=cfg.trainer.deterministic,
            limit_train_batches=cfg.trainer.limit_train_batches,
            limit_val_batches=cfg.trainer.limit_val_batches if validate else 0,
            num_sanity_val_steps=0,
            log_every_n_steps=cfg.trainer.log_every_n_steps,
            enable_progress_bar=cfg.trainer.progress_bar,
            enable_model_summary=False,
            default_root_dir=out,
            **hw,
        )
        last = out / f"{LAST}.ckpt"
        ckpt_path = str(last) if resume and last.is_file() else None
        if resume and ckpt_path is None:
            log.info("no %s to resume from: starting %s fold %s afresh", last, task, fold)
        trainer.fit(model, datamodule=dm, ckpt_path=ckpt_path, weights_only=True)
        if validate:
            trainer.predict(
                model,
                dataloaders=dm.val_dataloader(),
                ckpt_path=str(out / f"{BEST}.ckpt"),
                return_predictions=False,
                weights_only=True,
            )
    finally:
        if logger is not None:
            finish_wandb()
    log.info("%s fold %s done: %s", task, fold, out)
    return out


def expand(task: str, fold: str, n_folds: int) -> list[tuple[str, int | str]]:
    """The (task, fold) jobs that ``--task``/``--fold`` name; ``all`` expands to every task or fold."""
    tasks = list(TASK_NAMES) if task == "all" else [task]
    folds = list(range(n_folds)) if fold == "all" else [parse_fold(fold, n_folds)]
    return [(t, f) for t in tasks for f in folds]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", default="all", choices=[*TASK_NAMES, "all"])
    p.add_argument("--fold", default="all", help="a fold index, all, holdout or full (default: all)")
    p.add_argument("--config", action="append", default=[], metavar="FILE", help="YAML settings (repeatable)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override one setting")
    p.add_argument("--data-dir", help="the competition data (holding train/ and eval/)")
    p.add_argument("--exp", help="experiment name: outputs under runs/<exp>/")
    p.add_argument("--wandb", choices=["auto", "online", "offline", "disabled"])
    p.add_argument("--resume", action="store_true", help="continue each run from its last.ckpt")
    p.add_argument("--predict", action="store_true", help="then score out-of-fold and write the submission")
    p.add_argument("--prepare-only", action="store_true", help="prepare and summarise the data, then stop")
    p.add_argument("--debug", action="store_true", help="show tracebacks for data and config errors")
    return p


def config_from_args(args: argparse.Namespace, task: str | None) -> Config:
    overrides = list(args.set)
    cfg = load_config(task, args.config, overrides)
    if args.data_dir:
        cfg.data.dir = args.data_dir
    if args.exp:
        cfg.exp = args.exp
    if args.wandb:
        cfg.wandb.mode = args.wandb
    return cfg


def run(args: argparse.Namespace) -> None:
    base = config_from_args(args, None)
    jobs = expand(args.task, args.fold, base.data.n_folds)
    print(summarize(prepare(base, progress=base.trainer.progress_bar)), flush=True)
    if args.prepare_only:
        return
    for task, fold in jobs:
        train(config_from_args(args, task), task, fold, resume=args.resume)
    if args.predict:
        import predict

        exp_dir = Path(base.runs_dir) / base.exp
        if any(exp_dir.glob("*/fold*/oof.csv")):
            predict.write_oof_report(base, exp_dir)
        predict.write_submission(base, exp_dir, data_dir=str(base.data.dir))


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    return run_cli(lambda: run(args), args.debug)


if __name__ == "__main__":
    sys.exit(main())
