"""Mistakes and faults a user meets through train.py, each one `error:` line with the exit code the README
states, before any work where they can be seen before: settings Lightning would reject late, a YAML key in the
wrong file, writes that fail mid-run, Ctrl-C; and what the logs say about the batch and the processes."""

from __future__ import annotations

import errno
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from conftest import quick_cfg, tiny_argv, tiny_config

import predict
import train as train_cli
from callbacks import checkpoints
from core.errors import RESUME, run_cli
from datamodules import cache as image_cache
from datamodules import dataset as dataset_module
from datamodules.datamodule import MaskDataModule
from datamodules.prepare import prepare
from lightning_modules.optim import accumulation

ROOT = Path(__file__).resolve().parent.parent
SETTINGS = ["model.backbone=test_resnet", "trainer.max_epochs=1", "trainer.progress_bar=false"]


def _cli(layout, tmp_path, *extra, task="mask", fold="0"):
    argv = [*tiny_argv(layout, tmp_path, *SETTINGS), "--exp", "e", "--task", task, "--fold", fold, *extra]
    return train_cli.main(argv)


def _one_error_line(err: str) -> str:
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    return err


@pytest.mark.parametrize(
    ("settings", "fold", "expected"),
    [
        (["optim.scheduler=plateau"], "full", "optim.scheduler=plateau"),
        (["trainer.strategy=bogus"], "0", "trainer.strategy: 'bogus' is not a Lightning strategy"),
        (["augment.crop=60"], "0", "augment.crop: 60 is larger than the resized image"),
    ],
)
def test_settings_lightning_would_reject_late_stop_before_any_data_work(
    layout, tmp_path, capsys, settings, fold, expected
):
    extra = [x for s in settings for x in ("--set", s)]
    assert _cli(layout, tmp_path, *extra, fold=fold) == 2
    assert expected in _one_error_line(capsys.readouterr().err)
    assert not (tmp_path / "cache").exists() and not (tmp_path / "runs").exists()  # nothing was prepared


@pytest.mark.skipif(torch.cuda.is_available(), reason="a machine with a GPU accepts it")
def test_a_gpu_asked_for_on_a_machine_without_one_is_one_line(layout, tmp_path, capsys):
    assert _cli(layout, tmp_path, "--set", "trainer.accelerator=gpu") == 2
    assert "no CUDA GPU is visible" in _one_error_line(capsys.readouterr().err)


def test_an_unknown_key_in_a_config_file_names_the_file(tmp_path, capsys):
    bad = tmp_path / "mine.yaml"
    bad.write_text("optim:\n  lr: 1.0e-3\n  lrr: 3\n")
    assert train_cli.main(["--config", str(bad), "--wandb", "disabled", "--prepare-only"]) == 2
    err = _one_error_line(capsys.readouterr().err)
    assert f"config file {bad}: unknown config key optim.lrr" in err


def test_an_effective_batch_that_is_not_a_multiple_says_what_is_trained_with(caplog):
    assert accumulation(256, 120, 1) == 2  # 240 is nearer 256 than 360
    cfg = tiny_config(Path("unused"), Path("unused"), "loader.batch_size=100", "trainer.effective_batch=256")
    hw = train_cli.hardware(cfg)
    with caplog.at_level(logging.WARNING, logger="train"):
        assert train_cli.effective_batch(cfg, hw) == 300
    assert "trainer.effective_batch 256 is not a multiple" in caplog.text and "effective batch of 300" in caplog.text
    caplog.clear()
    cfg.loader.batch_size = 64
    assert train_cli.effective_batch(cfg, train_cli.hardware(cfg)) == 256 and not caplog.text


def test_processes_of_a_multi_device_run_draw_different_augmentations(layout, tmp_path, monkeypatch):
    cfg = tiny_config(layout, tmp_path / "cache", "augment.geometric_p=1.0", "augment.color_p=1.0")
    data = prepare(cfg, progress=False)
    datasets = []
    for rank in (0, 1):
        dm = MaskDataModule(cfg, "mask", 0, progress=False, data=data)
        dm.setup("fit")
        dm.trainer = SimpleNamespace(global_rank=rank, world_size=2)
        datasets.append(dm.train_dataloader().dataset)
    draws = [[ds[i][0] for i in range(8)] for ds in datasets]  # the same items, in each process (no workers)
    assert any(not torch.equal(a, b) for a, b in zip(*draws, strict=True))
    # with workers: torch gives worker k the same seed in every process; the rank is mixed in
    seeds = []
    for ds in datasets:
        worker = SimpleNamespace(id=0, seed=1234, dataset=ds)
        monkeypatch.setattr(dataset_module, "get_worker_info", lambda worker=worker: worker)
        dataset_module.seed_worker(0)
        seeds.append([ds[i][0] for i in range(8)])
    assert any(not torch.equal(a, b) for a, b in zip(*seeds, strict=True))
    signal.signal(signal.SIGINT, signal.default_int_handler)  # seed_worker made this process ignore Ctrl-C


# --- writes that fail part-way ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("exc", "says"),
    [
        (OSError(errno.ENOSPC, "No space left on device", "/runs/x/oof.csv"), "the disk is full while writing"),
        (PermissionError(errno.EACCES, "Permission denied", "/runs/x/oof.csv"), "permission denied for /runs"),
        (OSError(errno.EROFS, "Read-only file system", "/runs/x/oof.csv"), "the file system is read-only"),
        (RuntimeError("[enforce fail at inline_container.cc:747] . open file failed with strerror: Permission denied"),
         "a checkpoint could not be written: permission denied"),
    ],
)  # fmt: skip
def test_a_failed_write_tells_a_full_disk_from_a_permission_problem(capsys, exc, says):
    def work():
        raise exc

    assert run_cli(work, rerun=RESUME) == 3
    err = _one_error_line(capsys.readouterr().err)
    assert says in err and "--resume" in err
    space = "disk is full" in says
    assert ("Free some space" in err) == space and ("writable" in err) == (not space)
    assert run_cli(work, rerun="run the same command again") == 3
    assert "--resume" not in capsys.readouterr().err  # predict.py has no --resume


