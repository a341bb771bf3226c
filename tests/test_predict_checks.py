"""predict.py on tiny runs of the hand-made layout: which folds it uses, scores at the competition's age cuts,
the OOF estimate with the submission's TTA, bad checkpoints and bad options named in one line, and where the
report goes."""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import make_layout, tiny_config
from sklearn.metrics import accuracy_score, f1_score

import inference.models
import inference.oof
import inference.predictor
import inference.submission
import predict
import train
from analysis.scoring import read_oof, read_task_oof, score_oof
from core.tasks import TASK_NAMES
from datamodules.layout import read_eval

CUTS58 = "data.age_cuts=[30, 58]"
HEAD_PROBS = {"mask": range(0, 3), "gender": range(3, 5), "age": range(5, 8)}  # a multihead oof.csv's heads


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    """Experiments on the 12-person layout (2 folds, 1 epoch each): ``base`` has the three tasks at folds 0, 1,
    holdout and full; ``cuts58`` the same mask and gender models with an age model trained at cuts 30/58;
    ``mh58`` a multihead model at cuts 30/58, folds 0 and 1."""
    tmp = tmp_path_factory.mktemp("checks")
    data = make_layout(tmp / "data")

    def run(exp: str, task: str, fold, *extra: str) -> None:
        settings = [f"runs_dir={tmp / 'runs'}", f"exp={exp}", "data.n_folds=2", "trainer.max_epochs=1", *extra]
        train.train(tiny_config(data, tmp / "cache", "trainer.progress_bar=false", *settings), task, fold)

    for task in TASK_NAMES:
        for fold in (0, 1, "holdout", "full"):
            run("base", task, fold)
    for fold in (0, 1):
        run("cuts58", "age", fold, CUTS58)
        run("mh58", "multihead", fold, CUTS58)
        for task in ("mask", "gender"):  # the age cuts change the age model only
            runs = tmp / "runs"
            shutil.copytree(runs / "base" / task / f"fold{fold}", runs / "cuts58" / task / f"fold{fold}")
    return tmp


def argv(tiny: Path, exp: str, *extra: str) -> list[str]:
    settings = [f"runs_dir={tiny / 'runs'}", f"data.cache_dir={tiny / 'cache'}", "loader.num_workers=0"]
    return ["--exp", exp, "--wandb", "disabled", *[a for s in settings for a in ("--set", s)], *extra]


def copy_exp(tiny: Path, exp: str, name: str) -> Path:
    """A copy of experiment ``exp`` to spoil, named ``name``."""
    shutil.copytree(tiny / "runs" / exp, tiny / "runs" / name)
    return tiny / "runs" / name


def cfg_for(tiny: Path):
    return tiny_config(tiny / "data", tiny / "cache", "trainer.progress_bar=false")


def one_error(capsys) -> str:
    """The single ``error:`` line a failed command printed (and no traceback)."""
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, err
    assert "Traceback" not in err and "weights_only=False" not in err
    return lines[0]


# ------------------------------------------------------------------------------------------- which folds


def test_the_submission_uses_the_k_fold_models_unless_full_or_holdout_is_named(tiny):
    exp = tiny / "runs" / "base"
    found = inference.models.find_checkpoints(exp, None)
    assert {t: [p.parent.name for p in found[t]] for t in TASK_NAMES} == dict.fromkeys(TASK_NAMES, ["fold0", "fold1"])
    named = inference.models.find_checkpoints(exp, predict.parse_folds("0,1,full"))
    assert [p.parent.name for p in named["age"]] == ["fold0", "fold1", "foldfull"]
    assert [p.parent.name for p in inference.models.find_checkpoints(exp, ["holdout"])["mask"]] == ["foldholdout"]
    default = tiny / "default.csv"
    assert predict.main(argv(tiny, "base", "--out", str(default))) == 0
    assert predict.main(argv(tiny, "base", "--folds", "0,1", "--out", str(tiny / "01.csv"))) == 0
    pd.testing.assert_frame_equal(pd.read_csv(default), pd.read_csv(tiny / "01.csv"))


