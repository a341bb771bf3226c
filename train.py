"""Train one model per (task, fold), watched in W&B.

    python train.py --task age --fold 2
    python train.py --task all --fold all --config configs/quick.yaml

Outputs go to ``runs/<exp>/<task>/fold<k>/`` (see ``rundir/layout.py``): best.ckpt, last.ckpt, config.yaml,
metrics.csv, oof.csv and oof_flip.csv (the out-of-fold predictions without and with flip TTA).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import TQDMProgressBar, WeightAveraging
from pytorch_lightning.strategies import StrategyRegistry
from pytorch_lightning.utilities import rank_zero_only

import jobs as jobs_runner
from callbacks.checkpoints import training_callbacks
from callbacks.oof_writer import OOFWriter
from callbacks.resume import RESUME_HINT, SIGINT_EXIT, resume_command
from callbacks.wandb_media import WandbMediaCallback
from callbacks.wandb_run import finish_wandb, start_wandb_logger
from configs.config import Config, check_exp_name, load_config, save_config
from core.errors import ConfigError, run_cli
from core.tasks import CLASS18, MULTIHEAD, NUM_CLASSES, TASK_NAMES, TASKS
from datamodules.datamodule import MaskDataModule, parse_fold
from datamodules.dataset import worker_death
from datamodules.prepare import PreparedData, prepare
from datamodules.summary import summarize
from inference.oof import write_oof_report
from inference.submission import write_submission
from lightning_modules.hardware import channels_last, cuda_facts, effective_batch, ready_for_device, trainer_hardware
from lightning_modules.multihead import MultiHeadModule
from lightning_modules.ordinal import build_ordinal_loss
from lightning_modules.task_module import TaskModule
from lightning_modules.weights import check_weights
from rundir.claim import check_resume, check_resumed_data, claim_run_dir, ensure_writable, settle_replaced
from rundir.layout import BEST_CKPT, CONFIG, DONE, FULL, LAST_CKPT, LOGS, NAMED_FOLDS, exp_dir, run_dir, write_done
from rundir.lock import RunLock
from synthetic import ensure_default_data

log = logging.getLogger("train")
QUIET = (  # Lightning's advice that does not apply here
    r".*exists and is not empty.*",
    r".*litlogger.*",
    r".*LeafSpec.*",
    r".*was configured so 100% of the batches.*",
    r".*callbacks used to create the checkpoint need to be provided.*",  # the EMA callback, left out to predict
)


def quiet_lightning() -> None:
    for pattern in QUIET:
        warnings.filterwarnings("ignore", message=pattern)
    logging.getLogger("pytorch_lightning.utilities.rank_zero").addFilter(
        lambda record: not any(re.match(p, record.getMessage(), re.S) for p in QUIET)
    )


def main_process() -> bool:
    """False in the other processes of a multi-device run. Lightning's DDP launcher starts them from inside rank
    0's ``trainer.fit`` by re-running this script with LOCAL_RANK set; they find the data rank 0 prepared and
    follow its decisions, and only rank 0 prints, logs to W&B and writes the run directory's files."""
    return rank_zero_only.rank == 0


def hardware(cfg: Config) -> dict:
    """The Trainer's accelerator, precision, accumulation and cuDNN benchmark on this machine."""
    return trainer_hardware(cfg, *cuda_facts())


def check_settings(cfg: Config, fold: int | str, task: str) -> None:
    """Settings that would only fail inside Lightning or part-way, checked before any work: the ordinal age head's
    loss, the accelerator, the strategy, and a plateau schedule (which follows val/f1) on a run without
    validation. (The backbone's starting weights: :func:`check_weights`, before training.)"""
    if cfg.model.age_head == "ordinal" and task in ("age", MULTIHEAD):
        build_ordinal_loss((cfg.multihead.age_loss if task == MULTIHEAD else None) or cfg.loss, cfg.data.age_cuts)
    t = cfg.trainer
    if t.accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        raise ConfigError(
            f"trainer.accelerator={t.accelerator}: no CUDA GPU is visible to this process "
            "(torch.cuda.is_available() is false): use trainer.accelerator=auto or cpu"
        )
    strategies = ["auto", *StrategyRegistry.available_strategies()]
    if t.strategy not in strategies:
        raise ConfigError(
            f"trainer.strategy: {t.strategy!r} is not a Lightning strategy; choose one of {', '.join(strategies)}"
        )
    if fold == "full" and cfg.optim.scheduler == "plateau":
        raise ConfigError(
            "optim.scheduler=plateau lowers the learning rate when val/f1 stops improving, and --fold full has no "
            "validation: use optim.scheduler=cosine, step or none with --fold full"
        )


