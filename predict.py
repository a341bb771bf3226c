"""Predict the evaluation images with every fold's checkpoint, merge folds, TTA views and the three task
heads into the 18 classes, and write the submission; or score the out-of-fold predictions.

    python predict.py --exp default --ensemble soft --tta flip
    python predict.py --exp default --oof
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from callbacks.wandb_run import log_report
from configs.config import MULTIHEAD, TASK_NAMES, Config, ConfigError, load_config
from datamodules.atomic import atomic_path, write_text_atomic
from datamodules.datamodule import make_loader
from datamodules.dataset import ImageDataset, worker_death
from datamodules.errors import DataError, run_cli
from datamodules.layout import read_eval
from datamodules.prepare import eval_cache
from datamodules.transforms import eval_augment, geometry_only
from lightning_modules.ensemble import combine_heads, merge
from lightning_modules.multihead import MultiHeadModule
from lightning_modules.scoring import score_oof, score_predictions
from lightning_modules.task_module import TaskModule

log = logging.getLogger("predict")
CHECKPOINT = "best.ckpt"


def find_checkpoints(exp_dir: Path, folds: list[str] | None) -> dict[str, list[Path]]:
    """``task -> [fold checkpoints]``; an error naming each task that has none."""
    found = {}
    shared = sorted((exp_dir / MULTIHEAD).glob(f"fold*/{CHECKPOINT}"))  # a multihead model serves every task
    for task in TASK_NAMES:
        ckpts = sorted((exp_dir / task).glob(f"fold*/{CHECKPOINT}")) + shared
        if folds is not None:
            ckpts = [c for c in ckpts if c.parent.name.removeprefix("fold") in folds]
        found[task] = ckpts
    missing = [t for t, c in found.items() if not c]
    if missing:
        wanted = f" for folds {','.join(folds)}" if folds else ""
        raise DataError(
            f"no {CHECKPOINT} for task(s) {', '.join(missing)}{wanted} under {exp_dir}: "
            f"train them first, e.g. python train.py --task {missing[0]} --exp {exp_dir.name}"
        )
    return found


def load_model(path: Path, device: torch.device) -> TaskModule | MultiHeadModule:
    cls = MultiHeadModule if path.parent.parent.name == MULTIHEAD else TaskModule
    model = cls.load_from_checkpoint(path, map_location="cpu", weights_only=True)
    model.eval().to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    return model


def preprocessing_key(model: TaskModule) -> str:
    """Models with the same key are fed the very same tensors (one decode for all of them)."""
    aug = model.cfg.augment
    return json.dumps([aug.resize_height, aug.resize_width, aug.crop, model.hparams.mean, model.hparams.std])


def check_compatible(models: dict[Path, TaskModule]) -> None:
    """The age models of one submission must share their age cuts (other heads do not use them)."""
    age = {p: tuple(m.cfg.data.age_cuts) for p, m in models.items() if "age" in m.head_slices()}
    if len(set(age.values())) > 1:
        listing = "; ".join(f"{p}: {list(c)}" for p, c in age.items())
        raise DataError(f"the age checkpoints were trained with different age cuts ({listing}): pass --folds")


@torch.inference_mode()
def predict_group(models: list[TaskModule], frame: pd.DataFrame, views: list[bool], cfg: Config, data_dir: Path):
    """Probabilities of each model over ``frame``'s images, one array per (model, view); the models share
    their preprocessing, so each batch is read once (from the image cache) and fed to every model in both
    views (the flip is done on the GPU)."""
    first = models[0]
    aug = first.cfg.augment
    cache = eval_cache(cfg, data_dir, frame["file"].tolist(), aug)
    dataset = ImageDataset(frame["file"], frame["ImageID"], eval_augment(), geometry=geometry_only(aug), cache=cache)
    loader = make_loader(cfg, dataset, persistent=False)
    outputs: list[list[list[torch.Tensor]]] = [[[] for _ in views] for _ in models]
    device = first.device
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")
    desc = f"predicting ({len(models)} models x {len(views)} views)"
    try:
        for images, _ in tqdm(loader, desc=desc, unit="batch", disable=not cfg.trainer.progress_bar):
            images = images.to(device, non_blocking=True)
            with autocast:
                for v, hflip in enumerate(views):
                    view = images.flip(-1) if hflip else images
                    for out, model in zip(outputs, models, strict=True):
                        out[v].append(model.probabilities(view))
    except (RuntimeError, ConnectionError, EOFError) as exc:
        died = worker_death(exc, [dataset])
        if died is None:
            raise
        raise died from None
    return [[torch.cat(o).cpu().numpy() for o in per_view] for per_view in outputs]


def predict_eval(
    cfg: Config, exp_dir: Path, data_dir: str | None, ensemble: str, tta: str, folds: list[str] | None
) -> tuple[pd.DataFrame, Path]:
    """Per-head merged probabilities and the 18-class answer for every image of eval/info.csv, and the data
    directory used (``data_dir``, else the one the checkpoints were trained on)."""
    checkpoints = find_checkpoints(exp_dir, folds)
    if ensemble == "none":
        several = {t: len(c) for t, c in checkpoints.items() if len(c) > 1}
        if several:
            raise ConfigError(f"--ensemble none needs one checkpoint per task; found {several}: pass --folds")
    device = torch.device("cuda" if torch.cuda.is_available() and cfg.trainer.accelerator != "cpu" else "cpu")
    models = {p: load_model(p, device) for paths in checkpoints.values() for p in paths}
    check_compatible(models)
    data_dir = Path(data_dir or next(iter(models.values())).cfg.data.dir)
    frame = read_eval(data_dir)
    groups: dict[str, list[Path]] = defaultdict(list)
    for path, model in models.items():
        groups[preprocessing_key(model)].append(path)
    views = [False, True] if tta == "flip" else [False]
    per_model: dict[Path, list[np.ndarray]] = {}
    for paths in groups.values():
        probs = predict_group([models[p] for p in paths], frame, views, cfg, data_dir)
        per_model.update(zip(paths, probs, strict=True))
    out = pd.DataFrame({"ImageID": frame["ImageID"].tolist()})
    merged = {}
    for task, paths in checkpoints.items():
        # TTA views averaged per model; a multihead model's columns of this task
        stacked = np.stack([np.mean(per_model[p], axis=0)[:, models[p].head_slices()[task]] for p in paths])
        merged[task] = merge(stacked, ensemble)
        for k in range(merged[task].shape[1]):
            out[f"{task}_{k}"] = merged[task][:, k]
        log.info("%s: %d checkpoint(s) x %d view(s), %s ensemble", task, len(paths), len(views), ensemble)
    _, out["ans"] = combine_heads(merged["mask"], merged["gender"], merged["age"])
    return out, data_dir


def write_csv(frame: pd.DataFrame, path: Path) -> None:
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False, float_format="%.6f")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--exp", help="experiment name (runs/<exp>/); default: the config's exp")
    p.add_argument("--ensemble", default="soft", choices=["soft", "hard", "none"])
    p.add_argument("--tta", default="flip", choices=["none", "flip"])
    p.add_argument("--folds", help="comma-separated fold names, e.g. 0,1,2 or full (default: every fold found)")
    p.add_argument("--data-dir", help="data holding eval/ (default: the checkpoints' data.dir)")
    p.add_argument("--out", help="submission file (default: runs/<exp>/submission.csv)")
    p.add_argument("--oof", action="store_true", help="score the out-of-fold predictions instead")
    p.add_argument("--batch-size", type=int, help="images per batch (default: loader.batch_size)")
    p.add_argument("--workers", type=int, help="DataLoader workers (default: loader.num_workers)")
    p.add_argument("--wandb", choices=["auto", "online", "offline", "disabled"], help="log the OOF report")
    p.add_argument("--config", action="append", default=[], metavar="FILE")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--debug", action="store_true", help="show tracebacks for data and config errors")
    return p


def write_oof_report(cfg: Config, exp_dir: Path) -> dict:
    """Score the experiment's out-of-fold predictions; write oof_scores.json and oof_confusion.png, and log
    them to W&B when it is on."""
    report = score_oof(exp_dir, exp_dir / "oof_confusion.png")
    write_text_atomic(exp_dir / "oof_scores.json", json.dumps(report, indent=2))
    log_report(cfg, "oof", report, {"oof/confusion_matrix": exp_dir / "oof_confusion.png"})
    print(
        f"out-of-fold: 18-class macro F1 {report['f1']:.4f}, accuracy {report['accuracy']:.4f} over "
        f"{report['images']} images; per-task F1 {report['task_f1']}\n"
        f"scores: {exp_dir / 'oof_scores.json'}; confusion matrix: {exp_dir / 'oof_confusion.png'}"
    )
    return report


def write_submission(
    cfg: Config,
    exp_dir: Path,
    ensemble: str = "soft",
    tta: str = "flip",
    folds: list[str] | None = None,
    data_dir: str | None = None,
    out: Path | None = None,
) -> dict:
    """Predict eval/, write the submission and the per-head probabilities; score them when truth/ exists."""
    probs, data_dir = predict_eval(cfg, exp_dir, data_dir, ensemble, tta, folds)
    out = out or exp_dir / "submission.csv"
    probs_out = out.with_name(out.stem + "_probs.csv")
    write_csv(probs[["ImageID", "ans"]], out)
    write_csv(probs, probs_out)
    print(f"submission: {out} ({len(probs)} images); per-head probabilities: {probs_out}")
    report = {"submission": str(out), "images": len(probs)}
    truth = data_dir / "truth" / "eval_answers.csv"
    if truth.is_file():
        report["eval"] = score_predictions(probs, pd.read_csv(truth))
        print(f"eval vs {truth}: macro F1 {report['eval']['f1']:.4f}, accuracy {report['eval']['accuracy']:.4f}")
    write_text_atomic(exp_dir / "predict_report.json", json.dumps(report, indent=2))
    return report


def run(args: argparse.Namespace) -> dict:
    cfg = load_config(None, args.config, args.set)
    if args.wandb:
        cfg.wandb.mode = args.wandb
    exp = args.exp or cfg.exp
    exp_dir = Path(cfg.runs_dir) / exp
    if not exp_dir.is_dir():
        raise DataError(f"experiment {exp_dir} does not exist: train first (python train.py --exp {exp})")
    if args.batch_size:
        cfg.loader.batch_size = args.batch_size
    if args.workers is not None:
        cfg.loader.num_workers = args.workers
    if args.oof:
        return write_oof_report(cfg, exp_dir)
    folds = args.folds.split(",") if args.folds else None
    out = Path(args.out) if args.out else None
    return write_submission(cfg, exp_dir, args.ensemble, args.tta, folds, args.data_dir, out)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    return run_cli(lambda: run(args), args.debug)


if __name__ == "__main__":
    sys.exit(main())
