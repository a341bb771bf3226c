"""Where a model runs and at what precision. The choices are pure functions of the settings and the device's facts
(passed in, so every CUDA branch is tested on a CPU); :func:`cuda_facts` reads those facts once. Training
(``train.py``) and prediction (``inference/models.py``) both choose here, so a checkpoint is predicted at the
precision it was trained at, and ``trainer.precision``, ``trainer.channels_last`` and ``trainer.compile`` run
wherever they are asked for, CPU included."""

from __future__ import annotations

import logging
import os
import shutil

import torch

from configs.config import Config
from core.errors import ConfigError
from lightning_modules.base import ClassifierModule
from lightning_modules.optim import accumulation

log = logging.getLogger(__name__)
AUTOCAST = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}  # the mixed precisions' compute types


def cuda_facts() -> tuple[bool, bool]:
    """(a CUDA device is visible, it computes in bfloat16 natively): Ampere or newer, not a V100 or T4, which
    only emulate it, slowly."""
    available = torch.cuda.is_available()
    if not available:
        return False, False
    try:
        return True, torch.cuda.is_bf16_supported(including_emulation=False)
    except TypeError:  # torch before 2.4 has no such argument and counts no emulation
        return True, torch.cuda.is_bf16_supported()


def train_precision(setting: str, cuda: bool, bf16_supported: bool) -> str:
    """Lightning's precision for ``trainer.precision``: ``auto`` is bf16-mixed on a CUDA device with bfloat16,
    16-mixed (float16 with loss scaling) on one without (V100, T4), 32-true on CPU; ``32`` is 32-true."""
    if setting == "auto":
        if not cuda:
            return "32-true"
        if bf16_supported:
            return "bf16-mixed"
        log.info("precision: this GPU has no native bfloat16 (a V100 or T4): training at 16-mixed (float16)")
        return "16-mixed"
    return "32-true" if setting == "32" else setting


def predict_precision(trained: str | None, setting: str, cuda: bool, bf16_supported: bool) -> str:
    """The precision to predict a checkpoint at: the one it was ``trained`` at (32 stays 32), or for a checkpoint
    that did not record it its ``trainer.precision`` ``setting`` chosen for this device; bf16-mixed becomes
    16-mixed on a CUDA device without bfloat16, and 16-mixed becomes bf16-mixed on a CPU (as Lightning does)."""
    precision = train_precision(setting, cuda, bf16_supported) if trained is None else trained
    if precision == "bf16-mixed" and cuda and not bf16_supported:
        log.info("precision: this GPU has no native bfloat16: predicting a bf16-mixed model at 16-mixed (float16)")
        return "16-mixed"
    if precision == "16-mixed" and not cuda:
        return "bf16-mixed"
    return precision


def channels_last(setting: bool | None, cuda: bool) -> bool:
    """Whether weights and batches use the channels_last memory format: ``trainer.channels_last``, or when it is
    unset (null) on CUDA only, where convolutions run faster so."""
    return cuda if setting is None else setting


def trainer_hardware(cfg: Config, cuda_available: bool, bf16_supported: bool) -> dict:
    """The Trainer's accelerator, devices, strategy, precision, accumulation (keeping the effective batch) and
    cuDNN benchmark (on CUDA, unless ``trainer.deterministic``: its fastest algorithm may differ run to run)."""
    t = cfg.trainer
    cuda = t.accelerator in ("gpu", "cuda") or (t.accelerator == "auto" and cuda_available)
    return {
        "accelerator": "gpu" if cuda else "cpu",
        "devices": t.devices,
        "num_nodes": t.num_nodes,
        "strategy": t.strategy,
        "precision": train_precision(t.precision, cuda, bf16_supported),
        "accumulate_grad_batches": accumulation(t.effective_batch, cfg.loader.batch_size, t.devices * t.num_nodes),
        "benchmark": cuda and not t.deterministic,
    }


def cpu_compiler() -> str | None:
    """The C++ compiler torch.compile builds CPU kernels with (torch's own search: ``$CXX``, then g++ and
    clang++), or None when there is none."""
    try:
        from torch._inductor.cpp_builder import get_cpp_compiler  # torch's search, loaded only when compiling
    except ImportError:  # torch before 2.5: the same order, by hand
        return next(filter(None, (shutil.which(c) for c in (os.environ.get("CXX", ""), "g++", "clang++") if c)), None)
    try:
        return get_cpp_compiler()
    except Exception:  # noqa: BLE001 - any failure of the search means no usable compiler
        return None


def ready_for_device(model: ClassifierModule, use_channels_last: bool, compile: bool, cuda: bool) -> ClassifierModule:
    """``model`` with its weights (and from then on its batches) in channels_last memory when asked, and with its
    backbone compiled in place (the checkpoint's parameter names stay the same) when ``compile``. A ConfigError
    when compiling on a CPU without a C++ compiler."""
    if compile and not cuda and cpu_compiler() is None:
        raise ConfigError(
            "trainer.compile=true on a CPU needs a C++ compiler (torch.compile builds its CPU kernels with one): "
            "install g++ (or set CXX), or set trainer.compile=false"
        )
    if use_channels_last:
        model = model.to(memory_format=torch.channels_last)
    model.channels_last = use_channels_last
    if compile:
        model.backbone_module().compile()
    return model


def autocast(model: ClassifierModule) -> torch.autocast:
    """The autocast context that runs ``model`` at its :attr:`~ClassifierModule.precision` on its device (none
    at 32-true)."""
    dtype = AUTOCAST.get(model.precision)
    return torch.autocast(model.device.type, dtype=dtype or torch.float32, enabled=dtype is not None)


def effective_batch(cfg: Config, hw: dict) -> int:
    """The effective batch the chosen accumulation gives; a warning naming it when it is not the asked one
    (``trainer.effective_batch`` not a multiple of devices x batch: the nearest one is trained with)."""
    effective = hw["devices"] * hw["num_nodes"] * cfg.loader.batch_size * hw["accumulate_grad_batches"]
    if effective != cfg.trainer.effective_batch:
        log.warning(
            "trainer.effective_batch %d is not a multiple of %d device(s) x batch %d: training with the nearest, "
            "an effective batch of %d (accumulation %d)",
            cfg.trainer.effective_batch,
            hw["devices"] * hw["num_nodes"],
            cfg.loader.batch_size,
            effective,
            hw["accumulate_grad_batches"],
        )
    return effective