def build_model(cfg: Config, task: str, dm: MaskDataModule) -> pl.LightningModule:
    """The task's classifier, or for ``multihead`` the shared backbone with a head per task."""
    frame = dm.train_frame
    if task == MULTIHEAD:
        counts = {t: np.bincount(frame[TASKS[t].column], minlength=TASKS[t].num_classes).tolist() for t in TASKS}
        counts[CLASS18] = np.bincount(frame["label"], minlength=NUM_CLASSES).tolist()
        return MultiHeadModule(cfg.to_dict(), *dm.mean_std, class_counts=counts, fingerprint=dm.data.fingerprint)
    counts = np.bincount(frame[dm.task.column].astype(int), minlength=dm.task.num_classes).tolist()
    return TaskModule(task, cfg.to_dict(), *dm.mean_std, class_counts=counts, fingerprint=dm.data.fingerprint)


def train(
    cfg: Config,
    task: str,
    fold: int | str,
    resume: bool = False,
    overwrite: bool = False,
    data: PreparedData | None = None,
    callbacks: list[pl.Callback] = (),
    resume_hint: str = RESUME_HINT,
) -> Path:
    """Train ``task`` on ``fold``; return its run directory. With ``resume``, continue from last.ckpt (when it
    was trained with the same settings), or skip the run when it finished already; with ``overwrite``, replace
    an earlier run (whose results are kept until the new one finishes). One process per run directory.
    ``data``: ``prepare(cfg)``'s result, when the caller has it; ``callbacks``: more Lightning callbacks;
    ``resume_hint``: the command that resumes the run, told when a signal stops it."""
    fold = parse_fold(fold, cfg.data.n_folds)
    check_settings(cfg, fold, task)
    check_weights(cfg.model)
    out = run_dir(cfg.runs_dir, cfg.exp, task, fold)
    if not main_process():  # started from inside rank 0's fit, after its claim: it only follows
        if resume and (out / DONE).is_file():
            return out
        return _fit(cfg, task, fold, out, resume, None, data, callbacks, resume_hint)
    ensure_writable(out)
    if data is None:
        ensure_default_data(cfg.data)
    with RunLock(out):
        if not claim_run_dir(out, resume, overwrite, cfg.trainer.max_epochs):  # with resume it changes nothing
            log.info("%s fold %s finished already (%s): skipping it", task, fold, out / DONE)
            return out
        saved = check_resume(cfg, task, out) if resume else None  # before anything is written
        try:
            return _fit(cfg, task, fold, out, resume, saved, data, callbacks, resume_hint)
        finally:
            settle_replaced(out)  # an overwritten run's results: dropped once this one finishes


