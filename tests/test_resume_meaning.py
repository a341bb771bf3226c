"""What a resumed, moved, overwritten or diverged run keeps meaning: a resume may change only where, how long
and how visibly it trains (not the precision, compile, the weights' average or the corrections' labels), a moved
run keeps its best score, the last finished run survives interrupted overwrites, and a non-finite loss or model
is an error, never a finished run or a submission of class 0."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
import torch
from conftest import tiny_argv

import predict
import train as train_cli
from configs.config import Config
from lightning_modules.base import ClassifierModule
from rundir.claim import claim_run_dir, settings_that_differ, settle_replaced
from rundir.layout import REPLACED

SETTINGS = ["model.backbone=test_resnet", "trainer.max_epochs=1", "trainer.progress_bar=false"]


def _cli(layout: Path, tmp_path: Path, *extra: str, task: str = "mask") -> int:
    argv = [*tiny_argv(layout, tmp_path, *SETTINGS), "--exp", "r", "--task", task, "--fold", "0", *extra]
    return train_cli.main(argv)


def _snapshot(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in out.iterdir() if p.is_file() and p.name != ".lock"}


def _one_error(capsys) -> str:
    """The single ``error:`` line a failed command printed (and no traceback)."""
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


# --- what a resume may change -----------------------------------------------------------------------------------------


def test_resume_refuses_precision_compile_and_ema_but_takes_epochs_patience_and_logging(layout, tmp_path, capsys):
    assert _cli(layout, tmp_path) == 0
    out = tmp_path / "runs" / "r" / "mask" / "fold0"
    before = _snapshot(out)
    more = ["--resume", "--set", "trainer.max_epochs=2"]
    assert _cli(layout, tmp_path, *more, "--set", "trainer.ema_decay=0.9") == 2
    err = _one_error(capsys)
    assert "trainer.ema_decay: checkpoint 0.0, asked 0.9" in err and "--overwrite" in err
    changed = ["--set", "trainer.precision=bf16-mixed", "--set", "trainer.compile=true"]
    assert _cli(layout, tmp_path, *more, *changed) == 2
    err = _one_error(capsys)
    assert "trainer.precision: checkpoint 'auto', asked 'bf16-mixed'" in err and "trainer.compile" in err
    assert _snapshot(out) == before  # nothing written
    harmless = ["trainer.early_stopping_patience=3", "trainer.log_every_n_steps=1", "trainer.worst_images=2"]
    harmless.append("trainer.parallel_jobs=4")  # what --gpus sets: only the loader workers change
    assert _cli(layout, tmp_path, *more, *[a for s in harmless for a in ("--set", s)]) == 0
    assert pd.read_csv(out / "metrics.csv")["epoch"].tolist() == [0, 1]


def test_a_setting_the_checkpoint_does_not_name_counts_as_its_default():
    saved = Config().to_dict()
    del saved["model"]["drop_rate"]  # a checkpoint saved before the setting existed
    assert settings_that_differ(saved, Config().to_dict()) == []
    asked = Config().to_dict()
    asked["model"]["drop_rate"] = 0.2
    assert settings_that_differ(saved, asked) == ["model.drop_rate: checkpoint 0.0, asked 0.2"]


# --- the corrections files are part of what a checkpoint was trained on -----------------------------------------------


def test_resume_after_the_corrections_changed_is_refused(layout, tmp_path, capsys):
    fixes = tmp_path / "fixes.yaml"
    fixes.write_text('gender: {"000001": male}\n')
    relabel = ["--set", f"data.relabel=[{fixes}]"]
    assert _cli(layout, tmp_path, *relabel) == 0
    out = tmp_path / "runs" / "r" / "mask" / "fold0"
    before = _snapshot(out)
    fixes.write_text('gender: {"000002": female}\n')  # the same file, other corrections
    assert _cli(layout, tmp_path, *relabel, "--resume", "--set", "trainer.max_epochs=2") == 2
    err = _one_error(capsys)
    assert "other labels" in err and str(fixes) in err and "--overwrite" in err
    assert _snapshot(out) == before
    fixes.write_text('# reviewed by hand\ngender: {"000001": male}  # as before\n')  # only comments differ
    assert _cli(layout, tmp_path, *relabel, "--resume", "--set", "trainer.max_epochs=2") == 0


# --- a moved run keeps its best score ---------------------------------------------------------------------------------


def test_a_moved_run_resumed_for_more_epochs_keeps_its_best_checkpoint(layout, tmp_path, monkeypatch):
    assert _cli(layout, tmp_path) == 0
    shutil.move(tmp_path / "runs" / "r", tmp_path / "runs" / "moved")  # the experiment renamed
    out = tmp_path / "runs" / "moved" / "mask" / "fold0"
    best = (out / "best.ckpt").read_bytes()
    update = ClassifierModule.update_scores

    def always_wrong(self, probs, labels, competition):  # the resumed epoch scores val/f1 = 0
        wrong = torch.nn.functional.one_hot((labels + 1) % probs.shape[1], probs.shape[1]).float()
        update(self, wrong, labels, competition)

    monkeypatch.setattr(ClassifierModule, "update_scores", always_wrong)
    assert _cli(layout, tmp_path, "--exp", "moved", "--resume", "--set", "trainer.max_epochs=2") == 0
    metrics = pd.read_csv(out / "metrics.csv")
    assert metrics["epoch"].tolist() == [0, 1] and metrics["val/f1"].iloc[1] == 0
    assert (out / "best.ckpt").read_bytes() == best  # not replaced by the worse epoch
    done = json.loads((out / "done.json").read_text())
    assert done["val_f1_best"] == pytest.approx(metrics["val/f1"].iloc[0])


# --- a non-finite loss or model is an error ---------------------------------------------------------------------------


def test_a_non_finite_loss_stops_the_run_with_where_and_the_likely_setting(layout, tmp_path, capsys, monkeypatch):
    step = ClassifierModule.training_step

    def diverging(self, batch, batch_idx):
        loss = step(self, batch, batch_idx)
        return loss * float("nan") if batch_idx >= 2 else loss

    monkeypatch.setattr(ClassifierModule, "training_step", diverging)
    assert _cli(layout, tmp_path) == 2
    err = _one_error(capsys)
    assert "epoch 0, batch 2 " in err and "optim.lr=0.003" in err and "--overwrite" in err
    out = tmp_path / "runs" / "r" / "mask" / "fold0"
    assert not (out / "done.json").exists() and not (out / "oof.csv").exists()


def test_prediction_refuses_a_model_with_non_finite_weights(layout, tmp_path, capsys):
    assert _cli(layout, tmp_path, task="multihead") == 0
    ckpt = tmp_path / "runs" / "r" / "multihead" / "fold0" / "best.ckpt"
    saved = torch.load(ckpt, weights_only=True)
    head = next(k for k in saved["state_dict"] if k.startswith("heads.mask") and k.endswith("weight"))
    saved["state_dict"][head] = torch.full_like(saved["state_dict"][head], float("nan"))
    torch.save(saved, ckpt)
    (ckpt.parent / "oof_flip.csv").unlink()  # so that --oof --tta flip predicts it anew
    settings = [f"runs_dir={tmp_path / 'runs'}", f"data.cache_dir={tmp_path / 'cache'}", *SETTINGS[2:]]
    argv = ["--exp", "r", "--wandb", "disabled", *[a for s in settings for a in ("--set", s)], "--folds", "0"]
    for extra in ([], ["--oof", "--tta", "flip"]):
        assert predict.main([*argv, *extra]) == 2
        err = _one_error(capsys)
        assert str(ckpt) in err and "NaN or infinite probabilities" in err and "--overwrite" in err
    assert not (tmp_path / "runs" / "r" / "submission.csv").exists()


# --- the last finished run survives overwrites that do not finish -----------------------------------------------------


def _finished_run(out: Path) -> None:
    out.mkdir(parents=True)
    for name in ("best.ckpt", "last.ckpt", "oof.csv", "oof_flip.csv", "config.yaml", "metrics.csv"):
        (out / name).write_text(f"finished {name}")
    (out / "done.json").write_text(json.dumps({"max_epochs": 1}))


def test_two_interrupted_overwrites_keep_the_last_finished_run(tmp_path):
    out = tmp_path / "run"
    _finished_run(out)
    for attempt in ("first", "second"):  # each --overwrite saves a checkpoint, then is stopped
        assert claim_run_dir(out, resume=False, overwrite=True, max_epochs=1)
        (out / "config.yaml").write_text(f"{attempt} config")
        (out / "last.ckpt").write_text(f"{attempt} last.ckpt")
        settle_replaced(out)  # as train() does when it stops
        assert (out / REPLACED / "done.json").is_file()
        assert (out / REPLACED / "best.ckpt").read_text() == "finished best.ckpt"
    # the second attempt can be resumed; the finished run goes only once it finishes
    assert claim_run_dir(out, resume=True, overwrite=False, max_epochs=1)
    assert (out / "last.ckpt").read_text() == "second last.ckpt"
    (out / "done.json").write_text("second done.json")
    settle_replaced(out)
    assert not (out / REPLACED).exists() and (out / "done.json").read_text() == "second done.json"


def test_an_overwrite_stopped_before_its_checkpoint_gives_back_the_finished_run_not_an_unfinished_one(tmp_path):
    out = tmp_path / "run"
    _finished_run(out)
    assert claim_run_dir(out, resume=False, overwrite=True, max_epochs=1)
    (out / "last.ckpt").write_text("unfinished last.ckpt")
    settle_replaced(out)
    assert claim_run_dir(out, resume=False, overwrite=True, max_epochs=1)  # the unfinished one is dropped
    assert sorted(p.name for p in out.iterdir()) == [REPLACED]
    (out / "config.yaml").write_text("killed before a checkpoint")
    assert claim_run_dir(out, resume=True, overwrite=False, max_epochs=1) is False  # finished: skipped
    assert {p.name: p.read_text() for p in out.iterdir()}["last.ckpt"] == "finished last.ckpt"
    assert (out / "config.yaml").read_text() == "finished config.yaml" and not (out / REPLACED).exists()
