"""Bad input that used to fail with a traceback, a hang or silently: each ends with one line naming the culprit
(the setting, the file, the person) and a non-zero exit code, before any work."""

from __future__ import annotations

import logging
import os
import signal
import threading

import pandas as pd
import pytest
import torch
from conftest import tiny_argv

import predict
import train
from analysis import compare
from analysis.noise import command as noise_command
from callbacks.resume import SIGINT_EXIT
from callbacks.wandb_run import log_report, resolve_mode
from configs.config import load_config
from core.errors import ConfigError, DataError, RunError
from datamodules.decode import file_problem, read_rgb
from datamodules.layout import read_eval, read_train
from datamodules.relabel import apply_relabel
from datamodules.sampler import BalancedSampler
from datamodules.scan import check_image
from lightning_modules.weights import check_weights
from rundir.layout import exp_dir
from rundir.lock import RunLock


@pytest.mark.parametrize(
    "override, named",
    [
        ("optim.lr=nan", "optim.lr"),
        ("optim.lr=.inf", "optim.lr"),
        ("optim.weight_decay=-0.1", "optim.weight_decay"),
        ("trainer.limit_train_batches=0", "trainer.limit_train_batches"),
        ("trainer.limit_train_batches=2.5", "trainer.limit_train_batches"),
        ("trainer.checkpoint_every_n_steps=-1", "trainer.checkpoint_every_n_steps"),
        ("model.pretrained_file=''", "model.pretrained_file"),
        ("exp=../../x", "exp"),
    ],
)
def test_values_a_setting_cannot_take_are_refused_naming_the_key(override, named):
    with pytest.raises(ConfigError, match=named):
        load_config(None, [], [override])


def test_a_fraction_or_a_whole_number_of_batches_is_accepted():
    assert load_config(None, [], ["trainer.limit_train_batches=0.25"]).trainer.limit_train_batches == 0.25
    assert load_config(None, [], ["trainer.limit_train_batches=10"]).trainer.limit_train_batches == 10


def test_an_experiment_name_is_one_folder_under_runs(tmp_path, capsys):
    with pytest.raises(ConfigError, match="experiment name"):
        exp_dir(tmp_path / "runs", "../../x")
    code = train.main(["--exp", "../../x", "--prepare-only", "--data-dir", str(tmp_path / "none")])
    assert code == 2 and "experiment name '../../x'" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_an_empty_weights_file_is_named(tmp_path):
    empty = tmp_path / "weights.pth"
    empty.touch()
    cfg = load_config(None, [], ["model.backbone=resnet10t", f"model.pretrained_file={empty}"])
    with pytest.raises(ConfigError, match=r"model.pretrained_file: .*weights.pth cannot be read .*EOFError"):
        check_weights(cfg.model)


# ------------------------------------------------------------------ image paths: one check for every reader


def _spoil_eval_image(layout, how: str) -> str:
    """Replace the first evaluation image by a FIFO, a dangling link or a loop of links; return its name."""
    images = layout / "eval" / "images"
    image = sorted(p for p in images.iterdir() if not p.name.startswith("."))[0]
    image.unlink()
    if how == "fifo":
        os.mkfifo(image)
    elif how == "dangling":
        image.symlink_to(layout / "nowhere.jpg")
    else:
        image.symlink_to(image.name)  # a link to itself
    return image.name


@pytest.mark.parametrize("how, why", [("fifo", "not a regular file"), ("dangling", "link"), ("loop", "loop")])
def test_an_eval_image_that_is_no_file_is_named_before_any_model_is_loaded(layout, how, why):
    name = _spoil_eval_image(layout, how)
    with pytest.raises(DataError, match=rf"info.csv row \d+: .*{name} .*{why}"):
        read_eval(layout)