def test_oof_reads_the_k_fold_files_only_and_names_overlapping_files(tiny, capsys):
    exp = tiny / "runs" / "base"
    assert predict.main(argv(tiny, "base", "--oof")) == 0
    report = json.loads((exp / "oof_scores.json").read_text())
    assert report["images"] == 12 * 7  # every image out-of-fold once: holdout's images are not added again
    assert len(read_task_oof(exp, "mask")) == 12 * 7  # the noise finder's reading too
    holdout = pd.read_csv(exp / "mask" / "foldholdout" / "oof.csv")
    assert predict.main(argv(tiny, "base", "--oof", "--folds", "holdout")) == 0
    assert json.loads((exp / "oof_scores.json").read_text())["images"] == len(holdout) > 0
    capsys.readouterr()
    assert predict.main(argv(tiny, "base", "--oof", "--folds", "0,1,holdout")) == 2
    error = one_error(capsys)
    assert "foldholdout/oof.csv" in error and ("fold0/oof.csv" in error or "fold1/oof.csv" in error)
    assert predict.main(argv(tiny, "base", "--oof", "--folds", "full")) == 2
    assert "no out-of-fold predictions" in one_error(capsys)
    assert predict.main(argv(tiny, "base", "--folds", "0,fold1")) == 2
    assert "--folds" in one_error(capsys)


# --------------------------------------------------------------------------- the competition's age cuts


def _by_hand(frames: dict[str, pd.DataFrame]) -> tuple[float, float]:
    """18-class macro F1 and accuracy against the truth at cuts 30/60 rebuilt from the raw age, the prediction
    being each head's argmax (the model's age group k taken as the competition's group k)."""
    key = ["person", "stem"]
    merged = frames["mask"][[*key, "label", "age", "p_mask"]].merge(
        frames["gender"][[*key, "label", "p_gender"]], on=key, suffixes=("_mask", "_gender")
    )
    merged = merged.merge(frames["age"][[*key, "p_age"]], on=key)
    truth = merged["label_mask"] * 6 + merged["label_gender"] * 3 + (merged["age"] >= 30) + (merged["age"] >= 60)
    pred = merged["p_mask"] * 6 + merged["p_gender"] * 3 + merged["p_age"]
    f1 = f1_score(truth, pred, labels=list(range(18)), average="macro", zero_division=0)
    return f1, accuracy_score(truth, pred)


def _task_frames(exp: Path) -> dict[str, pd.DataFrame]:
    frames = {}
    for task, n in (("mask", 3), ("gender", 2), ("age", 3)):
        f = pd.concat(pd.read_csv(p, dtype={"person": str}) for p in sorted((exp / task).glob("fold[01]/oof.csv")))
        f[f"p_{task}"] = f[[f"prob_{k}" for k in range(n)]].to_numpy().argmax(1)
        frames[task] = f
    return frames


def test_oof_is_also_scored_at_the_competitions_age_cuts(tiny, capsys, caplog):
    exp = tiny / "runs" / "cuts58"
    age = pd.read_csv(exp / "age" / "fold0" / "oof.csv", dtype={"person": str})
    age = pd.concat([age, pd.read_csv(exp / "age" / "fold1" / "oof.csv", dtype={"person": str})])
    assert ((age["age"] == 58) & (age["label"] == 2)).any()  # a 58-year-old: 58+ for the model, 30-59 truly
    assert predict.main(argv(tiny, "cuts58", "--oof")) == 0
    report = json.loads((exp / "oof_scores.json").read_text())
    assert report["age_cuts"] == [30, 58] and report["competition"]["age_cuts"] == [30, 60]
    f1, accuracy = _by_hand(_task_frames(exp))
    assert report["competition"]["f1"] == pytest.approx(f1)
    assert report["competition"]["accuracy"] == pytest.approx(accuracy)
    assert set(report["competition"]["task_f1"]) == set(TASK_NAMES) and len(report["competition"]["class_f1"]) == 18
    # a model perfect at its own cuts 30/58 is not at the competition's: the 58-year-old is submitted as 60+
    perfect = copy_exp(tiny, "cuts58", "cuts58-perfect")
    for path in perfect.glob("*/fold*/oof.csv"):
        oof = pd.read_csv(path, dtype={"person": str})
        columns = [c for c in oof.columns if c.startswith("prob_")]
        oof[columns] = np.eye(len(columns))[oof["label"]]
        oof.to_csv(path, index=False)
    report = score_oof(perfect)
    assert report["f1"] == 1.0 and report["competition"]["f1"] < 1.0
    assert report["competition"]["f1"] == pytest.approx(_by_hand(_task_frames(perfect))[0])
    assert "competition's age cuts 30/60" in capsys.readouterr().out
    with caplog.at_level(logging.INFO, logger="predict"):
        assert predict.main(argv(tiny, "cuts58", "--tta", "none")) == 0
    assert "data.age_cuts=[30, 58]" in caplog.text and "group 2 as 60+" in caplog.text


