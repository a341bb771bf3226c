"""Training and prediction speed on one GPU, side by side with the model alone and the naive pipeline.

    python benchmarks/speed.py --data-dir data/synthetic --out benchmarks/results

Everything is measured in this one process, on one device, and written to ``<out>/<device>.json`` after
each section (a section that fails records its error and the others still run):

- ``model_only``: the default recipe's model, loss, MADGRAD and gradient accumulation on random uint8 batches
  already on the GPU (fp32 NCHW, bf16 NCHW, bf16 channels_last), and bf16 channels_last inference.
- ``naive_loader``: a plain PIL + torchvision DataLoader running the seed's transforms on the JPEGs, at 4, 8
  and all-but-one workers; ``naive_e2e``: that loader feeding the fp32 NCHW model (the seed's way).
- ``prepare_with_train_cache_seconds``: image check, folds and the uint8 training cache, built from scratch;
  ``project_loader``: the project's training DataLoader alone.
- ``e2e``: ``train.train`` (DataModule, TaskModule, Trainer, default recipe) on one fold, timed over the
  training batches after a warm-up; ``predict``: ``inference.predictor.predict_group`` with flip TTA (two views).
- ``seed_experiment``: ``train.py --task all --fold all`` for 1 epoch then ``predict.py --ensemble soft
  --tta flip``, wall clock.

The synthetic data is generated first when ``--data-dir`` does not exist (competition size by default).
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import re
import resource
import shutil
import sys
import time
import traceback
from pathlib import Path

import pytorch_lightning as pl
import torch
from speed_baselines import loader_rate, model_only_inference, model_only_train, naive_e2e, naive_loader, sync

import predict
import train
from configs.config import Config, SyntheticConfig, load_config
from datamodules.cache import usable_cpus
from datamodules.datamodule import MaskDataModule, loader_workers
from datamodules.layout import read_eval
from datamodules.prepare import eval_cache, prepare
from inference.models import load_model
from inference.predictor import predict_group
from lightning_modules.optim import accumulation
from rundir.layout import BEST_CKPT, run_dir
from synthetic import generate

ROOT = Path(__file__).resolve().parents[1]


def peak_gpu_gib() -> float | None:
    return round(torch.cuda.max_memory_allocated() / 2**30, 2) if torch.cuda.is_available() else None


def host_gib() -> dict:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20
    return {"peak_host_gib_main": round(own, 2), "peak_host_gib_largest_child": round(children, 2)}


def measured(fn, *args, **kwargs):
    """``fn``'s result, its dict given the section's seconds and the GPU's peak memory; its error as a dict
    instead when it fails, so that one failing section never stops the others."""
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    try:
        value = fn(*args, **kwargs)
    except Exception as exc:  # record it, go on with the other sections
        traceback.print_exc()
        value = {"error": f"{type(exc).__name__}: {exc}"}
    if isinstance(value, dict):
        value.setdefault("section_seconds", round(time.perf_counter() - start, 1))
        value.setdefault("peak_gpu_gib", peak_gpu_gib())
    return value


class Results:
    def __init__(self, out: Path, device: str):
        self.path = out / f"{device}.json"
        self.data: dict = {}

    def section(self, name: str, fn, *args, **kwargs):
        print(f"--- {name}", flush=True)
        value = measured(fn, *args, **kwargs)
        self.data[name] = value
        self.save()
        print(json.dumps(value, indent=1), flush=True)
        return value

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=2))
        tmp.replace(self.path)


# ------------------------------------------------------------------------------------------ the project


class TrainTimer(pl.Callback):
    """Images/s over the training batches after ``skip`` warm-up batches, to the last training batch."""

    def __init__(self, skip: int):
        self.skip = skip
        self.images = 0
        self.start = self.end = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if batch_idx == self.skip and self.start is None:
            sync()
            self.start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if self.start is not None and self.end is None:
            self.images += len(batch[1])
            if batch_idx == trainer.num_training_batches - 1:
                sync()
                self.end = time.perf_counter()

    def rate(self) -> float:
        return round(self.images / (self.end - self.start), 1)


def project_loader(cfg: Config, warmup: int, batches: int) -> dict:
    dm = MaskDataModule(cfg, "age", 0, progress=False)
    dm.prepare_data()
    dm.setup("fit")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    rate = loader_rate(dm.train_dataloader(), warmup, batches, lambda x: x.to(device, non_blocking=True))
    return {"img_per_s": rate, "workers": loader_workers(cfg), "batch": cfg.loader.batch_size}


def e2e_section(cfg: Config, skip: int) -> dict:
    timer = TrainTimer(skip)
    start = time.perf_counter()
    train.train(cfg, "age", 0, overwrite=True, callbacks=[timer])
    return {
        "img_per_s": timer.rate(),
        "timed_images": timer.images,
        "job_seconds_incl_validation_checkpoints_oof": round(time.perf_counter() - start, 1),
        "batch": cfg.loader.batch_size,
        "accumulate": accumulation(cfg.trainer.effective_batch, cfg.loader.batch_size, 1),
        "workers": loader_workers(cfg),
    }


def predict_section(cfg: Config, batch: int) -> dict:
    """The e2e section's age model predicting eval/ in two views."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = load_model(run_dir(cfg.runs_dir, cfg.exp, "age", 0) / BEST_CKPT, device)
    cfg = copy.deepcopy(cfg)
    cfg.loader.batch_size = batch
    frame = read_eval(Path(cfg.data.dir))
    start = time.perf_counter()
    eval_cache(cfg, Path(cfg.data.dir), frame["file"].tolist(), model.cfg.augment)
    cache_seconds = time.perf_counter() - start
    start = time.perf_counter()
    predict_group([model], frame, [False, True], cfg, Path(cfg.data.dir))
    seconds = time.perf_counter() - start
    return {
        "img_per_s": round(2 * len(frame) / seconds, 1),
        "images": len(frame),
        "views": 2,
        "batch": batch,
        "eval_cache_build_seconds": round(cache_seconds, 1),
    }