def test_decoding_a_fifo_stops_at_once_instead_of_waiting_for_a_writer(tmp_path):
    fifo = tmp_path / "photo.jpg"
    os.mkfifo(fifo)
    found: list[BaseException] = []
    reader = threading.Thread(target=lambda: _catch(found, read_rgb, str(fifo)), daemon=True)
    reader.start()
    reader.join(timeout=20)
    if reader.is_alive():  # unblock the waiting open so that the test process can end
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
    assert not reader.is_alive(), "decoding a FIFO hangs"
    assert isinstance(found[0], DataError) and "photo.jpg: is not a regular file" in str(found[0])
    assert check_image(str(fifo), None)[0] == file_problem(str(fifo))  # the training check says the same


def _catch(found: list, fn, *args) -> None:
    try:
        fn(*args)
    except BaseException as exc:  # noqa: BLE001 (handed to the test thread)
        found.append(exc)


# ------------------------------------------------------------------ --out: checked before the work


def test_compare_and_the_noise_finder_refuse_an_out_folder_that_is_a_file(tmp_path, capsys):
    taken = tmp_path / "notes.txt"
    taken.write_text("mine")
    runs = ["--runs-dir", str(tmp_path / "runs")]
    assert compare.main(["--exp", "a", "--exp", "b", *runs, "--out", str(taken)]) == 2
    assert f"--out {taken} is a file; name a folder" in capsys.readouterr().err
    assert noise_command.main(["--exp", "a", *runs, "--out", str(taken)]) == 2
    assert f"--out {taken} is a file; name a folder" in capsys.readouterr().err
    assert taken.read_text() == "mine"


def test_predict_checks_that_out_can_be_written_before_predicting(tmp_path, capsys):
    (tmp_path / "runs" / "e").mkdir(parents=True)  # no checkpoints: the prediction would fail after the check
    taken = tmp_path / "notes.txt"
    taken.write_text("mine")
    code = predict.main(["--exp", "e", "--set", f"runs_dir={tmp_path / 'runs'}", "--out", str(taken / "sub.csv")])
    assert code == 2 and f"{taken} is a file, not a folder" in capsys.readouterr().err


# ------------------------------------------------------------------ the environment and the machine