def _make_read_only(path: Path) -> bool:
    """Make ``path`` unwritable for this process (chmod as a user; as root, the immutable attribute); False when
    this machine allows neither."""
    if os.geteuid() != 0:
        path.chmod(0o555)
    else:
        if subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode != 0:
            return False
    try:
        (path / ".probe").write_text("")
    except OSError:
        return True
    (path / ".probe").unlink()
    _make_writable(path)
    return False


def _make_writable(path: Path) -> None:
    if os.geteuid() == 0:
        subprocess.run(["chattr", "-i", str(path)], capture_output=True)
    path.chmod(0o755)


@pytest.mark.parametrize("when", ["step", "epoch_end"])  # last.ckpt every step, or the epoch-end checkpoints
def test_a_run_directory_made_read_only_mid_run_is_one_message_and_exit_3(layout, tmp_path, capsys, monkeypatch, when):
    out = tmp_path / "runs" / "e" / "mask" / "fold0"
    made = []

    class ReadOnlyMidRun(checkpoints.pl.Callback):
        def on_train_batch_end(self, trainer, *args):  # after the first optimizer step, before any epoch-end write
            if not made and trainer.global_step >= 1:
                made.append(_make_read_only(out))

    real = checkpoints.training_callbacks
    monkeypatch.setattr(train_cli, "training_callbacks", lambda *a, **k: [ReadOnlyMidRun(), *real(*a, **k)])
    every = "trainer.checkpoint_every_n_steps=" + ("1" if when == "step" else "0")
    try:
        code = _cli(layout, tmp_path, "--set", every, "--set", "trainer.effective_batch=8")
    finally:
        _make_writable(out)
    if not made[0]:
        pytest.skip("this machine cannot make a directory read-only for this process")
    err = _one_error_line(capsys.readouterr().err)
    assert code == 3 and str(out) in err and "writable" in err and "--resume" in err
    assert "Free some space" not in err
    assert _cli(layout, tmp_path, "--resume") == 0  # writable again: the run finishes
    assert (out / "done.json").is_file() and not list(out.glob("*.tmp"))


# --- Ctrl-C ----------------------------------------------------------------------------------------------------


def test_ctrl_c_during_the_image_cache_build_exits_130_without_a_traceback(layout, tmp_path, capsys, monkeypatch):
    class CtrlC:  # the progress bar of the build: Ctrl-C arrives while the main process waits on the workers
        n = 0

        def __init__(self, *args, **kwargs):
            pass

        def update(self, n):
            raise KeyboardInterrupt

        def close(self):
            pass

    monkeypatch.setattr(image_cache, "tqdm", CtrlC)
    try:
        code = _cli(layout, tmp_path, "--prepare-only")
    except KeyboardInterrupt:
        pytest.fail("Ctrl-C came out of train.py as a KeyboardInterrupt traceback")
    assert code == 130
    err = capsys.readouterr().err
    assert "interrupted (Ctrl-C)" in err and "Traceback" not in err
    assert not list((tmp_path / "cache").glob("*/images-train-*.json"))  # no cache index: it is rebuilt next time


WORKERS_CTRL_C = """
import os, sys, time
sys.path.insert(0, sys.argv[1])
from datamodules import cache
fill = cache._fill

def slow_fill(task):
    open(os.path.join(sys.argv[2], f"filling-{os.getpid()}"), "w").close()
    time.sleep(0.5)
    return fill(task)

cache._fill = slow_fill
import train
sys.exit(train.main(sys.argv[3:]))
"""


def test_ctrl_c_to_the_whole_process_group_during_the_cache_build_leaves_no_worker_traceback(layout, tmp_path):
    argv = [*tiny_argv(layout, tmp_path, *SETTINGS), "--prepare-only"]
    proc = subprocess.Popen(
        [sys.executable, "-c", WORKERS_CTRL_C, str(ROOT), str(tmp_path), *argv],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, as a terminal's foreground job
    )
    deadline = time.monotonic() + 120
    while len(list(tmp_path.glob("filling-*"))) < 2:  # both build processes started and at work
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does: every process of the job gets it
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-3000:]
    assert "interrupted (Ctrl-C)" in err and "Traceback" not in err and "KeyboardInterrupt" not in err


# --- prediction without the image cache ------------------------------------------------------------------------


def test_an_undecodable_eval_image_without_the_cache_is_one_line(synthetic, tmp_path, capsys):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(synthetic, data)
    cfg = quick_cfg(data, tmp_path, "exp=p", "data.n_folds=2", *SETTINGS, "trainer.limit_train_batches=2")
    for task in ("mask", "gender", "age"):
        train_cli.train(cfg, task, 0)
    broken = sorted((data / "eval" / "images").glob("[!.]*"))[2]
    broken.write_bytes(b"not an image at all")
    argv = ["--exp", "p", "--set", f"runs_dir={tmp_path / 'runs'}", "--set", "data.cache_images=false"]
    argv += ["--set", "trainer.progress_bar=false"]
    assert predict.main([*argv, "--workers", "1", "--tta", "none"]) == 2
    err = _one_error_line(capsys.readouterr().err)
    assert str(broken) in err and "Original Traceback" not in err
