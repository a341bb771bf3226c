"""Short CPU training runs on tiny synthetic data: outputs, W&B offline runs, resume, better than chance."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
import yaml
from conftest import offline_wandb_records, quick_cfg
from sklearn.metrics import f1_score

import train as train_cli

# macro F1 a quick run must beat; chance is about 0.33 (mask, age) and 0.5 (gender)
CHANCE_MARGIN = {"mask": 0.6, "gender": 0.6, "age": 0.45}


@pytest.mark.parametrize("task", ["mask", "gender", "age"])
def test_one_fold_writes_outputs_and_beats_chance(synthetic, tmp_path, task):
    cfg = quick_cfg(synthetic, tmp_path)
    out = train_cli.train(cfg, task, 0)
    assert {"best.ckpt", "last.ckpt", "config.yaml", "metrics.csv", "oof.csv"} <= {p.name for p in out.iterdir()}
    assert yaml.safe_load((out / "config.yaml").read_text())["model"]["backbone"] == "test_resnet"
    metrics = pd.read_csv(out / "metrics.csv")
    assert metrics["epoch"].tolist() == [0, 1, 2, 3, 4]
    assert {"val/f1", "val/acc", "val/f1_best", "val/loss", "train/loss_epoch"} <= set(metrics.columns)
    assert (metrics["val/f1_best"].diff().dropna() >= 0).all()
    oof = pd.read_csv(out / "oof.csv")
    n_classes = {"mask": 3, "gender": 2, "age": 3}[task]
    probs = oof[[f"prob_{k}" for k in range(n_classes)]].to_numpy()
    assert abs(probs.sum(1) - 1).max() < 1e-4
    assert set(oof["fold"]) == {0}
    f1 = f1_score(oof["label"], probs.argmax(1), average="macro")
    assert f1 > CHANCE_MARGIN[task], f"{task}: out-of-fold macro F1 {f1:.3f} is no better than chance"
    # the checkpoint loads safely and carries its own preprocessing and labels
    ckpt = torch.load(out / "best.ckpt", weights_only=True)
    assert ckpt["hyper_parameters"]["task"] == task and len(ckpt["hyper_parameters"]["mean"]) == 3


def test_same_seed_same_metrics(synthetic, tmp_path):
    runs = []
    for name in ("a", "b"):
        cfg = quick_cfg(synthetic, tmp_path, f"exp={name}", "trainer.max_epochs=1")
        runs.append(pd.read_csv(train_cli.train(cfg, "gender", 1) / "metrics.csv"))
    pd.testing.assert_frame_equal(runs[0].drop(columns="step"), runs[1].drop(columns="step"))


def test_fold_all_makes_one_wandb_run_per_fold(synthetic, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    argv = [
        "--task", "mask", "--fold", "all", "--wandb", "offline", "--data-dir", str(synthetic), "--exp", "wb",
        "--config", str(train_cli.__file__).replace("train.py", "configs/quick.yaml"),
        "--set", "data.n_folds=2", "--set", "model.backbone=test_resnet", "--set", "trainer.max_epochs=1",
        "--set", "augment.resize_height=64", "--set", "augment.resize_width=48", "--set", "augment.crop=48",
        "--set", "loader.num_workers=0", "--set", "trainer.progress_bar=false",
    ]  # fmt: skip
    assert train_cli.main(argv) == 0
    runs = sorted((tmp_path / "wandb" / "wandb").glob("offline-run-*"))
    assert len(runs) == 2
    # an offline run keeps its records (config, metrics, media) in run-<id>.wandb until `wandb sync`
    records = [offline_wandb_records(run) for run in runs]
    for data in records:
        for logged in (b"val/f1", b"train/loss", b"test_resnet", b"wb-mask", b"val/worst_images"):
            assert logged in data
    assert sorted(b"mask-fold1" in data for data in records) == [False, True]
    assert sorted(b"mask-fold0" in data for data in records) == [False, True]
    assert all((run / "files" / "media" / "table").is_dir() for run in runs)
    assert {p.name for p in (tmp_path / "runs" / "wb" / "mask").iterdir()} == {"fold0", "fold1"}


def test_resume_continues_from_the_last_checkpoint(synthetic, tmp_path):
    cfg = quick_cfg(synthetic, tmp_path, "trainer.max_epochs=1")
    out = train_cli.train(cfg, "age", 2)
    first = torch.load(out / "last.ckpt", weights_only=True)
    assert first["epoch"] == 0
    cfg.trainer.max_epochs = 2
    train_cli.train(cfg, "age", 2, resume=True)
    second = torch.load(out / "last.ckpt", weights_only=True)
    assert second["global_step"] == 2 * first["global_step"]  # one more epoch, not two from scratch
    assert pd.read_csv(out / "metrics.csv")["epoch"].tolist() == [0, 1]


def test_cli_errors_are_one_line(synthetic, tmp_path, capsys):
    code = train_cli.main(
        ["--task", "age", "--fold", "7", "--data-dir", str(synthetic), "--set", f"runs_dir={tmp_path}"]
    )
    assert code == 2 and "fold '7' does not exist" in capsys.readouterr().err
    code = train_cli.main(["--set", "optim.lrr=1", "--wandb", "disabled"])
    assert code == 2 and "unknown config key optim.lrr" in capsys.readouterr().err


def test_full_mode_keeps_the_final_checkpoint_and_has_no_validation(synthetic, tmp_path):
    cfg = quick_cfg(synthetic, tmp_path, "trainer.max_epochs=1")
    out = train_cli.train(cfg, "mask", "full")
    assert out.name == "foldfull"
    assert (out / "best.ckpt").is_file() and not (out / "oof.csv").exists()
    ckpt = torch.load(out / "best.ckpt", weights_only=True)
    assert ckpt["epoch"] == 0
    assert "val/f1" not in pd.read_csv(out / "metrics.csv").columns


def test_accumulation_reaches_the_effective_batch():
    from configs.config import load_config

    cfg = load_config(None, [], ["loader.batch_size=64", "trainer.accelerator=cpu"])
    hw = train_cli.hardware(cfg)
    assert hw["accumulate_grad_batches"] == 4 and hw["precision"] == "32-true"
    cfg = load_config(None, [], ["loader.batch_size=48", "trainer.devices=2", "trainer.accelerator=cpu"])
    assert train_cli.hardware(cfg)["accumulate_grad_batches"] == 3  # 2 x 48 x 3 = 288 >= 256


def test_validation_is_also_scored_at_the_competitions_age_cuts(synthetic, tmp_path):
    from core.tasks import age_group

    cfg = quick_cfg(synthetic, tmp_path, "trainer.max_epochs=1", "data.age_cuts=[30, 58]")
    out = train_cli.train(cfg, "age", 0)
    oof = pd.read_csv(out / "oof.csv")  # the best (here: the only) epoch's predictions, with the raw age
    competition = age_group(oof["age"], (30, 60))
    assert (competition != oof["label"]).any()  # people aged 58 or 59: the two targets differ
    pred = oof[["prob_0", "prob_1", "prob_2"]].to_numpy().argmax(1)
    metrics = pd.read_csv(out / "metrics.csv").iloc[0]
    own = f1_score(oof["label"], pred, average="macro", labels=[0, 1, 2], zero_division=0)
    at_30_60 = f1_score(competition, pred, average="macro", labels=[0, 1, 2], zero_division=0)
    assert metrics["val/f1"] == pytest.approx(own, abs=1e-4)
    assert metrics["val/f1_competition"] == pytest.approx(at_30_60, abs=1e-4)
    assert metrics["val/f1_competition_best"] == pytest.approx(at_30_60, abs=1e-4)