def test_wandb_mode_disabled_in_the_environment_turns_off_the_reports_of_predict(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    cfg = load_config(None, [], [f"wandb.dir={tmp_path / 'wandb'}"])  # wandb.mode: auto
    log_report(cfg, "oof", {"f1": 0.5}, {})  # predict.py --oof's report
    assert not (tmp_path / "wandb").exists()
    assert resolve_mode("offline") == "offline"  # a mode asked for explicitly wins


def test_gpus_on_a_machine_without_gpus_is_an_error_naming_them_before_any_work(layout, tmp_path, capsys):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    assert train.main([*tiny_argv(layout, tmp_path), "--task", "age", "--fold", "0", "--gpus", "0,1"]) == 2
    assert "--gpus 0,1: asked for GPU(s) 0, 1, but no CUDA GPU is visible" in capsys.readouterr().err
    assert not (tmp_path / "cache").exists()  # stopped before preparing the data


# ------------------------------------------------------------------ corrections files


def test_an_unquoted_id_with_leading_zeros_names_that_person_not_an_octal_number(layout, tmp_path):
    fix = tmp_path / "fix.yaml"
    fix.write_text("gender: {000001: male}\nage: {000002: 31}\nexclude_people: [000003]\n")  # 000001: octal 1
    fixed, changes = apply_relabel(read_train(layout), fix)
    assert (fixed.loc[fixed["id"] == "000001", "gender"] == 0).all()
    assert (fixed.loc[fixed["id"] == "000002", "age"] == 31).all()
    assert "000003" not in set(fixed["id"])


# ------------------------------------------------------------------ Ctrl-C twice


def test_ctrl_c_twice_exits_130_with_the_resume_command(layout, tmp_path, monkeypatch, caplog):
    iterate = BalancedSampler.__iter__

    def ctrl_c_twice_at_batch_1(self):
        for n, index in enumerate(iterate(self)):
            if n == 8:
                os.kill(os.getpid(), signal.SIGINT)  # the first: stop at the end of the step, saving last.ckpt
                os.kill(os.getpid(), signal.SIGINT)  # the second: stop at once
            yield index

    monkeypatch.setattr(BalancedSampler, "__iter__", ctrl_c_twice_at_batch_1)
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    argv = [*tiny_argv(layout, tmp_path), "--task", "age", "--fold", "0", "--set", "trainer.progress_bar=false"]
    try:
        with caplog.at_level(logging.INFO), pytest.raises(SystemExit) as stopped:
            train.main(argv)
    finally:
        signal.signal(signal.SIGINT, before)
    assert stopped.value.code == SIGINT_EXIT
    assert "Stopped by Ctrl-C; nothing was saved yet. Resume with:" in caplog.text


def test_a_mid_epoch_resume_keeps_that_epochs_lr_in_metrics_csv(layout, tmp_path, monkeypatch):
    iterate = BalancedSampler.__iter__

    def ctrl_c_at_batch_2(self):
        for n, index in enumerate(iterate(self)):
            if n == 16 and self.epoch == 0 and self.start == 0:
                os.kill(os.getpid(), signal.SIGINT)  # stop after this step, saving last.ckpt mid-epoch
            yield index

    monkeypatch.setattr(BalancedSampler, "__iter__", ctrl_c_at_batch_2)
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    settings = ["trainer.progress_bar=false", "trainer.effective_batch=8", "trainer.max_epochs=2"]
    argv = [*tiny_argv(layout, tmp_path, *settings), "--task", "age", "--fold", "0", "--exp", "lr"]
    try:
        with pytest.raises(SystemExit) as stopped:
            train.main(argv)
        assert stopped.value.code == SIGINT_EXIT
        assert train.main([*argv, "--resume"]) == 0
    finally:
        signal.signal(signal.SIGINT, before)
    metrics = pd.read_csv(tmp_path / "runs" / "lr" / "age" / "fold0" / "metrics.csv")
    assert metrics["epoch"].tolist() == [0, 1]
    assert metrics["lr"].tolist() == pytest.approx([3e-3, 1.5e-3])  # the quick preset's cosine over 2 epochs


# ------------------------------------------------------------------ damaged files the framework wrote itself


def test_a_resume_goes_on_past_damaged_files_of_its_own(layout, tmp_path, caplog):
    settings = ["trainer.progress_bar=false", "trainer.max_epochs=1"]
    argv = [*tiny_argv(layout, tmp_path, *settings), "--task", "age", "--fold", "0", "--exp", "d"]
    assert train.main(argv) == 0
    run = tmp_path / "runs" / "d" / "age" / "fold0"
    (run / "metrics.csv").write_bytes(b"\xff\xfe\x00garbage")
    (run / "done.json").write_text("[1]")
    (run / ".lock").write_bytes(b"\x00\x01 not a pid")
    for split in (tmp_path / "cache").glob("*/splits-*.csv"):
        split.write_text("garbage\n1\n")
    for index in (tmp_path / "cache").glob("*/images-*.json"):
        index.write_text("[]")
    with caplog.at_level(logging.WARNING):
        assert train.main([*argv, "--resume", "--set", "trainer.max_epochs=2"]) == 0
    assert pd.read_csv(run / "metrics.csv")["epoch"].tolist() == [1]  # the damaged table was started anew
    assert "metrics.csv cannot be read as a metrics table" in caplog.text
    assert "cannot be read as a split table" in caplog.text


def test_a_lock_that_is_no_file_is_named(tmp_path):
    (tmp_path / ".lock").mkdir()
    with pytest.raises(RunError, match=r"\.lock cannot be used as the run's lock .*remove it"):
        RunLock(tmp_path).acquire()
