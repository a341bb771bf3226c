"""The job runner: one job per GPU at a time, the next as soon as one frees, logs, failures, signals.

A stand-in program records what each job saw (CUDA_VISIBLE_DEVICES, start and end times, its arguments)
and does what the test plans; one test runs the real train.py for two tiny jobs.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from conftest import tiny_argv, tiny_config

import jobs
from core.errors import ConfigError, RunError

ROOT = Path(__file__).resolve().parent.parent

STAND_IN = """
import json, os, signal, sys, time
from pathlib import Path

args = sys.argv[1:]
task, fold = args[args.index("--task") + 1], args[args.index("--fold") + 1]
name = f"{task}-fold{fold}"
plan = json.loads(os.environ["FAKE_PLAN"]).get(name, {})
record = {"gpu": os.environ.get("CUDA_VISIBLE_DEVICES"), "start": time.time(), "argv": args, "signal": None}
out = Path(os.environ["FAKE_RECORDS"]) / f"{name}.json"

def on_term(signum, frame):
    record.update(signal="SIGTERM", end=time.time())
    out.write_text(json.dumps(record))
    print("saved last.ckpt", flush=True)
    sys.exit(143)

signal.signal(signal.SIGTERM, on_term)
if plan.get("ignore_sigterm"):
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
out.parent.mkdir(exist_ok=True)
(out.parent / f"{name}.started").write_text(str(os.getpid()))
print(f"training {name}", flush=True)
time.sleep(plan.get("seconds", 0.2))
record["end"] = time.time()
out.write_text(json.dumps(record))
if plan.get("exit"):
    print("error: planted failure", file=sys.stderr)
