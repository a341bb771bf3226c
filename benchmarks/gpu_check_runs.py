"""The sizes of ``benchmarks/gpu_check.py`` (the GPU run, the CPU rehearsal, the test's tiny run) and its timed
runs: each a thin wrapper over ``benchmarks/speed.py`` and ``speed_baselines.py`` for one training variant."""

from __future__ import annotations

import copy
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from speed import e2e_section, predict_section
from speed_baselines import model_only_inference, model_only_train, naive_e2e

import train
from configs.config import Config
from datamodules.datamodule import loader_workers
from rundir.layout import OOF_SCORES, exp_dir


@dataclass(frozen=True)
class Variant:
    """One way to train: bf16 autocast or fp32, channels_last or not, the backbone compiled or not."""

    name: str
    bf16: bool
    channels_last: bool
    compile: bool


VARIANTS = {
    v.name: v
    for v in (
        Variant("fp32", False, False, False),
        Variant("bf16", True, False, False),
        Variant("bf16_channels_last", True, True, False),
        Variant("bf16_channels_last_compile", True, True, True),
    )
}
DEFAULT_VARIANT = "bf16_channels_last"  # what train.py does on CUDA unless trainer.compile is set

GPU_BUDGET_S = 480.0  # the whole GPU check: about 8 minutes on an H100
# each section's time box (seconds) on the GPU and in the CPU rehearsal (where bf16 is slow)
GPU_BOXES = {"cuda_tests": 150, "data": 120, "model_only": 45, "loader": 60, "e2e": 75, "naive": 45}
GPU_BOXES |= {"predict": 60, "seed_run": 150, "compile": 150}
TOY_BOXES = GPU_BOXES | {"model_only": 30, "loader": 30, "e2e": 60, "naive": 30, "predict": 30, "seed_run": 90}
TOY_BOXES |= {"compile": 60}


@dataclass
class Sizes:
    """How big and how long: the data set, the model and images, the steps timed, the time boxes (seconds)."""

    mode: str = "gpu"
    people: int = 1000  # train people of the synthetic set (7 images each); fold 0 trains on 4/5 of them
    eval_people: int = 300
    image: tuple[int, int] = (384, 512)  # width x height, as the competition's photos
    backbone: str = "resnext50_32x4d"  # the seed's
    resize: tuple[int, int] = (512, 384)  # height, width
    crop: int = 304
    batch: int = 128
    effective_batch: int = 256
    workers: int = -1  # every usable core but one
    warmup_steps: int = 10
    steps: int = 30
    loader_warmup: int = 5
    loader_batches: int = 20
    e2e_skip: int = 8  # training batches before the end-to-end timer starts
    limit_train_batches: float = 1.0  # share of each epoch trained (end to end and the seed run)
    stage_images: int = 256
    stage_seconds: float = 2.0
    predict_batch: int = 256
    seed_epochs: int = 2
    compile_backend: str = "inductor"
    budget_s: float = GPU_BUDGET_S
    boxes: dict = field(default_factory=lambda: dict(GPU_BOXES))
    box_scale: float = 1.0  # a budget other than the preset's scales the boxes with it

    @classmethod
    def preset(cls, mode: str) -> Sizes:
        """``gpu``: the seed's model at 304 px; ``rehearse``: toy sizes on CPU, under 3 minutes on 2 cores;
        ``tiny``: smaller still, for the test."""
        if mode == "gpu":
            return cls()
        toy = dict(image=(48, 64), backbone="test_resnet", resize=(64, 48), crop=48, batch=16, effective_batch=32)
        # few steps: bf16 autocast on a CPU is several times slower than fp32
        toy |= dict(workers=1, warmup_steps=1, steps=2, loader_warmup=1, loader_batches=2, e2e_skip=2)
        toy |= dict(limit_train_batches=0.3, stage_images=32, stage_seconds=0.3, predict_batch=32, seed_epochs=1)
        # the eager backend: dynamo without code generation, seconds rather than minutes on a CPU
        toy |= dict(compile_backend="eager", boxes=dict(TOY_BOXES))
        if mode == "rehearse":
            return cls(mode=mode, people=60, eval_people=10, budget_s=170.0, **toy)
        toy |= dict(image=(24, 32), resize=(32, 24), crop=24, batch=8, effective_batch=16)
        return cls(mode=mode, people=30, eval_people=2, budget_s=80.0, **toy)

    def settings(self) -> list[str]:
        """The config overrides that give these sizes (from scratch: the GPU machine has no network)."""
        return [
            f"model.backbone={self.backbone}",
            "model.pretrained=false",
            f"augment.resize_height={self.resize[0]}",
            f"augment.resize_width={self.resize[1]}",
            f"augment.crop={self.crop}",
            f"loader.batch_size={self.batch}",
            f"loader.num_workers={self.workers}",
            f"trainer.effective_batch={self.effective_batch}",
            *([f"trainer.limit_train_batches={self.limit_train_batches}"] if self.limit_train_batches < 1 else []),
        ]

    def box(self, section: str) -> float:
        """The time box of ``section``, scaled with the budget (but for the CUDA tests, which run alongside a
        CPU rehearsal, and the data, without which nothing else can run)."""
        if section in ("cuda_tests", "data"):
            return self.boxes[section]
        return self.boxes[section] * self.box_scale

    def with_budget(self, budget_s: float) -> None:
        """Another budget for the whole check; the sections' boxes scale with it."""
        self.box_scale *= budget_s / self.budget_s
        self.budget_s = budget_s


