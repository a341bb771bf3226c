"""Resuming a killed run: last.ckpt every N optimizer steps and at each epoch end (written atomically), the
rest of an interrupted epoch in the same sampler order, and SIGTERM turned into a checkpoint and a hint.

The in-process tests use a toy model on a dataset of plain indices, so they can compare the exact batches
and final weights of an interrupted-and-resumed run with an uninterrupted one. The train.py tests stop it at a
known batch: killed with SIGKILL (a subprocess), or sent SIGTERM."""

from __future__ import annotations

import logging
import os
import shlex
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
import pytorch_lightning as pl
import torch
from conftest import tiny_config
from torch.utils.data import DataLoader, TensorDataset

import train as train_cli
from callbacks.checkpoints import training_callbacks
from callbacks.resume import SIGINT_EXIT, SIGTERM_EXIT, resume_command, save_checkpoint_atomic
from configs.config import load_config, save_config
from datamodules.datamodule import MaskDataModule
from datamodules.prepare import prepare
from datamodules.sampler import BalancedSampler, ShuffleSampler

ROOT = Path(__file__).resolve().parent.parent


# --- the sampler ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("world_size", [1, 2])
def test_sampler_resumes_part_way_through_an_epoch(world_size):
    labels = [0] * 30 + [1] * 7 + [2] * 3
    makers = (
        lambda rank: BalancedSampler(labels, 40, 7, rank, world_size),
        lambda rank: ShuffleSampler(labels, 7, rank, world_size),
    )
    for make in makers:
        for rank in range(world_size):
            whole, resumed = make(rank), make(rank)
            whole.set_epoch(3)
            resumed.resume_at(3, 6)
            resumed.set_epoch(3)  # Lightning sets the same epoch again: the position stays
            assert list(resumed) == list(whole)[6:] and len(resumed) == len(whole)
            resumed.set_epoch(4)  # the next epoch starts from its beginning
            whole.set_epoch(4)
            assert list(resumed) == list(whole)


# --- a toy model on indices: the exact batches and weights of a resumed run ------------------------------------

N, BATCH, BATCHES = 48, 4, 7  # 7 of the 12 batches per epoch (limit_train_batches)


class IndexModel(pl.LightningModule):
    """Learns label from index; records every training batch's indices."""

    def __init__(self, seen: list):
        super().__init__()
        self.lin = torch.nn.Linear(1, 2)
        torch.nn.init.zeros_(self.lin.weight)
        torch.nn.init.zeros_(self.lin.bias)
        self.seen = seen

    def training_step(self, batch, batch_idx):
        x, y = batch
        self.seen.append(x.tolist())
        return torch.nn.functional.cross_entropy(self.lin(x[:, None].float() / N), y)

    def validation_step(self, batch, batch_idx):
        self.log("val/f1", 0.5)  # never improves: best.ckpt stays at epoch 0

    def configure_optimizers(self):
        opt = torch.optim.AdamW(self.parameters(), lr=0.1)
        return {"optimizer": opt, "lr_scheduler": torch.optim.lr_scheduler.StepLR(opt, 1, 0.5)}


class Interrupt(pl.Callback):
    """After the ``at``-th training batch (1-based): raise (a crash) or send this process SIGTERM."""

    def __init__(self, at: int, how: str):
        self.at, self.how, self.count = at, how, 0

    def on_train_batch_end(self, trainer, *args):
        self.count += 1
        if self.count == self.at:
            if self.how == "crash":
                raise RuntimeError("killed")
            os.kill(os.getpid(), signal.SIGTERM)

    def on_validation_start(self, trainer, pl_module):
        if self.how == "sigterm-in-validation" and trainer.current_epoch == self.at:
            os.kill(os.getpid(), signal.SIGTERM)


