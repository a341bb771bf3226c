"""benchmarks/gpu_check.py, the one script the GPU machine runs: rehearsed end to end on CPU at the smallest sizes,
so that a broken section shows here and not on a lent GPU; and the reading of its results."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.cuda_tests import finish, start
from benchmarks.loader_stages import targets

ROOT = Path(__file__).resolve().parent.parent
CUDA_TESTS = """
import pytest
import torch


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_on_the_gpu():
    assert torch.ones(1, device="cuda").item() == 1


def test_not_for_the_gpu():
    pass
"""
TRAIN_KINDS = ("model_only", "end_to_end", "naive")
VARIANTS = ("fp32", "bf16", "bf16_channels_last", "bf16_channels_last_compile")


def test_the_rehearsal_runs_every_section_and_writes_every_key(tmp_path):
    sample = tmp_path / "test_sample_cuda.py"
    sample.write_text(CUDA_TESTS)
    out = tmp_path / "out"
    command = [sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--out", str(out), "--tiny"]
    command += ["--budget-s", "300", "--cuda-tests", str(sample)]  # the budget: room for a busy machine
    run = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads((out / "gpu_check.json").read_text())
    assert sorted(p.name for p in out.iterdir()) == ["cuda_tests.log", "cuda_tests.xml", "gpu_check.json"]

    assert result["check"]["finished"] and result["check"]["mode"] == "tiny"
    env = result["environment"]
    assert env["device"] == "cpu" and env["cpu_count"] >= 1
    assert all(env[k] for k in ("python", "torch", "pytorch_lightning", "timm"))
    tests = result["cuda_tests"]  # collected and skipped on CPU, with the reason; the unmarked test deselected
    assert (tests["outcome"], tests["collected"], tests["skipped"]) == ("all skipped", 1, 1)
    assert tests["skip_reasons"] == {"needs a CUDA GPU": 1}

    failed = {}
    for variant in VARIANTS:
        for kind in TRAIN_KINDS:
            entry = result["train"][variant][kind]
            if "error" in entry or not (entry.get("img_per_s", 0) > 0 or "skipped" in entry):
                failed[f"{variant}.{kind}"] = entry
    assert not failed, failed
    assert result["train"]["bf16_channels_last_compile"]["model_only"]["img_per_s"] > 0  # compiled (eager)
    assert set(result["loader_stages"]["stages"]) == {"decode", "cache_read", "augment", "host_to_device"}
    assert result["loader_stages"]["project_loader"]["img_per_s"] > 0
    assert result["predict"]["flip_tta"]["images_per_s"] > 0
    seed = result["seed_run"]
    assert seed["exit_code"] == 0 and seed["epochs"] == 1 and 0 <= seed["oof_f1"] <= 1
    default = result["targets"][result["targets"]["default_variant"]]
    for target in ("e2e_vs_model_only", "e2e_vs_naive"):
        assert isinstance(default[target]["met"], bool)
        assert default[target]["met"] or default[target]["limit"]


def test_no_cuda_test_collected_is_its_own_outcome_not_a_failure(tmp_path):
    sample = tmp_path / "test_plain.py"
    sample.write_text("def test_plain():\n    pass\n")
    junit, log = tmp_path / "cuda.xml", tmp_path / "cuda.log"
    summary = finish(start([str(sample)], junit, log, tmp_path), junit, log, time.perf_counter(), timeout=300)
    assert (summary["exit_code"], summary["outcome"], summary["collected"]) == (5, "none collected", 0)


def _stages(cache_read: float, augment: float, host_to_device: float | None) -> dict:
    rates = {"decode": 100.0, "cache_read": cache_read, "augment": augment, "host_to_device": host_to_device}
    return {"workers": 1, "stages": {k: {"bound_img_per_s": v} for k, v in rates.items()}}


def test_a_missed_target_names_the_stage_that_limits():
    train = {"v": {"model_only": {"img_per_s": 1000}, "end_to_end": {"img_per_s": 600}, "naive": {"img_per_s": 200}}}
    missed = targets(train, _stages(5000, 650, 9000), "v", cached=True)
    assert missed["e2e_vs_model_only"] == {"value": 0.6, "target": 0.95, "met": False, "limit": "augment"}
    assert missed["e2e_vs_naive"]["met"] is True
    assert targets(train, _stages(5000, 8000, 620), "v", cached=True)["e2e_vs_model_only"]["limit"] == "host_to_device"
    # uncached: every image is decoded in the loop
    assert targets(train, _stages(5000, 8000, 9000), "v", cached=False)["e2e_vs_model_only"]["limit"] == "decode"
    # every stage outruns the model, yet end to end does not
    assert targets(train, _stages(5000, 8000, 9000), "v", cached=True)["e2e_vs_model_only"]["limit"] == "training loop"


def test_a_loader_that_keeps_up_blames_the_model_for_a_missed_naive_target():
    train = {"v": {"model_only": {"img_per_s": 1000}, "end_to_end": {"img_per_s": 990}, "naive": {"img_per_s": 800}}}
    # augment's bound (an estimate: one process's rate x workers) is below the model's, but end to end keeps up
    result = targets(train, _stages(5000, 900, 9000), "v", cached=True)
    assert result["e2e_vs_model_only"]["met"] is True
    assert result["e2e_vs_naive"] == {"value": 1.238, "target": 2.0, "met": False, "limit": "model"}
    unknown = targets({"v": {"model_only": {"error": "x"}}}, _stages(1, 1, 1), "v", cached=True)
    assert unknown["e2e_vs_model_only"]["met"] is None and "limit" not in unknown["e2e_vs_model_only"]