def _described(result: dict, variant: Variant, memory_format_cl: bool, **extra) -> dict:
    precision = "bf16-mixed" if variant.bf16 else "32"
    memory = "channels_last" if memory_format_cl else "contiguous"
    return {**result, "precision": precision, "memory_format": memory, **extra}


def model_only(cfg: Config, mean, std, variant: Variant, sizes: Sizes) -> dict:
    """Training images/s of the model alone on random uint8 batches already on the device."""
    backend = sizes.compile_backend if variant.compile else None
    result = model_only_train(
        cfg, mean, std, variant.bf16, variant.channels_last, sizes.warmup_steps, sizes.steps, compile_backend=backend
    )
    return _described(result, variant, variant.channels_last, compile_backend=backend)


def e2e(cfg: Config, variant: Variant, sizes: Sizes) -> dict:
    """Training images/s of ``train.train`` itself (the project's loader, DataModule, Trainer) on fold 0."""
    cuda = torch.cuda.is_available()
    if variant.bf16 and not variant.channels_last:
        return {"skipped": "train.py has no bf16 contiguous mode (channels_last on CUDA): see bf16_channels_last"}
    if variant.compile and not cuda:
        return {"skipped": "train.py compiles on CUDA only: on CPU this is the bf16_channels_last run"}
    cfg = copy.deepcopy(cfg)
    cfg.exp = f"e2e-{variant.name}"
    cfg.trainer.precision = "bf16-mixed" if variant.bf16 else "32"
    cfg.trainer.compile = variant.compile
    result = e2e_section(cfg, sizes.e2e_skip)
    return _described(result, variant, cuda, compiled=variant.compile and cuda)


def naive(files: list[str], cfg: Config, mean, std, variant: Variant, sizes: Sizes) -> dict:
    """Training images/s of the same model fed by the naive PIL + torchvision loader (the seed's pipeline)."""
    workers = loader_workers(cfg)
    result = naive_e2e(
        files, cfg, mean, std, workers, sizes.loader_warmup, sizes.loader_batches, variant.bf16, variant.channels_last
    )
    return _described(result, variant, variant.channels_last)


def predict(cfg: Config, mean, std, variant: Variant, sizes: Sizes) -> dict:
    """Prediction images/s: the model alone on the device, and ``predict_group`` with flip TTA (two views of
    every image) on the end-to-end run's checkpoint."""
    alone = model_only_inference(cfg, mean, std, sizes.predict_batch, sizes.warmup_steps, sizes.steps)
    cfg = copy.deepcopy(cfg)
    cfg.exp = f"e2e-{variant.name}"
    try:
        tta = predict_section(cfg, sizes.predict_batch)
        tta["images_per_s"] = round(tta["img_per_s"] / tta["views"], 1)
    except Exception as exc:  # e.g. no checkpoint: the end-to-end run failed; the model alone still counts
        tta = {"error": f"{type(exc).__name__}: {exc}"}
    return {"model_only": alone, "flip_tta": tta}


def seed_run(cfg: Config, sizes: Sizes, work: Path) -> dict:
    """The README's main job with the seed recipe (resnext50_32x4d at 304 px on the GPU), a few epochs: train
    mask, gender and age on fold 0, then the out-of-fold score with flip TTA and the submission."""
    argv = ["--fold", "0", "--predict", "--data-dir", cfg.data.dir, "--exp", "seed", "--wandb", "disabled"]
    argv += ["--overwrite", "--set", f"trainer.max_epochs={sizes.seed_epochs}", "--set", "trainer.progress_bar=false"]
    for setting in [f"runs_dir={cfg.runs_dir}", f"data.cache_dir={cfg.data.cache_dir}", *sizes.settings()]:
        argv += ["--set", setting]
    start = time.perf_counter()
    code = train.main(argv)
    seconds = time.perf_counter() - start
    scores = exp_dir(cfg.runs_dir, "seed") / OOF_SCORES
    oof = json.loads(scores.read_text()) if scores.is_file() else {}
    return {
        "command": "python train.py " + " ".join(argv),
        "exit_code": code,
        "epochs": sizes.seed_epochs,
        "seconds": round(seconds, 1),
        "oof_f1": oof.get("f1"),
        "oof_accuracy": oof.get("accuracy"),
        "oof_task_f1": oof.get("task_f1"),
        "oof_images": oof.get("images"),
    }