def fit_toy(run_dir: Path, seen: list, ckpt=None, interrupt=None, workers=0, every=1, accumulate=2, epochs=2):
    labels = (torch.arange(N) % 3 == 0).long()
    loader = DataLoader(
        TensorDataset(torch.arange(N), labels),
        batch_size=BATCH,
        sampler=BalancedSampler(labels.tolist(), N, seed=3),
        num_workers=workers,
        persistent_workers=workers > 0,
    )
    val = DataLoader(TensorDataset(torch.arange(8), labels[:8]), batch_size=4)
    cfg = load_config(None, [], [f"trainer.checkpoint_every_n_steps={every}"])
    callbacks = training_callbacks(cfg, run_dir, validate=True, lr_monitor=False)
    trainer = pl.Trainer(
        max_epochs=epochs,
        callbacks=callbacks + ([interrupt] if interrupt else []),
        accumulate_grad_batches=accumulate,
        limit_train_batches=BATCHES,
        use_distributed_sampler=False,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    model = IndexModel(seen)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*(does not have many workers|LeafSpec|not empty).*")
        trainer.fit(model, loader, val, ckpt_path=ckpt)
    return model


def batches_done(ckpt: dict) -> int:
    """Training batches the checkpoint holds as done, counted from the first epoch."""
    position = ckpt["callbacks"]["SamplerPosition"]
    return position["epoch"] * BATCHES + position["batches"]


def assert_resumed_like_uninterrupted(tmp_path, interrupted: list, workers=0, **kw):
    whole: list = []
    reference = fit_toy(tmp_path / "whole", whole, workers=workers, **kw)
    ckpt = torch.load(tmp_path / "run" / "last.ckpt", weights_only=True)
    done = batches_done(ckpt)
    assert interrupted[:done] == whole[:done]
    rest: list = []
    resumed = fit_toy(tmp_path / "run", rest, ckpt=str(tmp_path / "run" / "last.ckpt"), workers=workers, **kw)
    assert rest == whole[done:]  # exactly the batches not yet trained on, in the same order
    assert torch.equal(resumed.lin.weight, reference.lin.weight)  # optimizer, scheduler, no lost gradient
    return ckpt


@pytest.mark.parametrize(
    ("crash_after", "workers", "expected_step"),
    [
        (5, 0, 2),  # mid-epoch, half-way through an accumulation cycle: back to step 2 (batch 4)
        (9, 0, 4),  # just into the second epoch: back to the end of the first
        (7, 2, 3),  # at the epoch's last batch, with worker processes (which draw indices ahead)
    ],
)
def test_a_killed_run_resumes_with_the_batches_it_had_not_trained_on(tmp_path, crash_after, workers, expected_step):
    interrupted: list = []
    with pytest.raises(RuntimeError, match="killed"):
        fit_toy(tmp_path / "run", interrupted, interrupt=Interrupt(crash_after, "crash"), workers=workers)
    ckpt = assert_resumed_like_uninterrupted(tmp_path, interrupted, workers=workers)
    assert ckpt["global_step"] == expected_step


@pytest.mark.parametrize(
    ("at", "how", "step", "done"),
    [
        (3, "sigterm", 2, 4),  # mid-accumulation: finishes the optimizer step (batch 4), then saves
        (4, "sigterm", 2, 4),  # at a step boundary: saves at once
        (0, "sigterm-in-validation", 4, BATCHES),  # validation finishes, the epoch closes, then it saves
    ],
)
def test_sigterm_saves_the_step_reached_and_exits_143(tmp_path, at, how, step, done):
    interrupted: list = []
    with pytest.raises(SystemExit) as stopped:
        fit_toy(tmp_path / "run", interrupted, interrupt=Interrupt(at, how), every=0)
    assert stopped.value.code == SIGTERM_EXIT
    assert len(interrupted) == done  # no batch trained beyond the checkpoint
    ckpt = assert_resumed_like_uninterrupted(tmp_path, interrupted, every=0)
    assert ckpt["global_step"] == step and batches_done(ckpt) == done


def test_last_ckpt_follows_every_epoch_even_when_the_best_does_not_improve(tmp_path):
    fit_toy(tmp_path, [], every=2, accumulate=1, epochs=3)
    assert torch.load(tmp_path / "best.ckpt", weights_only=True)["epoch"] == 0
    last = torch.load(tmp_path / "last.ckpt", weights_only=True)
    assert (last["epoch"], last["global_step"]) == (2, 3 * BATCHES)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.ckpt", "last.ckpt", "metrics.csv"]


def test_a_failed_checkpoint_write_leaves_the_previous_one_whole(tmp_path):
    class Trainer:  # the parts of pl.Trainer that save_checkpoint_atomic uses
        is_global_zero = True
        strategy = SimpleNamespace(barrier=lambda name=None: None)

        def __init__(self, content: bytes, fail: bool):
            self.content, self.fail = content, fail

        def save_checkpoint(self, path, weights_only=False):
            Path(path).write_bytes(self.content[:2] if self.fail else self.content)
            if self.fail:
                raise OSError("No space left on device")

    last = tmp_path / "last.ckpt"
    save_checkpoint_atomic(Trainer(b"step 1", fail=False), last)
    with pytest.raises(OSError):
        save_checkpoint_atomic(Trainer(b"step 2", fail=True), last)
    assert last.read_bytes() == b"step 1" and [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]


def test_the_resume_hint_is_the_same_command_with_resume():
    assert resume_command(["train.py", "--task", "age", "--set", "optim.lr=1e-3"]) == (
        "python train.py --task age --set optim.lr=1e-3 --resume"
    )
    assert resume_command(["train.py", "--resume", "--overwrite"]) == "python train.py --resume"


# --- train.py itself, stopped at a known batch -----------------------------------------------------------------

# train.py run as `python train.py` runs it, with each index the training sampler hands out recorded, and a
# pause for good before index PAUSE_AT (-1: none): the process is then killed at a known batch.
RUNNER = """
import os, runpy, sys, time
sys.path.insert(0, os.environ["PROJECT"])
from datamodules.sampler import BalancedSampler
record, pause_at = os.environ["RECORD"], int(os.environ["PAUSE_AT"])
drawn = 0
iterate = BalancedSampler.__iter__

def recorded(self):
    global drawn
    for index in iterate(self):
        if drawn == pause_at:
            open(record + ".paused", "w").close()
            while True:
                time.sleep(1)
        drawn += 1
        with open(record, "a") as f:
            f.write(f"{self.epoch} {index}\\n")
        yield index

BalancedSampler.__iter__ = recorded
sys.argv[0] = "train.py"
runpy.run_path(os.path.join(os.environ["PROJECT"], "train.py"), run_name="__main__")
"""
TASK, BS, LIMIT = "gender", 8, 6  # batch 8, accumulation 2: a step every 2 batches, 3 steps per epoch


@pytest.fixture(scope="module")
def cli_setup(synthetic, tmp_path_factory):
    """A tiny config file, its data prepared (cached) once, and the sampler order an uninterrupted run draws."""
    root = tmp_path_factory.mktemp("resume-cli")
    cfg = tiny_config(
        synthetic,
        root / "cache",
        f"runs_dir={root / 'runs'}",
        "model.backbone=test_resnet",
        f"loader.batch_size={BS}",
        f"trainer.effective_batch={2 * BS}",
        "trainer.max_epochs=2",
        f"trainer.limit_train_batches={LIMIT}",
        "trainer.checkpoint_every_n_steps=1",
        "trainer.progress_bar=false",
    )
    save_config(cfg, root / "tiny.yaml")
    task_cfg = load_config(TASK, [root / "tiny.yaml"])
    dm = MaskDataModule(task_cfg, TASK, "full", progress=False, data=prepare(task_cfg, progress=False))
    dm.setup("fit")
    sampler = dm.train_dataloader().sampler
    order = {}
    for epoch in (0, 1):
        sampler.set_epoch(epoch)
        order[epoch] = [(epoch, i) for i in list(sampler)[: LIMIT * BS]]
    return SimpleNamespace(config=root / "tiny.yaml", runs=root / "runs" / cfg.exp, order=order)


def train_args(config: Path, *more: str) -> list[str]:
    return ["--task", TASK, "--fold", "full", "--config", str(config), "--wandb", "disabled", *more]


def start_train(tmp_path: Path, config: Path, name: str, *args: str, pause_at: int = -1):
    """Start train.py (through RUNNER); return the process and the file of the indices it draws."""
    (tmp_path / "runner.py").write_text(RUNNER)
    record = tmp_path / f"{name}.indices"
    env = {**os.environ, "PROJECT": str(ROOT), "RECORD": str(record), "PAUSE_AT": str(pause_at)}
    with open(tmp_path / f"{name}.log", "w") as log:
        proc = subprocess.Popen(
            [sys.executable, str(tmp_path / "runner.py"), *train_args(config, *args)],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    return proc, record


def recorded(path: Path) -> list[tuple[int, int]]:
    return [tuple(map(int, line.split())) for line in path.read_text().splitlines()]


def record_sampler(monkeypatch) -> list[tuple[int, int]]:
    """From now on, every (epoch, index) the training sampler hands out in this process."""
    seen: list[tuple[int, int]] = []
    iterate = BalancedSampler.__iter__

    def recording(self):
        for index in iterate(self):
            seen.append((self.epoch, index))
            yield index

    monkeypatch.setattr(BalancedSampler, "__iter__", recording)
    return seen


def test_sigkill_mid_epoch_then_resume_trains_the_rest_of_the_epoch_in_order(cli_setup, tmp_path, monkeypatch, caplog):
    out = cli_setup.runs / TASK / "foldfull"
    # `python train.py` paused while loading batch 3 of epoch 0: batches 0-1 (step 1) are in last.ckpt, batch 2
    # (half an accumulation cycle) is not
    proc, record = start_train(tmp_path, cli_setup.config, "killed", pause_at=3 * BS)
    try:
        end = time.monotonic() + 300
        while not Path(f"{record}.paused").exists():
            assert proc.poll() is None, (tmp_path / "killed.log").read_text()[-3000:]
            assert time.monotonic() < end, "train.py did not reach batch 3"
            time.sleep(0.05)
        assert torch.load(out / "last.ckpt", weights_only=True)["global_step"] == 1
    finally:
        proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=60) == -signal.SIGKILL
    assert recorded(record) == cli_setup.order[0][: 3 * BS]
    assert not list(out.glob("*.tmp"))

    # `train.py --resume` (its main, in this process) trains the rest of epoch 0 from batch 2 on, then epoch 1
    seen = record_sampler(monkeypatch)
    with caplog.at_level(logging.INFO):
        assert train_cli.main(train_args(cli_setup.config, "--resume")) == 0
    assert "resuming epoch 0 after its first 2 batches" in caplog.text
    assert seen == cli_setup.order[0][2 * BS :] + cli_setup.order[1]
    last = torch.load(out / "last.ckpt", weights_only=True)
    assert (last["epoch"], last["global_step"]) == (1, LIMIT)  # 2 epochs x 3 steps, as an uninterrupted run
    assert pd.read_csv(out / "metrics.csv")["epoch"].tolist() == [0, 1]


@pytest.mark.parametrize(
    ("sig", "code", "said"),
    [(signal.SIGTERM, SIGTERM_EXIT, "SIGTERM"), (signal.SIGINT, SIGINT_EXIT, "Ctrl-C")],
)
def test_sigterm_or_ctrl_c_saves_last_ckpt_at_the_step_reached_and_says_how_to_resume(
    cli_setup, monkeypatch, caplog, sig, code, said
):
    # train.py's main in this process (the SystemExit it raises is the process's exit status), the signal while
    # batch 2 loads: batches 2 and 3 complete step 2, which is saved; then the exit code with the resume command,
    # and a resume trains on from there
    handler = signal.getsignal(sig)
    seen = record_sampler(monkeypatch)
    iterate = BalancedSampler.__iter__

    def signal_at_batch_2(self):
        for n, index in enumerate(iterate(self)):
            if n == 2 * BS and self.epoch == 0 and self.start == 0:
                assert signal.getsignal(sig) != handler, f"{said} would not reach the run"
                os.kill(os.getpid(), sig)
            yield index

    monkeypatch.setattr(BalancedSampler, "__iter__", signal_at_batch_2)
    argv = train_args(cli_setup.config, "--exp", f"stopped-{said}")
    monkeypatch.setattr(sys, "argv", ["train.py", *argv])
    with caplog.at_level(logging.INFO), pytest.raises(SystemExit) as stopped:
        train_cli.main(argv)
    assert stopped.value.code == code
    assert f"Stopped by {said} at step 2 (epoch 0 after 4 batches); saved in" in caplog.text
    assert f"Resume with:\n  python train.py {shlex.join(argv)} --resume" in caplog.text
    ckpt = torch.load(cli_setup.runs.parent / f"stopped-{said}" / TASK / "foldfull" / "last.ckpt", weights_only=True)
    assert ckpt["global_step"] == 2 and ckpt["callbacks"]["SamplerPosition"]["batches"] == 4
    assert seen == cli_setup.order[0][: 4 * BS]  # stopped after batch 3: nothing drawn beyond
    assert signal.getsignal(sig) == handler  # the signal is the user's again (Lightning's or ours is gone)
    seen.clear()
    assert train_cli.main([*argv, "--resume"]) == 0
    assert seen == cli_setup.order[0][4 * BS :] + cli_setup.order[1]
