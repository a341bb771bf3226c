"""On a CUDA device (``pytest -m cuda``; skipped elsewhere): the device's own precision and cuDNN choices, and one
short fold trained, resumed and predicted with bf16-mixed, channels_last and torch.compile together, checked
against the same weights run eagerly in fp32. Each takes seconds to a minute on a GPU."""

from __future__ import annotations

import pytest
import torch
from fold_check import check_names_and_predictions, train_resume_predict

import train
from configs.config import load_config
from lightning_modules.hardware import cuda_facts

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


def test_auto_trains_at_bf16_where_the_gpu_has_it_else_16_mixed_with_the_cudnn_benchmark():
    hw = train.hardware(load_config(None, [], []))
    assert hw["accelerator"] == "gpu" and hw["benchmark"] is True
    assert hw["precision"] == ("bf16-mixed" if cuda_facts()[1] else "16-mixed")
    assert train.hardware(load_config(None, [], ["trainer.deterministic=true"]))["benchmark"] is False


def test_a_bf16_channels_last_compiled_fold_trains_resumes_and_predicts_on_the_gpu(layout, tmp_path):
    precision = "bf16-mixed" if cuda_facts()[1] else "16-mixed"
    run = train_resume_predict(layout, tmp_path, f"trainer.precision={precision}", "trainer.compile=true")
    seen = run["seen"]
    assert seen.precision == precision and seen.channels_last and seen.compiled  # channels_last: CUDA's default
    assert run["checkpoint"]["precision"] == precision
    assert run["model"].precision == precision and run["model"].channels_last and run["model"].device.type == "cuda"
    check_names_and_predictions(run, atol=0.05)


def test_a_fold_trained_at_32_is_predicted_at_32_on_the_gpu(layout, tmp_path):
    run = train_resume_predict(layout, tmp_path, "trainer.precision=32")
    assert run["checkpoint"]["precision"] == "32-true" and run["model"].precision == "32-true"
    check_names_and_predictions(run, atol=2e-3)  # as in fp32 (cuDNN's TF32 convolutions aside)
