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
  training batches after a warm-up; ``predict``: ``predict.predict_group`` with flip TTA (two views).
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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import pytorch_lightning as pl  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402
from torch.utils.data import DataLoader, Dataset  # noqa: E402

import predict  # noqa: E402
import train  # noqa: E402
from configs.config import Config, load_config  # noqa: E402
from datamodules.cache import usable_cpus  # noqa: E402
from datamodules.datamodule import MaskDataModule, loader_workers  # noqa: E402
from datamodules.layout import read_eval  # noqa: E402
from datamodules.prepare import eval_cache, prepare  # noqa: E402
from datamodules.transforms import normalize  # noqa: E402
from lightning_modules.optim import accumulation, build_optimizer  # noqa: E402
from lightning_modules.task_module import TaskModule  # noqa: E402


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def peak_gpu_gib() -> float | None:
    return round(torch.cuda.max_memory_allocated() / 2**30, 2) if torch.cuda.is_available() else None


def host_gib() -> dict:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20
    return {"peak_host_gib_main": round(own, 2), "peak_host_gib_largest_child": round(children, 2)}


class Results:
    def __init__(self, out: Path, device: str):
        self.path = out / f"{device}.json"
        self.data: dict = {}

    def section(self, name: str, fn, *args, **kwargs):
        print(f"--- {name}", flush=True)
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
        self.data[name] = value
        self.save()
        print(json.dumps(value, indent=1), flush=True)
        return value

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=2))
        tmp.replace(self.path)


# ------------------------------------------------------------------------------------------ model only


def model_only_train(cfg: Config, mean, std, bf16: bool, channels_last: bool, warmup: int, steps: int) -> dict:
    """Images/s of forward + loss + backward (+ MADGRAD every ``accumulate`` batches) on random uint8 batches."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    module = TaskModule("age", cfg.to_dict(), mean, std, class_counts=[1, 1, 1]).to(device)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    net = module.model.to(memory_format=fmt)
    optimizer = build_optimizer(net.parameters(), cfg.optim)
    batch = cfg.loader.batch_size
    accumulate = accumulation(cfg.trainer.effective_batch, batch, 1)
    crop = cfg.augment.crop
    images = torch.randint(0, 256, (batch, 3, crop, crop), dtype=torch.uint8, device=device)
    labels = torch.randint(0, 3, (batch,), device=device)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)

    def step(i: int) -> None:
        x = normalize(images, module.pixel_mean, module.pixel_std).contiguous(memory_format=fmt)
        with autocast:
            loss = module.criterion(net(x), labels) / accumulate
        loss.backward()
        if (i + 1) % accumulate == 0:
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

    for i in range(warmup):
        step(i)
    sync()
    start = time.perf_counter()
    for i in range(steps):
        step(i)
    sync()
    seconds = time.perf_counter() - start
    return {"img_per_s": round(steps * batch / seconds, 1), "batch": batch, "accumulate": accumulate}


@torch.inference_mode()
def model_only_inference(cfg: Config, mean, std, batch: int, warmup: int, steps: int) -> dict:
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    module = TaskModule("age", cfg.to_dict(), mean, std).to(device).eval()
    if device.type == "cuda":
        module = module.to(memory_format=torch.channels_last)
    crop = cfg.augment.crop
    images = torch.randint(0, 256, (batch, 3, crop, crop), dtype=torch.uint8, device=device)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")
    out = []
    for i in range(warmup + steps):
        if i == warmup:
            sync()
            start = time.perf_counter()
        with autocast:
            out.append(module(images).float().softmax(1))
    sync()
    return {"img_per_s": round(steps * batch / (time.perf_counter() - start), 1), "batch": batch}


# --------------------------------------------------------------------------------------- naive pipeline


class NaiveDataset(Dataset):
    """The seed's way: PIL decode and torchvision transforms on every image, every epoch."""

    def __init__(self, files: list[str], cfg: Config, mean, std):
        from torchvision import transforms as T

        a = cfg.augment
        self.files = files
        self.transform = T.Compose(
            [
                T.Resize((a.resize_height, a.resize_width)),
                T.CenterCrop(a.crop),
                T.RandomChoice([T.RandomHorizontalFlip(1.0), T.RandomVerticalFlip(1.0), T.RandomRotation(30)]),
                T.RandomChoice(
                    [
                        T.ColorJitter(brightness=0.2, contrast=0.2),
                        T.ColorJitter(saturation=0.2, hue=0.05),
                        T.ColorJitter(0.2, 0.2, 0.2, 0.05),
                        T.Grayscale(3),
                    ]
                ),
                T.ToTensor(),
                T.Normalize(mean, std),
                T.RandomErasing(p=0.5),
            ]
        )

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int):
        with Image.open(self.files[i]) as img:
            return self.transform(img.convert("RGB")), 0