def test_multihead_oof_is_scored_at_the_competitions_age_cuts(tiny):
    exp = tiny / "runs" / "mh58"
    oof = pd.concat(pd.read_csv(p, dtype={"person": str}) for p in sorted(exp.glob("multihead/fold*/oof.csv")))
    frames = {}
    for t in ("mask", "gender"):
        part = oof.copy()
        part["label"] = (oof["label"] // 6) if t == "mask" else (oof["label"] // 3) % 2
        part[f"p_{t}"] = oof[[f"prob_{c}" for c in HEAD_PROBS[t]]].to_numpy().argmax(1)
        frames[t] = part
    frames["age"] = oof.assign(p_age=oof[[f"prob_{c}" for c in HEAD_PROBS["age"]]].to_numpy().argmax(1))
    report = score_oof(exp)
    assert report["age_cuts"] == [30, 58]
    f1, accuracy = _by_hand(frames)
    assert report["competition"]["f1"] == pytest.approx(f1)
    assert report["competition"]["accuracy"] == pytest.approx(accuracy)


def test_older_oof_files_without_the_raw_age_are_still_read(tiny):
    for exp, scored in (("base", True), ("cuts58", False)):
        old = copy_exp(tiny, exp, f"{exp}-old")
        for path in old.glob("*/fold*/oof.csv"):
            pd.read_csv(path, dtype=str).drop(columns="age").to_csv(path, index=False)
        report = score_oof(old)
        assert report["f1"] == pytest.approx(score_oof(tiny / "runs" / exp)["f1"])
        if scored:  # trained at the competition's cuts: the labels are the competition's already
            assert report["competition"]["f1"] == pytest.approx(report["f1"])
        else:
            assert report["competition"]["f1"] is None and "retrain" in report["competition"]["note"]


# ------------------------------------------------------------------------------- OOF with the submission's TTA


def test_oof_with_flip_tta_repredicts_each_folds_validation_images(tiny, caplog):
    exp = tiny / "runs" / "base"
    cfg = cfg_for(tiny)
    files = read_oof(exp)
    trained = read_oof(exp, tta="flip")  # the oof_flip.csv files training wrote beside them
    plain = inference.oof.repredict_oof(cfg, exp, None, [False])
    flipped = inference.oof.repredict_oof(cfg, exp, None, [True])
    both = inference.oof.repredict_oof(cfg, exp, None, [False, True])
    for task, n in (("mask", 3), ("gender", 2), ("age", 3)):
        columns = [f"prob_{k}" for k in range(n)]
        assert plain[task][["person", "stem", "label"]].equals(files[task][["person", "stem", "label"]])
        assert np.abs(plain[task][columns].to_numpy() - files[task][columns].to_numpy()).max() <= 1e-6  # %.6f
        mean = (plain[task][columns].to_numpy() + flipped[task][columns].to_numpy()) / 2
        assert np.allclose(both[task][columns].to_numpy(), mean, atol=1e-6)
        assert not np.allclose(plain[task][columns].to_numpy(), flipped[task][columns].to_numpy())
        # training's flip-view file holds what the submission's flip TTA predicts for these images
        assert trained[task][["person", "stem", "label"]].equals(files[task][["person", "stem", "label"]])
        assert np.abs(trained[task][columns].to_numpy() - both[task][columns].to_numpy()).max() <= 1e-6
    with caplog.at_level(logging.INFO, logger="predict"):
        assert predict.main(argv(tiny, "base", "--oof", "--tta", "flip")) == 0
    assert "re-predicted" not in caplog.text  # read from the files training wrote
    report = json.loads((exp / "oof_scores.json").read_text())
    assert report["tta"] == "flip" and report["images"] == 12 * 7
    # runs trained before training wrote them: re-predicted with each fold's best.ckpt, and written
    old = copy_exp(tiny, "base", "before-flip")
    for made in old.glob("*/fold*/oof_flip.csv"):
        made.unlink()
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="predict"):
        assert predict.main(argv(tiny, old.name, "--oof", "--tta", "flip")) == 0
    assert "re-predicted" in caplog.text
    assert sorted(p.relative_to(old) for p in old.glob("*/fold*/oof_flip.csv")) == sorted(
        p.relative_to(exp) for p in exp.glob("*/fold[0-9]/oof_flip.csv")
    )
    written = read_oof(old, tta="flip")
    for task in ("mask", "gender", "age"):
        pd.testing.assert_frame_equal(written[task], trained[task], atol=2e-6)
    assert json.loads((old / "oof_scores.json").read_text())["f1"] == pytest.approx(report["f1"])
    assert predict.main(argv(tiny, "base", "--oof")) == 0
    assert json.loads((exp / "oof_scores.json").read_text())["tta"] == "none"  # --oof's default: the files
    with caplog.at_level(logging.INFO, logger="predict"):
        assert predict.main(argv(tiny, "base", "--out", str(tiny / "tta.csv"))) == 0
    assert "2 view(s)" in caplog.text  # the submission's default stays flip