def seed_experiment(data_dir: str, runs: Path, extra: list[str]) -> dict:
    # from scratch: the speed is the same, and a machine without network has no ImageNet weights
    common = ["--exp", "seed", "--set", f"runs_dir={runs}", "--set", "trainer.progress_bar=false", *extra]
    common += ["--set", "model.pretrained=false"]
    start = time.perf_counter()
    args = ["--task", "all", "--fold", "all", "--data-dir", data_dir, "--set", "trainer.max_epochs=1"]
    code = train.main([*args, "--overwrite", "--wandb", "disabled", *common])
    trained = time.perf_counter() - start
    code2 = predict.main(
        ["--ensemble", "soft", "--tta", "flip", "--data-dir", data_dir, "--wandb", "disabled", *common]
    )
    total = time.perf_counter() - start
    report = json.loads((runs / "seed" / "submission_report.json").read_text()) if code2 == 0 else {}
    return {
        "train_seconds": round(trained, 1),
        "predict_seconds": round(total - trained, 1),
        "total_seconds": round(total, 1),
        "exit_codes": [code, code2],
        "eval_vs_truth": report.get("eval"),
    }


def device_name() -> str:
    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return f"cpu-{usable_cpus()}core"


def slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", default="data/synthetic")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    p.add_argument("--work", default="runs/speed", help="runs and caches of the benchmark")
    default = SyntheticConfig()  # the competition-size synthetic set
    p.add_argument(
        "--people", type=int, default=default.people, help="train people to generate if --data-dir is missing"
    )
    p.add_argument("--eval-people", type=int, default=default.eval_people)
    p.add_argument("--size", default=f"{default.width}x{default.height}", help="WIDTHxHEIGHT of the generated set")
    p.add_argument("--steps", type=int, default=20, help="timed steps of each model-only measurement")
    p.add_argument("--loader-batches", type=int, default=10)
    p.add_argument("--warmup-batches", type=int, default=10, help="training batches before the e2e timer starts")
    p.add_argument("--skip", default="", help="comma-separated sections to skip")
    p.add_argument("--set", action="append", default=[], help="config overrides (e.g. for a CPU smoke run)")
    args = p.parse_args(argv)
    skip = set(filter(None, args.skip.split(",")))
    torch.backends.cudnn.benchmark = True
    work = Path(args.work)
    settings = [f"data.dir={args.data_dir}", f"data.cache_dir={work / 'cache'}", "model.pretrained=false", *args.set]
    cfg = load_config("age", [], settings)  # from scratch: no ImageNet weights needed to measure speed
    cfg.data.default_dir = cfg.data.dir
    cfg.runs_dir = str(work / "runs")
    cfg.exp = "e2e"
    cfg.wandb.mode = "disabled"
    cfg.trainer.progress_bar = False
    device = device_name()
    results = Results(Path(args.out), slug(device))
    results.data["environment"] = {
        "device": device,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.cuda.is_available() else None,
        "pytorch_lightning": pl.__version__,
        "python": platform.python_version(),
        "cpus": usable_cpus(),
        "date": time.strftime("%Y-%m-%d"),
    }
    results.data["settings"] = {
        "backbone": cfg.model.backbone,
        "crop": cfg.augment.crop,
        "resize": [cfg.augment.resize_height, cfg.augment.resize_width],
        "batch": cfg.loader.batch_size,
        "effective_batch": cfg.trainer.effective_batch,
        "optimizer": cfg.optim.name,
        "loss": cfg.loss.kind,
        "data": {"dir": args.data_dir, "people": args.people, "eval_people": args.eval_people, "size": args.size},
        "overrides": args.set,
    }
    if not Path(args.data_dir).exists():
        w, h = (int(v) for v in args.size.split("x"))
        start = time.perf_counter()
        generate(
            Path(args.data_dir),
            people=args.people,
            eval_people=args.eval_people,
            size=(w, h),
            seed=0,
            workers=usable_cpus(),
            progress=False,
        )
        results.data["data_generation_seconds"] = round(time.perf_counter() - start, 1)
    results.save()

    start = time.perf_counter()
    data = prepare(cfg, progress=False)  # checks the images, writes the folds, builds the training cache
    results.data["prepare_with_train_cache_seconds"] = round(time.perf_counter() - start, 1)
    mean, std = data.mean, data.std
    cuda = torch.cuda.is_available()
    steps, warm = args.steps, 8
    if "model_only" not in skip:
        variants = (("fp32_nchw", False, False), ("bf16_nchw", True, False), ("bf16_channels_last", True, cuda))
        for name, bf16, cl in variants:
            results.section(f"model_only_{name}", model_only_train, cfg, mean, std, bf16, cl, warm, steps)
        results.section("model_only_inference", model_only_inference, cfg, mean, std, 256, warm, steps)
    if "e2e" not in skip:
        results.section("e2e", e2e_section, cfg, args.warmup_batches)
    if "predict" not in skip:
        results.section("predict", predict_section, cfg, 256)
    train_files = [str(f) for f in data.images["file"]]
    workers_all = max(1, usable_cpus() - 1)
    if "naive" not in skip:
        if "naive_e2e" not in skip:
            results.section("naive_e2e", naive_e2e, train_files, cfg, mean, std, workers_all, 3, args.loader_batches)
        for w in sorted({4, 8, workers_all}):
            if w <= workers_all:
                results.section(
                    f"naive_loader_{w}_workers",
                    lambda w=w: {
                        "img_per_s": loader_rate(naive_loader(train_files, cfg, mean, std, w), 3, args.loader_batches),
                        "workers": w,
                    },
                )
    if "loader" not in skip:
        results.section("project_loader", project_loader, cfg, 3, args.loader_batches)
    ratios = {}
    d = results.data
    try:
        ratios["e2e_vs_model_only"] = round(d["e2e"]["img_per_s"] / d["model_only_bf16_channels_last"]["img_per_s"], 3)
        ratios["e2e_vs_naive"] = round(d["e2e"]["img_per_s"] / d["naive_e2e"]["img_per_s"], 3)
        ratios["predict_vs_model_only"] = round(d["predict"]["img_per_s"] / d["model_only_inference"]["img_per_s"], 3)
    except (KeyError, TypeError, ZeroDivisionError):
        pass
    d["ratios"] = ratios
    results.save()
    if "seed_experiment" not in skip:
        extra = [x for s in args.set for x in ("--set", s)] + ["--set", f"data.cache_dir={work / 'cache'}"]
        results.section("seed_experiment", seed_experiment, args.data_dir, work / "runs", extra)
    if "total_seconds" in d.get("seed_experiment", {}):
        built = d.get("prepare_with_train_cache_seconds", 0) + d.get("predict", {}).get("eval_cache_build_seconds", 0)
        d["seed_experiment"]["total_seconds_with_fresh_caches"] = round(
            d["seed_experiment"]["total_seconds"] + built, 1
        )
    d.update(host_gib())
    results.save()
    print(json.dumps({"ratios": d["ratios"], "file": str(results.path)}, indent=1))
    shutil.rmtree(work / "runs" / "seed", ignore_errors=True)  # checkpoints: gigabytes
    return 0


if __name__ == "__main__":
    sys.exit(main())
