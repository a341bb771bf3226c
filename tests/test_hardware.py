"""Precision, memory format and compilation: the choices for each device (the CUDA branches tested here on a CPU
by passing the device's facts), and one short fold trained, resumed and predicted on the CPU with
trainer.precision=bf16-mixed, trainer.channels_last=true and trainer.compile=true."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from conftest import tiny_config
from fold_check import check_names_and_predictions, train_resume_predict

import train
from configs.config import load_config
from core.errors import ConfigError
from lightning_modules import hardware
from lightning_modules.hardware import channels_last, cpu_compiler, predict_precision, train_precision


def fake_gpu(monkeypatch, bf16: bool) -> None:
    """This process sees a CUDA device, with or without native bfloat16 (an A100, or a V100 or T4)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: bf16)


@pytest.mark.parametrize(
    ("setting", "cuda", "bf16", "expected"),
    [
        ("auto", True, True, "bf16-mixed"),
        ("auto", True, False, "16-mixed"),  # V100, T4: float16 with loss scaling
        ("auto", False, False, "32-true"),
        ("32", True, True, "32-true"),
        ("bf16-mixed", False, False, "bf16-mixed"),  # asked for: on the CPU too
    ],
)
def test_the_training_precision_follows_the_setting_and_the_device(setting, cuda, bf16, expected):
    assert train_precision(setting, cuda, bf16) == expected


def test_auto_precision_falls_back_to_16_mixed_on_a_gpu_without_bfloat16(monkeypatch, caplog):
    cfg = load_config(None, [], [])
    fake_gpu(monkeypatch, bf16=False)
    with caplog.at_level(logging.INFO):
        assert train.hardware(cfg)["precision"] == "16-mixed"
    assert "no native bfloat16" in caplog.text
    fake_gpu(monkeypatch, bf16=True)
    assert train.hardware(cfg)["precision"] == "bf16-mixed"


def test_deterministic_turns_the_cudnn_benchmark_off(monkeypatch):
    fake_gpu(monkeypatch, bf16=True)
    assert train.hardware(load_config(None, [], []))["benchmark"] is True
    assert train.hardware(load_config(None, [], ["trainer.deterministic=true"]))["benchmark"] is False
    assert train.hardware(load_config(None, [], ["trainer.accelerator=cpu"]))["benchmark"] is False


@pytest.mark.parametrize(
    ("trained", "setting", "cuda", "bf16", "expected"),
    [
        ("32-true", "auto", True, True, "32-true"),  # trained at 32: predicted at 32 on a GPU too
        ("bf16-mixed", "bf16-mixed", False, False, "bf16-mixed"),  # on the CPU too
        ("bf16-mixed", "auto", True, False, "16-mixed"),  # a GPU without bfloat16
        ("16-mixed", "auto", False, False, "bf16-mixed"),  # a CPU has no float16 autocast worth having
        (None, "auto", True, True, "bf16-mixed"),  # a checkpoint that did not record it: its setting, here
        (None, "auto", False, False, "32-true"),
    ],
)
def test_a_checkpoint_is_predicted_at_the_precision_it_trained_at(trained, setting, cuda, bf16, expected):
    assert predict_precision(trained, setting, cuda, bf16) == expected


def test_channels_last_is_a_setting_with_cuda_as_its_default():
    assert channels_last(None, cuda=True) and not channels_last(None, cuda=False)
    assert channels_last(True, cuda=False) and not channels_last(False, cuda=True)


# ---------------------------------------------------------------- one short fold on the CPU


def test_a_bf16_mixed_fold_trains_resumes_and_predicts_at_bf16_on_the_cpu(layout, tmp_path):
    run = train_resume_predict(layout, tmp_path, "trainer.precision=bf16-mixed")
    assert run["seen"].precision == "bf16-mixed" and run["checkpoint"]["precision"] == "bf16-mixed"
    assert run["model"].precision == "bf16-mixed"
    check_names_and_predictions(run, atol=0.05)
    as_run, as_eager = run["predicted"]["eval"]
    assert not np.array_equal(as_run, as_eager)  # predicted at bf16, not silently at fp32


def test_a_channels_last_fold_trains_resumes_and_predicts_on_the_cpu(layout, tmp_path):
    run = train_resume_predict(layout, tmp_path, "trainer.channels_last=true")
    assert run["seen"].channels_last and run["seen"].precision == "32-true"
    assert run["checkpoint"]["precision"] == "32-true" and run["model"].precision == "32-true"
    assert run["model"].channels_last  # predicted in the format it trained in
    check_names_and_predictions(run, atol=1e-4)


@pytest.mark.skipif(cpu_compiler() is None, reason="torch.compile on a CPU needs a C++ compiler; none found")
def test_a_compiled_fold_trains_resumes_and_predicts_on_the_cpu(layout, tmp_path, monkeypatch):
    """The slowest test here: torch.compile builds C++ kernels, about 3.5 minutes on 2 busy cores the first time
    and under a minute once they are in torch's cache. The tiniest backbone, images and batches, all of one shape,
    and one compiler process."""
    monkeypatch.setattr("torch._inductor.config.compile_threads", 1)  # no pool of compiler processes on 2 cores
    run = train_resume_predict(layout, tmp_path, "trainer.compile=true")
    assert run["seen"].compiled and not run["seen"].channels_last
    check_names_and_predictions(run, atol=1e-4)


def test_compiling_on_a_cpu_without_a_cxx_compiler_is_a_one_line_error(layout, tmp_path, monkeypatch):
    monkeypatch.setattr(hardware, "cpu_compiler", lambda: None)
    cfg = tiny_config(layout, tmp_path / "cache", f"runs_dir={tmp_path / 'runs'}", "trainer.compile=true")
    with pytest.raises(ConfigError, match=r"trainer.compile=true on a CPU needs a C\+\+ compiler"):
        train.train(cfg, "gender", 0)