# ------------------------------------------------------------------------------------------ bad checkpoints


class Payload:
    """Unpickling this runs a shell command: a checkpoint must never be loaded in a way that allows it."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def _truncated(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _not_a_checkpoint(path: Path) -> None:
    path.write_text("this is not a checkpoint\n")


def _malicious(path: Path) -> None:
    torch.save({"state_dict": {}, "hyper_parameters": {"config": Payload(path.parent / "pwned")}}, path)


def _foreign_class(path: Path) -> None:
    torch.save({"state_dict": {}, "hyper_parameters": {"config": {}, "where": Path("/etc")}}, path)


@pytest.mark.parametrize("spoil", [_truncated, _not_a_checkpoint, _malicious, _foreign_class])
def test_a_bad_checkpoint_is_named_in_one_line(tiny, capsys, spoil):
    exp = copy_exp(tiny, "base", f"bad-{spoil.__name__}")
    ckpt = exp / "age" / "fold1" / "best.ckpt"
    spoil(ckpt)
    for extra in ([], ["--oof", "--tta", "flip"]):
        for made in exp.glob("*/fold*/oof_flip.csv") if extra else []:
            made.unlink()  # as for runs trained before training wrote them: re-predicted with each best.ckpt
        assert predict.main(argv(tiny, exp.name, *extra)) == 2
        error = one_error(capsys)
        assert str(ckpt) in error and "--folds" in error and f"--fold 1 --exp {exp.name} --overwrite" in error
    assert not (ckpt.parent / "pwned").exists()
    assert predict.main(argv(tiny, exp.name, "--folds", "0", "--out", str(tiny / f"{exp.name}.csv"))) == 0


def test_a_checkpoint_of_another_task_is_named_and_a_multihead_one_serves_its_folder(tiny, capsys):
    exp = copy_exp(tiny, "base", "swapped")
    shutil.copy(exp / "gender" / "fold0" / "best.ckpt", exp / "age" / "fold0" / "best.ckpt")
    assert predict.main(argv(tiny, "swapped")) == 2
    error = one_error(capsys)
    assert str(exp / "age" / "fold0" / "best.ckpt") in error and "gender model" in error
    shutil.copy(tiny / "runs" / "mh58" / "multihead" / "fold0" / "best.ckpt", exp / "age" / "fold0" / "best.ckpt")
    shutil.rmtree(exp / "age" / "fold1")
    out = tiny / "swapped.csv"
    assert predict.main(argv(tiny, "swapped", "--ensemble", "none", "--folds", "0", "--out", str(out))) == 0
    model = inference.models.load_model(exp / "age" / "fold0" / "best.ckpt", torch.device("cpu"))
    frame = read_eval(tiny / "data")
    age = inference.predictor.predict_group([model], frame, [False, True], cfg_for(tiny), tiny / "data")[0]
    expected = np.mean(age, axis=0)[:, model.head_slices()["age"]]
    probs = pd.read_csv(out.with_name("swapped_probs.csv"))
    assert np.allclose(probs[["age_0", "age_1", "age_2"]].to_numpy(), expected, atol=1e-5)


# ---------------------------------------------------------------------------------- options and outputs


def test_bad_options_stop_before_any_prediction(tiny, capsys, monkeypatch):
    called = []
    monkeypatch.setattr(inference.submission, "predict_eval", lambda *a, **k: called.append(a))
    assert predict.main(argv(tiny, "base", "--out", str(tiny))) == 2
    assert str(tiny) in one_error(capsys)
    for option, value in (("--batch-size", "-1"), ("--batch-size", "0"), ("--workers", "-2")):
        assert predict.main(argv(tiny, "base", option, value)) == 2
        assert f"{option} {value}" in one_error(capsys)
    assert not called


def test_a_submission_elsewhere_has_its_report_beside_it(tiny):
    exp = tiny / "runs" / "base"
    assert predict.main(argv(tiny, "base")) == 0
    report = exp / "submission_report.json"
    before = report.read_text()
    assert json.loads(before)["submission"] == str(exp / "submission.csv")
    elsewhere = tiny / "elsewhere" / "mine.csv"
    assert predict.main(argv(tiny, "base", "--out", str(elsewhere))) == 0
    assert report.read_text() == before
    assert json.loads((elsewhere.parent / "mine_report.json").read_text())["submission"] == str(elsewhere)
    assert not (exp / "predict_report.json").exists()
