"""Prediction end to end on tiny synthetic data: 3 tasks x 2 folds, ensembles, TTA, submission, OOF."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import offline_wandb_records, quick_cfg

import inference.models
import inference.predictor
import predict
import train
from datamodules.decode import read_rgb
from datamodules.layout import read_eval
from datamodules.transforms import geometry_only


@pytest.fixture(scope="module")
def experiment(synthetic, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("exp")
    for task in ("mask", "gender", "age"):
        for fold in (0, 1):
            cfg = quick_cfg(synthetic, tmp, "data.n_folds=2", "trainer.max_epochs=1", "exp=e2e")
            train.train(cfg, task, fold)
    return tmp


def _args(experiment, *extra):
    return [
        "--exp", "e2e", "--set", f"runs_dir={experiment / 'runs'}", "--set", "loader.num_workers=0", *extra,
    ]  # fmt: skip


def test_soft_ensemble_writes_a_complete_submission_in_info_order(experiment, synthetic, capsys):
    assert predict.main(_args(experiment, "--ensemble", "soft", "--tta", "flip")) == 0
    sub = pd.read_csv(experiment / "runs" / "e2e" / "submission.csv")
    info = pd.read_csv(synthetic / "eval" / "info.csv")
    assert list(sub.columns) == ["ImageID", "ans"]
    assert sub["ImageID"].tolist() == info["ImageID"].tolist()
    assert sub["ans"].between(0, 17).all() and sub["ans"].notna().all()
    probs = pd.read_csv(experiment / "runs" / "e2e" / "submission_probs.csv")
    for task, n in (("mask", 3), ("gender", 2), ("age", 3)):
        assert np.allclose(probs[[f"{task}_{k}" for k in range(n)]].sum(axis=1), 1, atol=1e-4)
    assert "eval vs" in capsys.readouterr().out  # the synthetic truth/ is scored


def test_flip_tta_averages_the_plain_and_mirrored_views(experiment, synthetic):
    ckpt = experiment / "runs" / "e2e" / "gender" / "fold0" / "best.ckpt"
    model = inference.models.load_model(ckpt, torch.device("cpu"))
    frame = read_eval(synthetic)
    cfg = quick_cfg(synthetic, experiment, "loader.num_workers=0")
    plain, flipped = inference.predictor.predict_group([model], frame, [False, True], cfg, synthetic)[0]
    (only_plain,) = inference.predictor.predict_group([model], frame, [False], cfg, synthetic)[0]
    assert np.array_equal(plain, only_plain)
    aug = model.cfg.augment
    with torch.no_grad():
        img = torch.from_numpy(geometry_only(aug)(image=read_rgb(frame["file"][0]))["image"]).permute(2, 0, 1)
        expected = model(img.flip(-1)[None]).softmax(1).numpy()[0]
        assert np.allclose(plain[0], model(img[None]).softmax(1).numpy()[0], atol=1e-5)
    assert np.allclose(flipped[0], expected, atol=1e-5)
    assert not np.allclose(plain, flipped)
    out, _, _ = inference.predictor.predict_eval(cfg, experiment / "runs" / "e2e", None, "soft", "flip", ["0"])
    tta = out[["gender_0", "gender_1"]].to_numpy()
    assert np.allclose(tta, (plain + flipped) / 2, atol=1e-5)


def test_hard_and_none_ensembles(experiment, capsys):
    assert predict.main(_args(experiment, "--ensemble", "hard", "--out", str(experiment / "hard.csv"))) == 0
    assert len(pd.read_csv(experiment / "hard.csv")) > 0
    assert predict.main(_args(experiment, "--ensemble", "none")) == 2
    assert "one checkpoint per task" in capsys.readouterr().err
    assert (
        predict.main(_args(experiment, "--ensemble", "none", "--folds", "1", "--out", str(experiment / "one.csv"))) == 0
    )


def test_oof_scores_merge_the_three_tasks(experiment, capsys, monkeypatch):
    monkeypatch.chdir(experiment)
    assert predict.main(_args(experiment, "--oof", "--wandb", "offline")) == 0
    (run,) = (experiment / "wandb" / "wandb").glob("offline-run-*")
    data = offline_wandb_records(run)
    assert b"task_f1/age" in data and b"oof/confusion_matrix" in data
    report = json.loads((experiment / "runs" / "e2e" / "oof_scores.json").read_text())
    assert report["images"] == 300 * 7  # every training image is out-of-fold exactly once
    assert 0 < report["f1"] <= 1 and 0 < report["accuracy"] <= 1
    assert set(report["task_f1"]) == {"mask", "gender", "age"} and len(report["class_f1"]) == 18
    assert set(report["fold_f1"]) == {"0", "1"}
    assert (experiment / "runs" / "e2e" / "oof_confusion.png").stat().st_size > 1000
    assert "macro F1" in capsys.readouterr().out


def test_a_missing_task_is_named(experiment, capsys):
    copy = experiment / "runs" / "partial"
    shutil.copytree(experiment / "runs" / "e2e", copy)
    shutil.rmtree(copy / "age")
    assert predict.main(["--exp", "partial", "--set", f"runs_dir={experiment / 'runs'}"]) == 2
    assert "task(s) age" in capsys.readouterr().err
