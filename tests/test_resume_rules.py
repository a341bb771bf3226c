"""What a resumed, replaced or doubly started run does to its results: the best scores carry on, the learning-rate
schedule follows the new length, a checkpoint of other settings is refused before anything is written, an
overwritten run's results survive a failed rerun, and one process holds a run directory at a time."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
from conftest import quick_cfg, tiny_argv

import train as train_cli
from lightning_modules.task_module import TaskModule
from rundir.claim import claim_run_dir, settle_replaced
from rundir.layout import REPLACED
from rundir.lock import RunLock

ROOT = Path(__file__).resolve().parent.parent
FAST = ["trainer.limit_train_batches=4", "trainer.max_epochs=1"]


def _metrics(out: Path) -> pd.DataFrame:
    return pd.read_csv(out / "metrics.csv")


def test_best_scores_carry_on_after_resume(synthetic, tmp_path, monkeypatch):
    cfg = quick_cfg(synthetic, tmp_path, *FAST)
    out = train_cli.train(cfg, "age", 0)
    first = _metrics(out).iloc[0]
    # the resumed epoch validates worse than the first (every image called 60+), so the best must stay the first's
    head_logits = TaskModule.head_logits

    def worse_in_validation(self, images):
        logits = head_logits(self, images)
        if self.training:
            return logits
        worst = torch.tensor([0.0, 0.0, 1.0], device=self.device)
        return {name: torch.zeros_like(x) + worst for name, x in logits.items()}

    monkeypatch.setattr(TaskModule, "head_logits", worse_in_validation)
    cfg.trainer.max_epochs = 2
    train_cli.train(cfg, "age", 0, resume=True)
    second = _metrics(out).iloc[1]
    assert second["val/f1"] < first["val/f1"] and second["val/f1_competition"] < first["val/f1_competition"]
    assert second["val/f1_best"] == pytest.approx(first["val/f1"])
    assert second["val/f1_competition_best"] == pytest.approx(first["val/f1_competition"])
    saved = torch.load(out / "last.ckpt", weights_only=True)["best_scores"]
    assert saved["val/f1_best"] == pytest.approx(first["val/f1"])


def _cosine(base: float, epoch: int, length: int) -> float:
    return base * (1 + math.cos(math.pi * epoch / length)) / 2


@pytest.mark.parametrize(
    ("scheduler", "expected"),
    [
        # planned for 2 epochs, resumed for 4: epochs 2 and 3 follow the cosine over 4 (not 0, then a climb)
        ("cosine", [_cosine(1e-2, 0, 2), _cosine(1e-2, 1, 2), _cosine(1e-2, 2, 4), _cosine(1e-2, 3, 4)]),
        # step does not depend on the length: halved every epoch, as planned
        ("step", [1e-2, 5e-3, 2.5e-3, 1.25e-3]),
    ],
)
def test_the_learning_rate_follows_a_longer_resumed_run(synthetic, tmp_path, scheduler, expected):
    settings = [*FAST, "optim.lr=1e-2", f"optim.scheduler={scheduler}", "optim.step_size=1", "trainer.max_epochs=2"]
    cfg = quick_cfg(synthetic, tmp_path, *settings)
    out = train_cli.train(cfg, "gender", 0)
    cfg.trainer.max_epochs = 4
    train_cli.train(cfg, "gender", 0, resume=True)
    metrics = _metrics(out)
    assert metrics["epoch"].tolist() == [0, 1, 2, 3]
    assert metrics["lr"].tolist() == pytest.approx(expected, rel=1e-6)


def _cli(layout, tmp_path, *extra):
    settings = ["model.backbone=test_resnet", "trainer.max_epochs=1", "trainer.progress_bar=false"]
    return train_cli.main(
        [*tiny_argv(layout, tmp_path, *settings), "--exp", "r", "--task", "mask", "--fold", "0", *extra]
    )


def _snapshot(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in out.iterdir() if p.is_file() and p.name != ".lock"}


def test_resume_with_other_settings_is_refused_before_anything_is_written(layout, tmp_path, capsys):
    assert _cli(layout, tmp_path) == 0
    out = tmp_path / "runs" / "r" / "mask" / "fold0"
    before = _snapshot(out)
    # a finished run that --resume would not train is skipped, whatever the settings
    assert _cli(layout, tmp_path, "--resume", "--set", "optim.lr=0.5") == 0
    assert _snapshot(out) == before
    more = ["--set", "trainer.max_epochs=2", "--resume"]
    assert _cli(layout, tmp_path, *more, "--set", "model.backbone=resnet10t", "--set", "optim.lr=0.5") == 2
    err = capsys.readouterr().err
    assert "model.backbone: checkpoint 'test_resnet', asked 'resnet10t'" in err and "optim.lr" in err
    assert "--overwrite" in err and "Traceback" not in err and err.count("\n") == 1
    assert _snapshot(out) == before  # config.yaml, done.json and the checkpoints as they were
    # the data changed since (an image of another size): refused too, still before anything is written
    photo = sorted((layout / "train" / "images").glob("000001_*/mask2.*"))[0]
    photo.write_bytes(photo.read_bytes() + b"\0")
    assert _cli(layout, tmp_path, *more) == 2
    assert "trained on another data set" in capsys.readouterr().err
    assert _snapshot(out) == before


def test_overwrite_keeps_the_old_results_when_the_new_run_fails_before_its_first_checkpoint(layout, tmp_path, capsys):
    assert _cli(layout, tmp_path) == 0
    out = tmp_path / "runs" / "r" / "mask" / "fold0"
    before = _snapshot(out)
    # a rerun that stops after the claim, before any checkpoint (no such backbone): the old results stay
    assert _cli(layout, tmp_path, "--overwrite", "--set", "model.backbone=no_such_net") == 2
    assert "no_such_net" in capsys.readouterr().err
    assert _snapshot(out) == before and not (out / REPLACED).exists()
    # a rerun that works replaces them
    assert _cli(layout, tmp_path, "--overwrite", "--set", "seed=7") == 0
    assert not (out / REPLACED).exists()
    assert _snapshot(out)["best.ckpt"] != before["best.ckpt"] and "seed: 7" in (out / "config.yaml").read_text()


def test_a_rerun_killed_before_its_first_checkpoint_gets_the_old_results_back_next_time(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    olds = ("best.ckpt", "last.ckpt", "oof.csv", "oof_flip.csv", "oof_neighbours.csv", "done.json", "config.yaml")
    for name in (*olds, "metrics.csv"):
        (out / name).write_text(f"old {name}")
    assert claim_run_dir(out, resume=False, overwrite=True, max_epochs=1)
    assert sorted(p.name for p in out.iterdir()) == [REPLACED]  # set aside, not deleted (no stale oof_*.csv)
    (out / "config.yaml").write_text("new config")  # the new run started, then was killed (SIGKILL)
    assert claim_run_dir(out, resume=True, overwrite=False, max_epochs=1)  # the next start puts them back first
    assert (out / "best.ckpt").read_text() == "old best.ckpt" and (out / "config.yaml").read_text() == "old config.yaml"
    assert not (out / REPLACED).exists()
    # once the new run has finished, the old results are dropped (kept while it has only a checkpoint)
    assert claim_run_dir(out, resume=False, overwrite=True, max_epochs=1)
    (out / "last.ckpt").write_text("new last.ckpt")
    settle_replaced(out)
    assert (out / REPLACED / "best.ckpt").read_text() == "old best.ckpt"
    (out / "done.json").write_text("new done.json")
    settle_replaced(out)
    assert sorted(p.name for p in out.iterdir()) == ["done.json", "last.ckpt"]


HOLDER = """
import sys, time
sys.path.insert(0, sys.argv[1])
from rundir.lock import RunLock
lock = RunLock(sys.argv[2])
lock.acquire()
print("held", flush=True)
time.sleep(600)
"""


def test_a_second_train_on_the_same_run_stops_with_the_first_ones_pid(layout, tmp_path, capsys):
    out = tmp_path / "runs" / "r" / "mask" / "fold0"
    out.mkdir(parents=True)
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(ROOT), str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert _cli(layout, tmp_path) == 2
        err = capsys.readouterr().err
        assert f"in use by another process (PID {holder.pid})" in err and "Traceback" not in err
        assert not (out / "config.yaml").exists()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
    # the lock dies with its process: no stale lock after a kill
    deadline = time.monotonic() + 10
    while True:
        try:
            with RunLock(out):
                break
        except Exception:
            assert time.monotonic() < deadline
            time.sleep(0.1)
    assert _cli(layout, tmp_path) == 0
    assert (out / ".lock").read_text() == ""  # released: no PID left behind
    assert os.path.isfile(out / "done.json")
