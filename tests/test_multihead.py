"""--task multihead: one backbone, a head per task, trained together; its checkpoints feed predict.py."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import quick_cfg
from sklearn.metrics import f1_score

import inference.models
import inference.predictor
import predict
import train as train_cli
from analysis.scoring import read_task_oof, score_oof
from datamodules.layout import read_eval
from lightning_modules.losses import CeF1Loss, GaussianLoss
from lightning_modules.multihead import MultiHeadModule


@pytest.fixture(scope="module")
def multihead_run(synthetic, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("mh")
    cfg = quick_cfg(synthetic, tmp, "data.n_folds=2", "trainer.max_epochs=3", "exp=mh", "multihead.class18_weight=0.5")
    return train_cli.train(cfg, "multihead", 0), tmp


def test_multihead_writes_outputs_and_learns_every_head(multihead_run):
    out, _ = multihead_run
    assert {"best.ckpt", "last.ckpt", "metrics.csv", "oof.csv", "done.json"} <= {p.name for p in out.iterdir()}
    metrics = pd.read_csv(out / "metrics.csv")
    assert {"val/f1", "val/f1_mask", "val/f1_gender", "val/f1_age", "val/f1_class18", "train/loss_age"} <= set(
        metrics.columns
    )
    oof = pd.read_csv(out / "oof.csv")
    assert [f"prob_{k}" for k in range(8 + 18)] == [c for c in oof.columns if c.startswith("prob_")]
    for head, cols in (("mask", range(0, 3)), ("gender", range(3, 5)), ("age", range(5, 8))):
        assert np.allclose(oof[[f"prob_{k}" for k in cols]].sum(axis=1), 1, atol=1e-4), head
    # in 3 CPU epochs the gender and age heads learn (the mask cue, as for the separate mask model, comes later)
    for task, margin in (("gender", 0.6), ("age", 0.45)):
        oof = read_task_oof(out.parent.parent, task)
        probs = oof[[c for c in oof.columns if c.startswith("prob_")]].to_numpy()
        f1 = f1_score(oof["label"], probs.argmax(1), average="macro")
        assert f1 > margin, f"{task} head: out-of-fold macro F1 {f1:.3f} is no better than chance"


def test_multihead_oof_and_checkpoints_feed_scoring_and_predict(multihead_run, synthetic):
    out, tmp = multihead_run
    exp_dir = out.parent.parent
    report = score_oof(exp_dir)
    assert report["images"] == len(pd.read_csv(out / "oof.csv"))
    assert set(report["task_f1"]) == {"mask", "gender", "age"}
    code = predict.main(["--exp", "mh", "--set", f"runs_dir={tmp / 'runs'}", "--set", "loader.num_workers=0"])
    assert code == 0
    sub = pd.read_csv(exp_dir / "submission.csv")
    assert sub["ImageID"].tolist() == pd.read_csv(synthetic / "eval" / "info.csv")["ImageID"].tolist()
    probs = pd.read_csv(exp_dir / "submission_probs.csv")
    assert np.allclose(probs[["gender_0", "gender_1"]].sum(axis=1), 1, atol=1e-4)


def test_multihead_and_separate_models_ensemble_together(multihead_run, synthetic):
    out, tmp = multihead_run
    cfg = quick_cfg(synthetic, tmp, "data.n_folds=2", "trainer.max_epochs=1", "exp=mh")
    train_cli.train(cfg, "gender", 0)
    found = inference.models.find_checkpoints(out.parent.parent, None)
    assert [p.parent.parent.name for p in found["gender"]] == ["gender", "multihead"]
    assert [p.parent.parent.name for p in found["age"]] == ["multihead"]
    frame, _, _ = inference.predictor.predict_eval(cfg, out.parent.parent, None, "soft", "none", None)
    models = {p: inference.models.load_model(p, torch.device("cpu")) for p in found["gender"]}
    per = [
        inference.predictor.predict_group([m], read_eval(synthetic), [False], cfg, synthetic)[0][0][
            :, m.head_slices()["gender"]
        ]
        for m in models.values()
    ]
    assert np.allclose(frame[["gender_0", "gender_1"]].to_numpy(), np.mean(per, axis=0), atol=1e-5)


def test_each_head_has_its_own_loss_and_weight(synthetic, tmp_path):
    cfg = quick_cfg(
        synthetic, tmp_path, "multihead.age_loss.kind=gaussian", "multihead.gender_weight=0", "multihead.mask_weight=2"
    )
    model = MultiHeadModule(cfg.to_dict(), [0.5] * 3, [0.25] * 3)
    assert isinstance(model.criteria["age"], GaussianLoss) and isinstance(model.criteria["mask"], CeF1Loss)
    assert set(model.heads) == {"mask", "gender", "age"}  # no 18-class head unless its weight is > 0
    logits = {"mask": torch.randn(4, 3), "gender": torch.randn(4, 2), "age": torch.randn(4, 3)}
    labels = torch.tensor([[0, 1, 2], [1, 0, 0], [2, 1, 1], [0, 0, 2]])
    total, parts = model.weighted_loss(logits, model.training_targets(labels))
    assert torch.allclose(total, 2 * parts["mask"] + parts["age"])
    probs = model.probabilities(torch.randint(0, 256, (2, 3, 48, 48), dtype=torch.uint8))
    assert probs.shape == (2, 8) and torch.allclose(probs[:, 3:5].sum(1), torch.ones(2))