def naive_loader(files, cfg, mean, std, workers: int) -> DataLoader:
    return DataLoader(
        NaiveDataset(files, cfg, mean, std),
        batch_size=cfg.loader.batch_size,
        shuffle=True,
        num_workers=workers,
        pin_memory=torch.cuda.is_available(),
        persistent_workers=False,
        prefetch_factor=4,
    )


def loader_rate(loader: DataLoader, warmup: int, batches: int, consume=None) -> float:
    """Images/s over ``batches`` batches after ``warmup`` (workers started, queues filled)."""
    it = iter(loader)
    for _ in range(warmup):
        images, _ = next(it)
        if consume:
            consume(images)
    sync()
    start = time.perf_counter()
    n = 0
    for _ in range(batches):
        images, _ = next(it)
        if consume:
            consume(images)
        n += len(images)
    sync()
    del it
    return round(n / (time.perf_counter() - start), 1)


def naive_e2e(files, cfg, mean, std, workers: int, warmup: int, batches: int) -> dict:
    """The seed's way end to end: fp32 NCHW model fed by the PIL/torchvision loader."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    module = TaskModule("age", cfg.to_dict(), mean, std, class_counts=[1, 1, 1]).to(device)
    net = module.model
    optimizer = build_optimizer(net.parameters(), cfg.optim)
    accumulate = accumulation(cfg.trainer.effective_batch, cfg.loader.batch_size, 1)
    labels = torch.randint(0, 3, (cfg.loader.batch_size,), device=device)
    state = {"i": 0}

    def consume(images: torch.Tensor) -> None:
        images = images.to(device, non_blocking=True)
        loss = module.criterion(net(images), labels[: len(images)]) / accumulate
        loss.backward()
        state["i"] += 1
        if state["i"] % accumulate == 0:
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

    rate = loader_rate(naive_loader(files, cfg, mean, std, workers), warmup, batches, consume)
    return {"img_per_s": rate, "workers": workers, "batch": cfg.loader.batch_size}


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


def predict_section(cfg: Config, exp_dir: Path, batch: int) -> dict:
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = predict.load_model(exp_dir / "age" / "fold0" / "best.ckpt", device)
    cfg = copy.deepcopy(cfg)
    cfg.loader.batch_size = batch
    frame = read_eval(Path(cfg.data.dir))
    start = time.perf_counter()
    eval_cache(cfg, Path(cfg.data.dir), frame["file"].tolist(), model.cfg.augment)
    cache_seconds = time.perf_counter() - start
    start = time.perf_counter()
    predict.predict_group([model], frame, [False, True], cfg, Path(cfg.data.dir))
    seconds = time.perf_counter() - start
    return {
        "img_per_s": round(2 * len(frame) / seconds, 1),
        "images": len(frame),
        "views": 2,
        "batch": batch,
        "eval_cache_build_seconds": round(cache_seconds, 1),
    }


def seed_experiment(data_dir: str, runs: Path, extra: list[str]) -> dict:
    common = ["--exp", "seed", "--set", f"runs_dir={runs}", "--set", "trainer.progress_bar=false", *extra]
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
    p.add_argument("--people", type=int, default=2700, help="train people to generate when --data-dir is missing")
    p.add_argument("--eval-people", type=int, default=1800)
    p.add_argument("--size", default="384x512")
    p.add_argument("--steps", type=int, default=20, help="timed steps of each model-only measurement")
    p.add_argument("--loader-batches", type=int, default=10)
    p.add_argument("--warmup-batches", type=int, default=10, help="training batches before the e2e timer starts")
    p.add_argument("--skip", default="", help="comma-separated sections to skip")
    p.add_argument("--set", action="append", default=[], help="config overrides (e.g. for a CPU smoke run)")
    args = p.parse_args(argv)
    skip = set(filter(None, args.skip.split(",")))
    torch.backends.cudnn.benchmark = True
    work = Path(args.work)
    cfg = load_config("age", [], [f"data.dir={args.data_dir}", f"data.cache_dir={work / 'cache'}", *args.set])
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
        from datamodules.synthetic import generate

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
        results.section("predict", predict_section, cfg, Path(cfg.runs_dir) / cfg.exp, 256)
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