sys.exit(plan.get("exit", 0))
"""


@pytest.fixture
def fake(tmp_path, monkeypatch):
    """The stand-in program; ``fake.plan(name=dict(seconds=..., exit=...))`` sets what a job does."""
    program = tmp_path / "fake_train.py"
    program.write_text(STAND_IN)
    records = tmp_path / "records"
    monkeypatch.setenv("FAKE_RECORDS", str(records))
    monkeypatch.setenv("FAKE_PLAN", "{}")

    class Fake:
        def plan(self, **plans):
            monkeypatch.setenv("FAKE_PLAN", json.dumps(plans))

        def run(self, job_list, gpus=("0", "1"), passthrough=("--exp", "x")):
            return jobs.run_jobs(
                job_list, list(gpus), list(passthrough), tmp_path / "logs", program=program, progress=False
            )

        def records(self):
            return {p.stem: json.loads(p.read_text()) for p in records.glob("*.json")}

    Fake.program, Fake.records_dir, Fake.logs = program, records, tmp_path / "logs"
    return Fake()


def overlaps(a: dict, b: dict) -> bool:
    return a["start"] < b["end"] and b["start"] < a["end"]


def test_every_job_runs_once_one_per_gpu_at_a_time(fake, capsys):
    job_list = [("mask", "0"), ("mask", "1"), ("gender", "0"), ("gender", "1"), ("age", "0")]
    fake.plan(**{f"{t}-fold{f}": {"seconds": 0.4} for t, f in job_list})
    results = fake.run(job_list, passthrough=["--exp", "x", "--set", "optim.lr=0.001"])
    records = fake.records()
    assert sorted(records) == sorted(f"{t}-fold{f}" for t, f in job_list)  # each once (one record a name)
    assert set(results) == set(job_list) and all(r.returncode == 0 for r in results.values())
    for name, rec in records.items():
        task, fold = name.split("-fold")
        share = ["--set", "trainer.parallel_jobs=2"]  # two GPUs: two jobs side by side
        assert rec["argv"] == ["--task", task, "--fold", fold, "--exp", "x", "--set", "optim.lr=0.001", *share]
        assert rec["gpu"] == results[(task, fold)].gpu in ("0", "1")
    for gpu in ("0", "1"):
        on_gpu = sorted((r for r in records.values() if r["gpu"] == gpu), key=lambda r: r["start"])
        assert on_gpu, f"GPU {gpu} ran nothing"
        assert all(a["end"] <= b["start"] for a, b in zip(on_gpu, on_gpu[1:], strict=False)), f"two jobs on {gpu}"
    assert any(overlaps(a, b) for a in records.values() for b in records.values() if a["gpu"] != b["gpu"])
    for task, fold in job_list:
        log = fake.logs / f"{task}-fold{fold}.log"
        assert results[(task, fold)].log == log
        text = log.read_text()
        assert text.startswith("# CUDA_VISIBLE_DEVICES=") and f"training {task}-fold{fold}" in text
    table = capsys.readouterr().out
    assert table.splitlines()[0].split() == ["job", "gpu", "seconds", "exit", "code", "log"]
    assert all(f"{t}-fold{f}" in table for t, f in job_list)


def test_the_jobs_side_by_side_share_the_machines_cores_among_their_loader_workers(fake, monkeypatch):
    import train
    from datamodules import datamodule

    monkeypatch.setattr(datamodule, "usable_cpus", lambda: 16)

    def workers(gpus: list[str], job_list: list[tuple[str, str]]) -> dict[str, int]:
        """The automatic loader workers of each job, from the options it was started with."""
        fake.run(job_list, gpus, passthrough=[])
        configs = {name: train.config_from_args(train.parse_args(r["argv"]), name.split("-")[0])
                   for name, r in fake.records().items()}  # fmt: skip
        for path in fake.records_dir.glob("*.json"):
            path.unlink()
        return {name: datamodule.loader_workers(cfg) for name, cfg in configs.items()}

    four = workers(["0", "1", "2", "3"], [("mask", "0"), ("mask", "1"), ("gender", "0"), ("gender", "1"), ("age", "0")])
    assert set(four.values()) == {3}  # 16 cores / 4 jobs side by side = 4 each, one left to the job itself
    assert workers(["0"], [("mask", "0"), ("age", "1")]) == {"mask-fold0": 15, "age-fold1": 15}  # one at a time
    assert workers(["0", "1", "2", "3"], [("age", "2")]) == {"age-fold2": 15}  # one job: the whole machine


def test_the_next_job_starts_as_soon_as_a_gpu_frees(fake):
    # one long job holds a GPU; the short ones follow each other on the other one
    fake.plan(**{"age-fold0": {"seconds": 3.0}, **{f"mask-fold{k}": {"seconds": 0.05} for k in range(3)}})
    results = fake.run([("age", "0"), ("mask", "0"), ("mask", "1"), ("mask", "2")])
    long_gpu = results[("age", "0")].gpu
    assert {results[("mask", str(k))].gpu for k in range(3)} == {"1" if long_gpu == "0" else "0"}
    records = fake.records()
    assert records["mask-fold2"]["end"] < records["age-fold0"]["end"]


def test_a_failed_job_is_named_with_its_log_after_the_others_finish(fake):
    fake.plan(**{"gender-fold0": {"exit": 3}})
    job_list = [("gender", "0"), ("mask", "0"), ("mask", "1"), ("age", "0")]
    with pytest.raises(RunError) as err:
        fake.run(job_list)
    message = str(err.value)
    log = fake.logs / "gender-fold0.log"
    assert "1 of 4 jobs failed" in message and "gender-fold0 (exit code 3)" in message and str(log) in message
    assert "error: planted failure" in message and "error: planted failure" in log.read_text()
    assert "mask-fold0" not in message
    assert sorted(fake.records()) == sorted(f"{t}-fold{f}" for t, f in job_list)  # the others all ran


def test_bad_gpu_lists_and_duplicate_jobs(fake):
    with pytest.raises(ConfigError, match="GPU listed more than once: 1"):
        fake.run([("age", "0")], gpus=["1", "1"])
    with pytest.raises(ConfigError, match="--gpus"):
        fake.run([("age", "0")], gpus=[])
    with pytest.raises(ConfigError, match="job listed more than once: age-fold0"):
        fake.run([("age", "0"), ("age", 0)])
    assert fake.run([]) == {}


def test_strip_job_args():
    argv = [
        "--task", "age", "--fold=2", "--gpus", "0,1", "--config", "c.yaml", "--predict", "--set", "optim.lr=1e-3",
        "--prepare-only", "--fold", "all", "--task=mask", "--gpus=3", "--resume", "--optim.lr=3e-4", "--exp", "e",
    ]  # fmt: skip
    assert jobs.strip_job_args(argv) == [
        "--config", "c.yaml", "--set", "optim.lr=1e-3", "--resume", "--optim.lr=3e-4", "--exp", "e",
    ]  # fmt: skip
    assert jobs.strip_job_args([]) == []


RUNNER = """
import sys
from pathlib import Path
import jobs
jobs.run_jobs([("age", "0"), ("mask", "0"), ("gender", "0")], ["0", "1"], [], Path(sys.argv[2]),
              program=sys.argv[1], progress=False, grace_s=20)
