"""The options past the seed: starting weights from a saved file, MixUp/CutMix with mixed targets, the
weights' moving average, the ordinal age head and multi-node settings."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import timm
import torch
from safetensors.torch import save_file
from torch.nn import functional as F

import predict as predict_module
import train as train_module
from configs.config import load_config
from core.errors import ConfigError
from datamodules.datamodule import MaskDataModule
from datamodules.prepare import prepare
from lightning_modules import weights
from lightning_modules.checkpoint import model_from_checkpoint
from lightning_modules.losses import CeF1Loss, F1Loss, FocalLoss, GaussianLoss
from lightning_modules.mixing import build_mixer, mix_batch
from lightning_modules.ordinal import THRESHOLDS, OrdinalHead, OrdinalLoss, cumulative_targets, group_probs
from lightning_modules.task_module import TaskModule
from rundir.layout import BEST_CKPT, OOF, OOF_SCORES
from tests.conftest import QUICK, quick_cfg, tiny_argv, tiny_config

MEAN, STD = [0.5, 0.5, 0.5], [0.25, 0.25, 0.25]


def _cfg(*overrides: str):
    return load_config(None, [QUICK], ["wandb.mode=disabled", *overrides])


# ---------------------------------------------------------------- starting weights


@pytest.mark.parametrize("kind", ["pth", "safetensors"])
def test_weights_arrive_from_a_saved_file(tmp_path, kind):
    torch.manual_seed(0)
    source = timm.create_model("test_resnet", pretrained=False, num_classes=1000)  # an ImageNet-shaped file
    path = tmp_path / f"weights.{kind}"
    if kind == "pth":
        torch.save({"state_dict": source.state_dict()}, path)  # wrapped, as training scripts save them
    else:
        save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(path))
    model = TaskModule("gender", _cfg(f"model.pretrained_file={path}").to_dict(), MEAN, STD)
    loaded, saved = model.model.state_dict(), source.state_dict()
    body = [k for k in saved if not k.startswith("fc.")]
    assert body and all(torch.equal(loaded[k], saved[k]) for k in body)
    assert loaded["fc.weight"].shape == (2, source.num_features)  # the task's own head, not ImageNet's
    fresh = TaskModule("gender", _cfg().to_dict(), MEAN, STD)
    assert not torch.equal(fresh.model.state_dict()[body[0]], saved[body[0]])  # so the test can fail


def test_a_file_of_another_model_is_refused(tmp_path):
    path = tmp_path / "other.pth"
    torch.save(timm.create_model("resnet10t", pretrained=False).state_dict(), path)
    with pytest.raises(ConfigError, match=r"other\.pth does not hold test_resnet weights"):
        TaskModule("mask", _cfg(f"model.pretrained_file={path}").to_dict(), MEAN, STD)


def test_unavailable_weights_stop_before_any_data_work(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(weights, "_cached", lambda name: False)
    monkeypatch.setattr(weights, "_reachable", lambda name, timeout=3.0: False)
    weights._check.cache_clear()
    missing = tmp_path / "no-data"  # never read: the weights are checked first
    argv = ["--config", str(QUICK), "--wandb", "disabled", "--data-dir", str(missing), "--task", "mask", "--fold", "0"]
    assert train_module.main([*argv, "--set", "model.pretrained=true"]) == 2
    err = capsys.readouterr().err
    assert "model.pretrained" in err and "model.pretrained_file=PATH" in err and "Hugging Face cache" in err
    assert "no-data" not in err
    weights._check.cache_clear()
    assert train_module.main([*argv, "--set", f"model.pretrained_file={tmp_path / 'nope.pth'}"]) == 2
    assert "nope.pth is not a file" in capsys.readouterr().err
    weights._check.cache_clear()


def test_a_checkpoint_loads_without_its_starting_weights(tmp_path, monkeypatch):
    model = TaskModule("age", _cfg().to_dict(), MEAN, STD)
    hparams = dict(model.hparams)
    hparams["config"] = {**hparams["config"], "model": {**hparams["config"]["model"], "pretrained": True}}
    path = tmp_path / "best.ckpt"
    torch.save({"state_dict": model.state_dict(), "hyper_parameters": hparams}, path)

    real = timm.create_model

    def no_download(name, pretrained=False, **kwargs):
        assert not pretrained, "a checkpoint holds every weight: nothing may be downloaded"
        return real(name, pretrained=False, **kwargs)

    monkeypatch.setattr(timm, "create_model", no_download)
    loaded = model_from_checkpoint(path, "retrain it")
    assert loaded.cfg.model.pretrained is True  # its settings as trained
    assert torch.equal(loaded.model.fc.weight, model.model.fc.weight)


# ---------------------------------------------------------------- MixUp / CutMix


def test_mixup_mixes_images_and_every_heads_targets_alike():
    torch.manual_seed(0)
    mixer = build_mixer(_cfg("augment.mixup_alpha=1.0").augment)
    images = torch.randint(0, 255, (6, 3, 8, 8), dtype=torch.uint8)
    labels = {
        "mask": torch.tensor([0, 1, 2, 0, 1, 2]),
        "age": cumulative_targets(torch.tensor([20, 30, 40, 50, 60, 19])),
    }
    mixed, targets = mix_batch(mixer, images, labels, {"mask": 3, "age": 3})
    lam = float(targets["mask"][0, 0])  # image 0 (mask 0) mixed with image 5 (mask 2)
    assert 0 < lam < 1
    assert torch.allclose(mixed[0], lam * images[0].float() + (1 - lam) * images[5].float(), atol=1e-3)
    assert torch.allclose(targets["age"][0], lam * labels["age"][0] + (1 - lam) * labels["age"][5])
    assert torch.allclose(targets["mask"].sum(1), torch.ones(6))
    odd = images[:5]
    assert mix_batch(mixer, odd, {"mask": labels["mask"][:5]}, {"mask": 3})[0] is odd  # the last, odd batch
    assert build_mixer(_cfg().augment) is None  # off by default


def test_cutmix_targets_follow_the_pasted_area():
    torch.manual_seed(1)
    mixer = build_mixer(_cfg("augment.cutmix_alpha=1.0").augment)
    images = torch.stack([torch.full((3, 16, 16), v, dtype=torch.uint8) for v in (10, 20, 30, 40)])
    mixed, targets = mix_batch(mixer, images, {"gender": torch.tensor([0, 0, 1, 1])}, {"gender": 2})
    kept = (mixed[0] == 10).float().mean()  # image 0, with a box of image 3 pasted in
    assert torch.isclose(targets["gender"][0, 0], kept, atol=1e-4)


def test_losses_take_soft_targets_and_agree_with_hard_ones():
    torch.manual_seed(0)
    logits, target = torch.randn(8, 3), torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    one_hot = F.one_hot(target, 3).float()
    for loss in (F1Loss(3), CeF1Loss(3, 0.85), FocalLoss(2.0, torch.tensor([1.0, 2.0, 3.0])), GaussianLoss(3, 0.5)):
        assert torch.isclose(loss(logits, target), loss(logits, one_hot), atol=1e-6), type(loss).__name__
    half = 0.5 * one_hot + 0.5 * one_hot.flip(0)
    assert torch.isfinite(CeF1Loss(3, 0.85)(logits, half))


# ---------------------------------------------------------------- the ordinal age head


def test_ordinal_head_gives_ordered_probabilities_and_groups_at_any_cuts():
    torch.manual_seed(0)
    head = OrdinalHead(16)
    cumulative = head(torch.randn(5, 16)).sigmoid()
    assert cumulative.shape == (5, len(THRESHOLDS))
    assert (cumulative[:, 1:] <= cumulative[:, :-1] + 1e-6).all()  # P(age >= t) falls with t
    for cuts in ((30, 60), (30, 58), (25, 45)):
        groups = group_probs(cumulative, cuts)
        assert torch.allclose(groups.sum(1), torch.ones(5)) and (groups >= 0).all()
    ages = torch.tensor([19, 29, 30, 59, 60])
    assert group_probs(cumulative_targets(ages), (30, 60)).argmax(1).tolist() == [0, 0, 1, 1, 2]
    assert group_probs(cumulative_targets(ages), (30, 59)).argmax(1).tolist() == [0, 0, 1, 2, 2]


def test_ordinal_loss_learns_the_ages():
    torch.manual_seed(0)
    features = torch.randn(64, 8)
    ages = (40 + 10 * features[:, 0]).round().clamp(18, 60)
    head, loss_fn = OrdinalHead(8), OrdinalLoss((30, 60), 0.85)
    optimizer = torch.optim.Adam(head.parameters(), lr=0.05)
    target = cumulative_targets(ages)
    first = float(loss_fn(head(features), target))
    for _ in range(200):
        optimizer.zero_grad()
        loss = loss_fn(head(features), target)
        loss.backward()
        optimizer.step()
    assert float(loss) < 0.5 * first
    predicted = group_probs(head(features).sigmoid(), (30, 60)).argmax(1)
    truth = (ages >= 30).long() + (ages >= 60).long()
    assert (predicted == truth).float().mean() > 0.85


@pytest.mark.parametrize("task", ["age", "multihead"])
def test_ordinal_models_train_and_predict_the_groups(synthetic, tmp_path, task):
    cfg = quick_cfg(
        synthetic, tmp_path, "model.age_head=ordinal", "augment.mixup_alpha=0.4", "trainer.limit_train_batches=3"
    )
    dm = MaskDataModule(cfg, task, 0, progress=False)
    dm.prepare_data()
    dm.setup("fit")
    images, labels = next(iter(dm.train_dataloader()))
    assert labels[:, -1].tolist() == [int(a) for a in labels[:, -1]] and int(labels[:, -1].max()) >= 19  # ages
    model = train_module.build_model(cfg, task, dm)
    loss = model.training_step((images, labels), 0)
    assert torch.isfinite(loss)
    loss.backward()
    probs = model.probabilities(images)
    age = probs[:, model.head_slices()["age"]]
    assert torch.allclose(age.sum(1), torch.ones(len(images)), atol=1e-5)
    model.age_cuts = (30, 45)  # re-cut after training
    assert not torch.allclose(model.probabilities(images)[:, model.head_slices()["age"]], age)


def test_the_ordinal_head_refuses_losses_it_cannot_take(tmp_path, capsys):
    argv = tiny_argv(tmp_path / "no-data", tmp_path, "model.age_head=ordinal", "loss.kind=focal")
    assert train_module.main([*argv, "--task", "age", "--fold", "0"]) == 2
    assert "does not apply to the ordinal age head" in capsys.readouterr().err


# ---------------------------------------------------------------- EMA, and one whole run of the options


def test_ema_weights_are_validated_checkpointed_and_predicted(synthetic, tmp_path):
    cfg = quick_cfg(
        synthetic, tmp_path, "trainer.ema_decay=0.9", "trainer.max_epochs=1", "trainer.limit_train_batches=6"
    )
    run = train_module.train(cfg, "multihead", 0)
    ckpt = torch.load(run / BEST_CKPT, map_location="cpu", weights_only=True)
    assert "averaging_state" in ckpt and "current_model_state" in ckpt
    key = "heads.age.weight"
    assert not torch.equal(ckpt["state_dict"][key], ckpt["current_model_state"][key])  # the average is saved
    model = model_from_checkpoint(run / BEST_CKPT, "retrain")
    assert torch.equal(model.heads["age"].weight, ckpt["state_dict"][key])
    # the out-of-fold predictions are the average's (the averaging callback must not load the training
    # weights back over them before the prediction)
    oof = pd.read_csv(run / OOF, dtype={"person": str})
    dm = MaskDataModule(cfg, "multihead", 0, progress=False)
    dm.prepare_data()
    dm.setup("fit")
    images, _ = next(iter(dm.val_dataloader()))
    with torch.no_grad():
        probs = model.probabilities(images).numpy()
    columns = [c for c in oof.columns if c.startswith("prob_")]
    assert oof[columns].to_numpy()[: len(images)] == pytest.approx(probs, abs=1e-4)


def test_num_nodes_reaches_the_trainer(synthetic, tmp_path, monkeypatch):
    seen = {}

    class Stop(Exception):
        pass

    def trainer(**kwargs):
        seen.update(kwargs)
        raise Stop

    monkeypatch.setattr(train_module.pl, "Trainer", trainer)
    cfg = quick_cfg(synthetic, tmp_path, "trainer.num_nodes=2", "trainer.effective_batch=64")
    with pytest.raises(Stop):
        train_module.train(cfg, "mask", 0)
    assert seen["num_nodes"] == 2 and seen["devices"] == 1
    assert seen["accumulate_grad_batches"] == 2  # 2 nodes x 1 device x batch 16 x 2 = 64


def test_an_ordinal_age_head_is_scored_at_other_cuts_after_training(synthetic, tmp_path, multihead_experiment, capsys):
    for fold in (0, 1):
        cfg = quick_cfg(
            synthetic,
            tmp_path,
            "data.n_folds=2",
            "trainer.max_epochs=1",
            "trainer.limit_train_batches=0.34",
            "exp=ordx",
            "model.age_head=ordinal",
        )
        train_module.train(cfg, "multihead", fold)
    runs = ["--set", f"runs_dir={tmp_path / 'runs'}", "--workers", "0"]
    assert predict_module.main(["--exp", "ordx", "--oof", *runs]) == 0
    own = json.loads((tmp_path / "runs" / "ordx" / OOF_SCORES).read_text())
    assert predict_module.main(["--exp", "ordx", "--oof", "--age-cuts", "30,45", *runs]) == 0
    recut = json.loads((tmp_path / "runs" / "ordx" / OOF_SCORES).read_text())
    assert own["age_cuts"] == [30, 60] and recut["age_cuts"] == [30, 45]
    assert recut["task_f1"]["age"] != own["task_f1"]["age"]  # other groups, scored against the ages at 30/45
    assert recut["competition"]["age_cuts"] == [30, 60] and recut["competition"]["f1"] is not None
    capsys.readouterr()
    softmax = ["--set", f"runs_dir={multihead_experiment}", "--workers", "0"]
    assert predict_module.main(["--exp", "mhx", "--oof", "--age-cuts", "30,45", *softmax]) == 2
    assert "only an ordinal age head" in capsys.readouterr().err
    assert predict_module.main(["--exp", "ordx", "--age-cuts", "45,30", *runs]) == 2
    assert "expected two ages young,old" in capsys.readouterr().err


def test_a_fixed_fold_seed_keeps_the_folds_across_seeds(layout, tmp_path):
    def folds(*overrides):
        cfg = tiny_config(layout, tmp_path / "cache", "data.validate_images=false", *overrides)
        return prepare(cfg, progress=False).images.drop_duplicates("person").set_index("person")["fold"]

    assert not folds("seed=1").equals(folds("seed=3"))  # by default the seed shuffles the folds too
    assert folds("seed=1", "data.fold_seed=7").equals(folds("seed=3", "data.fold_seed=7"))
    assert folds("seed=5", "data.fold_seed=1").equals(folds("seed=1"))