def _fit(
    cfg: Config,
    task: str,
    fold: int | str,
    out: Path,
    resume: bool,
    saved: dict | None,
    data: PreparedData | None,
    callbacks: list[pl.Callback],
    resume_hint: str,
) -> Path:
    """The training itself, in the claimed run directory ``out`` (``saved``: the hyperparameters of the
    checkpoint a resumed run continues from)."""
    main = main_process()
    quiet_lightning()
    pl.seed_everything(cfg.seed, workers=True)
    dm = MaskDataModule(cfg, task, fold, progress=cfg.trainer.progress_bar, data=data)
    dm.prepare_data()
    dm.setup("fit")
    if main:
        check_resumed_data(saved, dm.data.fingerprint, out)
        (out / DONE).unlink(missing_ok=True)  # a finished run resumed for more epochs is not finished any more
    validate = len(dm.val_frame) > 0
    hw = hardware(cfg)
    log.info(
        "%s fold %s: %d train / %d validation images; effective batch %d = %d device(s) x batch %d x "
        "accumulation %d; %s, %s",
        task,
        fold,
        len(dm.train_frame),
        len(dm.val_frame),
        effective_batch(cfg, hw),
        hw["devices"] * hw["num_nodes"],
        cfg.loader.batch_size,
        hw["accumulate_grad_batches"],
        hw["accelerator"],
        hw["precision"],
    )
    model = build_model(cfg, task, dm)
    cuda = hw["accelerator"] == "gpu"
    model = ready_for_device(model, channels_last(cfg.trainer.channels_last, cuda), cfg.trainer.compile, cuda)
    started = time.perf_counter()
    if main:
        save_config(cfg, out / CONFIG)
    logger = start_wandb_logger(cfg, task, fold) if main else None
    try:
        callbacks = [*training_callbacks(cfg, out, validate, logger is not None, resume_hint), *callbacks]
        if validate:
            callbacks += [
                OOFWriter(out, dm.val_frame, dm.task.column),
                WandbMediaCallback(dm.val_frame["file"].tolist(), dm.task.classes, cfg.trainer.worst_images),
            ]
        if cfg.trainer.progress_bar:  # a bar update reads the loss (a GPU sync): not every step on CUDA
            callbacks.append(TQDMProgressBar(refresh_rate=10 if hw["accelerator"] == "gpu" else 1))
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
        last = out / LAST_CKPT
        ckpt_path = str(last) if resume and last.is_file() else None
        if resume and ckpt_path is None:
            log.info("no %s to resume from: starting %s fold %s afresh", last, task, fold)
        try:
            trainer.fit(model, datamodule=dm, ckpt_path=ckpt_path, weights_only=True)
        except torch.cuda.OutOfMemoryError:
            half = max(1, cfg.loader.batch_size // 2)
            raise ConfigError(
                f"the GPU ran out of memory at loader.batch_size={cfg.loader.batch_size}: pass --set "
                f"loader.batch_size={half} (gradient accumulation keeps the effective batch at "
                f"{cfg.trainer.effective_batch}), then --resume"
            ) from None
        except SystemExit as exc:  # Lightning exits 1 after a second Ctrl-C: the shell's code for Ctrl-C instead
            raise SystemExit(SIGINT_EXIT if exc.code == 1 and trainer.interrupted else exc.code) from None
        except (RuntimeError, ConnectionError, EOFError) as exc:
            died = worker_death(exc, dm.datasets)
            if died is None:
                raise
            raise died from None
        if validate:
            # the best checkpoint's weights as saved (an EMA run saves the average): the averaging callback would
            # load its training weights back over them
            trainer.callbacks = [c for c in trainer.callbacks if not isinstance(c, WeightAveraging)]
            trainer.predict(
                model,
                dataloaders=dm.val_dataloader(),
                ckpt_path=str(out / BEST_CKPT),
                return_predictions=False,
                weights_only=True,
            )
    finally:
        if logger is not None:
            finish_wandb()
    best = trainer.checkpoint_callback.best_model_score if validate else None
    summary = {
        "task": task,
        "fold": str(fold),
        "global_step": trainer.global_step,
        "max_epochs": cfg.trainer.max_epochs,
        "val_f1_best": None if best is None else float(best),
        "seconds": round(time.perf_counter() - started, 1),  # training, validation and the OOF prediction
    }
    if main:
        write_done(out, summary)
    log.info("%s fold %s done: %s", task, fold, out)
    return out


def expand(task: str, fold: str, n_folds: int) -> list[tuple[str, int | str]]:
    """The (task, fold) jobs that ``--task``/``--fold`` name; ``all`` expands to every task or fold."""
    tasks = list(TASK_NAMES) if task == "all" else [task]
    folds = list(range(n_folds)) if fold == "all" else [parse_fold(fold, n_folds)]
    return [(t, f) for t in tasks for f in folds]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", default="all", choices=[*TASK_NAMES, "all", MULTIHEAD], help="all: the three separately")
    p.add_argument("--fold", default="all", help="a fold index, all, holdout or full (default: all)")
    p.add_argument("--config", action="append", default=[], metavar="FILE", help="YAML settings (repeatable)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override one setting")
    p.add_argument("--data-dir", help="the competition data (holding train/ and eval/)")
    p.add_argument("--exp", help="experiment name: outputs under runs/<exp>/")
    p.add_argument("--wandb", choices=["auto", "online", "offline", "disabled"])
    p.add_argument("--resume", action="store_true", help="continue each run from its last.ckpt; skip finished ones")
    p.add_argument("--overwrite", action="store_true", help="replace the results of an earlier run of the same exp")
    p.add_argument("--skip-bad", action="store_true", help="leave out undecodable training images (with a warning)")
    p.add_argument("--predict", action="store_true", help="then score out-of-fold and write the submission")
    p.add_argument("--prepare-only", action="store_true", help="prepare and summarise the data, then stop")
    p.add_argument("--devices", type=int, metavar="N", help="train each model on N devices (trainer.devices)")
    p.add_argument("--strategy", metavar="NAME", help="Lightning strategy, e.g. ddp (trainer.strategy)")
    p.add_argument("--gpus", help="e.g. 0,1,2,3: run the (task, fold) jobs in parallel, one process per GPU")
    p.add_argument("--debug", action="store_true", help="show tracebacks for data and config errors")
    return p


def config_from_args(args: argparse.Namespace, task: str | None) -> Config:
    overrides = list(args.set)
    if args.devices is not None:
        overrides.append(f"trainer.devices={args.devices}")
    if args.strategy is not None:
        overrides.append(f"trainer.strategy={args.strategy}")
    cfg = load_config(task, args.config, overrides)
    if args.data_dir:
        cfg.data.dir = args.data_dir
    if args.exp:
        cfg.exp = check_exp_name(args.exp)
    if args.wandb:
        cfg.wandb.mode = args.wandb
    if args.skip_bad:
        cfg.data.skip_bad = True
    if os.environ.get("WANDB_SWEEP_ID") and os.environ.get("WANDB_RUN_ID"):  # a trial of a W&B sweep
        cfg.exp = f"{cfg.exp}-{os.environ['WANDB_RUN_ID']}"  # its own directory: agents never collide
    return cfg


def data_key(cfg: Config) -> str:
    """Every setting that ``prepare`` reads: jobs with the same key share one prepared data set."""
    return json.dumps([cfg.to_dict()["data"], cfg.to_dict()["augment"], cfg.to_dict()["model"], cfg.seed])


def run(args: argparse.Namespace) -> None:
    base = config_from_args(args, None)
    gpus = jobs_runner.parse_gpus(args.gpus) if args.gpus else None  # before any data work
    jobs = expand(args.task, args.fold, base.data.n_folds)
    configs = {task: config_from_args(args, task) for task in dict.fromkeys(t for t, _ in jobs)}
    for task, fold in jobs:  # mistakes that would stop a job part-way: before any data work
        check_settings(configs[task], fold, task)
        if not args.prepare_only:  # the starting weights: only training needs them
            check_weights(configs[task].model)
    ensure_default_data(base.data)  # the synthetic stand-in, generated on first use
    prepared = {data_key(base): prepare(base, progress=base.trainer.progress_bar)}
    if main_process():
        print(summarize(prepared[data_key(base)]), flush=True)
    for cfg in configs.values():
        key = data_key(cfg)  # a task's own settings may change the data (its age cuts): prepared once each
        if key not in prepared:
            ensure_default_data(cfg.data)
            prepared[key] = prepare(cfg, progress=cfg.trainer.progress_bar)
    if args.prepare_only:
        return
    if gpus:  # one train.py process per GPU; the data (caches included) is prepared above, once
        passthrough = jobs_runner.strip_job_args(args.argv)
        jobs_runner.run_jobs([(t, str(f)) for t, f in jobs], gpus, passthrough, exp_dir(base.runs_dir, base.exp) / LOGS)
    else:
        hint = resume_command(["train.py", *args.argv])
        for task, fold in jobs:
            cfg = config_from_args(args, task)
            prepared_data = prepared[data_key(cfg)]
            train(cfg, task, fold, args.resume, args.overwrite, prepared_data, resume_hint=hint)
    if args.predict and main_process():
        experiment = exp_dir(base.runs_dir, base.exp)
        # the folds just trained: the k-fold models (every one found), or the holdout or full model alone
        folds = [args.fold] if args.fold in NAMED_FOLDS else None
        if args.fold != FULL:  # the OOF estimate with the submission's flip TTA
            write_oof_report(base, experiment, folds=folds, tta="flip", data_dir=str(base.data.dir))
        write_submission(base, experiment, folds=folds, data_dir=str(base.data.dir))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Options, plus ``--section.key=value`` as a shorthand for ``--set section.key=value`` (the form a W&B
    sweep agent passes its parameters in)."""
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    args, extra = parser.parse_known_args(argv)
    args.argv = argv
    for item in extra:
        key, sep, _ = item.removeprefix("--").partition("=")
        if not (item.startswith("--") and sep and "." in key):
            parser.error(f"unrecognized argument: {item} (settings go as --set key=value or --section.key=value)")
        args.set.append(item.removeprefix("--"))
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO if main_process() else logging.WARNING, format="%(message)s")
    return run_cli(lambda: run(args), args.debug)


if __name__ == "__main__":
    sys.exit(main())