"""


def start_runner(fake) -> subprocess.Popen:
    """run_jobs in a process of its own, to be signalled."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(RUNNER), str(fake.program), str(fake.logs)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_started(fake, runner: subprocess.Popen, count: int) -> None:
    deadline = time.monotonic() + 30
    while len(list(fake.records_dir.glob("*.started"))) < count and time.monotonic() < deadline:
        time.sleep(0.05)
    if len(list(fake.records_dir.glob("*.started"))) < count:
        runner.kill()
        pytest.fail(f"the jobs did not start: {runner.communicate(timeout=30)}")


def test_sigterm_stops_the_jobs_and_exits_non_zero(fake, tmp_path):
    fake.plan(**{name: {"seconds": 60} for name in ("age-fold0", "mask-fold0", "gender-fold0")})
    runner = start_runner(fake)
    wait_started(fake, runner, 2)
    runner.send_signal(signal.SIGTERM)
    out, err = runner.communicate(timeout=30)
    assert runner.returncode == 128 + signal.SIGTERM, err
    records = fake.records()
    assert sorted(records) == ["age-fold0", "mask-fold0"]  # the third never started
    assert all(r["signal"] == "SIGTERM" and r["end"] - r["start"] < 30 for r in records.values())
    assert "saved last.ckpt" in (fake.logs / "age-fold0.log").read_text()
    assert "interrupted by SIGTERM" in err and "not started: gender-fold0" in err
    assert "143" in out  # the summary table shows each stopped job's exit code


def test_a_second_signal_kills_jobs_that_do_not_stop(fake):
    fake.plan(**{name: {"seconds": 60, "ignore_sigterm": True} for name in ("age-fold0", "mask-fold0")})
    runner = start_runner(fake)
    wait_started(fake, runner, 2)
    runner.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    runner.send_signal(signal.SIGINT)
    _, err = runner.communicate(timeout=15)  # not the 20 s grace period
    assert runner.returncode == 128 + signal.SIGTERM, err
    assert "age-fold0: killed" in err and "mask-fold0: killed" in err
    for started in fake.records_dir.glob("*.started"):
        with pytest.raises(ProcessLookupError):
            os.kill(int(started.read_text()), 0)


def test_two_real_training_jobs(layout, tmp_path):
    """train.py itself, two tiny CPU jobs side by side (the data prepared once first, as train.py does)."""
    from datamodules.prepare import prepare

    settings = [
        "trainer.accelerator=cpu",
        "model.backbone=test_resnet",
        "trainer.max_epochs=1",
        "trainer.progress_bar=false",
        "trainer.worst_images=0",
        f"runs_dir={tmp_path / 'runs'}",
    ]
    cfg = tiny_config(layout, tmp_path / "cache", *settings)
    prepare(cfg, progress=False)
    passthrough = tiny_argv(layout, tmp_path, *settings)
    results = jobs.run_jobs([("mask", "0"), ("gender", "1")], ["0", "1"], passthrough, tmp_path / "logs")
    for (task, fold), result in results.items():
        assert result.ok, result.log.read_text()[-2000:]
        out = tmp_path / "runs" / "quick" / task / f"fold{fold}"
        assert {"best.ckpt", "last.ckpt", "oof.csv"} <= {p.name for p in out.iterdir()}


def test_train_gpus_prepares_once_then_hands_the_jobs_to_the_runner(layout, tmp_path, monkeypatch):
    import train

    calls = []
    monkeypatch.setattr(jobs, "run_jobs", lambda *a, **k: calls.append(a))
    monkeypatch.setattr("torch.cuda.device_count", lambda: 2)  # a machine with two GPUs
    argv = [*tiny_argv(layout, tmp_path), "--task", "all", "--fold", "all", "--gpus", "0,1", "--resume"]
    assert train.main(argv) == 0
    (job_list, gpus, passthrough, log_dir) = calls[0]
    assert len(job_list) == 9 and ("age", "2") in job_list and gpus == ["0", "1"]
    assert "--gpus" not in passthrough and "--task" not in passthrough and "--resume" in passthrough
    assert log_dir == tmp_path / "runs" / "quick" / "logs"
    assert list((tmp_path / "cache").glob("*/images-train-*.u8"))  # the image cache was built before the jobs
