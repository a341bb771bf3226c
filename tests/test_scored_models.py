"""What is scored is what is submitted: the out-of-fold score, the calibration and the comparison read exactly the
runs whose checkpoints the submission averages (a task's own and a multihead model's, both; the finished ones
only); a fold named with --folds that cannot be used, and tasks scored on different images, are errors."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import make_layout, tiny_config

import inference.models
import predict
import train
from analysis.calibration import calibration_oof
from analysis.scoring import read_oof, score_oof
from core.errors import DataError
from core.tasks import TASK_NAMES
from inference.calibration import write_calibration
from rundir.layout import DONE, OOF, OOF_FLIP, prob_columns, run_place

IMAGES = 12 * 7  # the hand-made layout's people x photos
MASK_IN_MULTIHEAD = [0, 1, 2]  # a multihead oof.csv's mask columns


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    """Experiment ``both`` on the 12-person layout (2 folds, 1 epoch each): a mask model and a multihead model at
    folds 0 and 1, so that mask is served by both and gender and age by the multihead model alone."""
    tmp = tmp_path_factory.mktemp("scored")
    data = make_layout(tmp / "data")
    for task in ("mask", "multihead"):
        for fold in (0, 1):
            settings = [f"runs_dir={tmp / 'runs'}", "exp=both", "data.n_folds=2", "trainer.max_epochs=1"]
            train.train(tiny_config(data, tmp / "cache", "trainer.progress_bar=false", *settings), task, fold)
    return tmp


def argv(tiny: Path, exp: str, *extra: str) -> list[str]:
    settings = [f"runs_dir={tiny / 'runs'}", f"data.cache_dir={tiny / 'cache'}", "loader.num_workers=0"]
    return ["--exp", exp, "--wandb", "disabled", *[a for s in settings for a in ("--set", s)], *extra]


def copy_exp(tiny: Path, name: str) -> Path:
    shutil.copytree(tiny / "runs" / "both", tiny / "runs" / name)
    return tiny / "runs" / name


def mask_probs(path: Path) -> pd.DataFrame:
    """The mask probabilities of one oof file, by image, whichever model wrote it."""
    frame = pd.read_csv(path, dtype={"person": str, "stem": str}).set_index(["person", "stem"])
    columns = prob_columns(3) if run_place(path).task == "mask" else [f"prob_{c}" for c in MASK_IN_MULTIHEAD]
    return frame[columns].set_axis(prob_columns(3), axis=1)


def test_the_oof_rows_scored_come_from_exactly_the_models_the_submission_averages(tiny, caplog):
    exp = tiny / "runs" / "both"
    with caplog.at_level(logging.INFO):
        submitted = inference.models.find_checkpoints(exp, None)
    assert "mask: 2 task + 2 multihead checkpoints" in caplog.text
    assert "gender: 0 task + 2 multihead checkpoints" in caplog.text
    assert [f"{run_place(p).task}/{p.parent.name}" for p in submitted["mask"]] == [
        "mask/fold0",
        "mask/fold1",
        "multihead/fold0",
        "multihead/fold1",
    ]
    for tta, name in (("none", OOF), ("flip", OOF_FLIP)):
        scored = read_oof(exp, tta=tta)
        for task in TASK_NAMES:  # each image's probabilities: the mean over the submitted models of its fold
            assert len(scored[task]) == IMAGES
        by_file = [mask_probs(ckpt.parent / name) for ckpt in submitted["mask"]]
        expected = pd.concat(by_file).groupby(level=[0, 1]).mean()
        got = scored["mask"].set_index(["person", "stem"])[prob_columns(3)]
        np.testing.assert_allclose(got.loc[expected.index].to_numpy(), expected.to_numpy(), atol=1e-6)
    _, files = calibration_oof(exp, None, "flip")
    assert [f.parent for f in files["mask"]] == [p.parent for p in submitted["mask"]]
    caplog.clear()
    with caplog.at_level(logging.INFO):
        assert predict.main(argv(tiny, "both", "--oof")) == 0
    assert caplog.text.count("mask: 2 task + 2 multihead models") == 1  # said once, not again for the report
    report = json.loads((exp / "oof_scores.json").read_text())
    assert report["models"]["mask"] == {"task": 2, "multihead": 2} and report["images"] == IMAGES


def test_an_unfinished_fold_is_left_out_of_the_ensemble_and_the_score(tiny, caplog, capsys):
    exp = copy_exp(tiny, "stopped")
    (exp / "mask" / "fold1" / DONE).unlink()  # killed, or still training in another process
    with caplog.at_level(logging.INFO):
        submitted = inference.models.find_checkpoints(exp, None)
    assert [f"{run_place(p).task}/{p.parent.name}" for p in submitted["mask"]] == [
        "mask/fold0",
        "multihead/fold0",
        "multihead/fold1",
    ]
    warning = next(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    assert "mask/fold1" in warning and "python train.py --task mask --fold 1 --exp stopped --resume" in warning
    assert "mask: 1 task + 2 multihead checkpoints" in caplog.text
    fold1 = read_oof(exp)["mask"].query("fold == 1").set_index(["person", "stem"])[prob_columns(3)]
    multihead = mask_probs(exp / "multihead" / "fold1" / OOF).loc[fold1.index]
    np.testing.assert_allclose(fold1.to_numpy(), multihead.to_numpy(), atol=1e-6)  # the unfinished run unread

    # both fold-1 runs unfinished: every task scored on fold 0's images, and the report says of how many
    (exp / "multihead" / "fold1" / DONE).unlink()
    capsys.readouterr()
    assert predict.main(argv(tiny, "stopped", "--oof")) == 0
    report = json.loads((exp / "oof_scores.json").read_text())
    assert 0 < report["images"] < IMAGES and report["data_images"] == IMAGES
    assert report["left_out"] == ["mask/fold1", "multihead/fold1"]
    assert f"over {report['images']} of {IMAGES} images" in capsys.readouterr().out


def test_tasks_scored_on_different_images_are_an_error(tiny):
    exp = copy_exp(tiny, "uneven")
    (exp / "multihead" / "fold1" / DONE).unlink()  # mask keeps fold 1 (its own model); gender and age do not
    with pytest.raises(DataError, match="cover different images") as error:
        score_oof(exp)
    assert "only in mask's" in str(error.value) and "--folds" in str(error.value)
    assert score_oof(exp, folds=["0"])["images"] < IMAGES  # the folds every task has finished


def test_a_finished_run_without_its_oof_file_is_an_error_not_a_smaller_score(tiny):
    exp = copy_exp(tiny, "lost")
    (exp / "mask" / "fold0" / OOF).unlink()  # its best.ckpt is still submitted
    with pytest.raises(DataError, match="mask/fold0/oof.csv is missing, though its run finished"):
        score_oof(exp)


def test_calibration_is_fitted_on_the_view_the_submission_is_made_in(tiny):
    exp = copy_exp(tiny, "calib")
    flip = write_calibration(exp, None, "flip")
    assert flip["tta"] == "flip" and all(f.endswith(OOF_FLIP) for f in flip["fitted_on"]["mask"])
    assert flip["f1"]["before"] == pytest.approx(score_oof(exp, tta="flip")["f1"], abs=1e-4)
    plain = write_calibration(exp, None, "none")
    assert all(f.endswith(f"/{OOF}") for f in plain["fitted_on"]["age"])
    (exp / "multihead" / "fold0" / OOF_FLIP).unlink()  # a run trained before training wrote it
    with pytest.raises(DataError, match="python predict.py --exp calib --oof --tta flip"):
        write_calibration(exp, None, "flip")


@pytest.mark.parametrize("spoil", ["missing", "unreadable", "unfinished"])
def test_a_named_fold_that_cannot_be_used_is_an_error(tiny, capsys, spoil):
    exp = copy_exp(tiny, f"named-{spoil}")
    if spoil == "missing":
        shutil.rmtree(exp / "mask" / "fold1")
        shutil.rmtree(exp / "multihead" / "fold1")
    elif spoil == "unreadable":
        (exp / "mask" / "fold1" / "best.ckpt").write_bytes(b"not a checkpoint")
    else:
        (exp / "mask" / "fold1" / DONE).unlink()
        (exp / "multihead" / "fold1" / DONE).unlink()
    capsys.readouterr()
    assert predict.main(argv(tiny, exp.name, "--folds", "0,1", "--tta", "none")) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    assert "mask/fold1" in lines[0]
    if spoil != "unreadable":
        assert "--folds 1" in lines[0]
    if spoil == "unfinished":
        assert "--resume" in lines[0]
    assert not (exp / "submission.csv").exists()


def test_the_noise_finder_scores_the_truth_over_the_people_it_ranked(synthetic, tmp_path, caplog):
    """Only fold 0 of 3 trained (fold 1 of gender still training): the finder says how many people it ranked of
    how many, and scores the planted errors of those people only, not the ones it never saw."""
    from noise_helpers import run_main, simulate_oof, write_experiment

    frames = simulate_oof(synthetic)
    runs = tmp_path / "runs"
    write_experiment(runs, "part", {t: f[f["fold"] == 0] for t, f in frames.items()}, synthetic)
    running = runs / "part" / "gender" / "fold1"
    running.mkdir()
    frames["gender"][frames["gender"]["fold"] == 1].to_csv(running / OOF, index=False)  # no done.json yet
    with caplog.at_level(logging.INFO):
        rc, _, err = run_main("--exp", "part", "--runs-dir", str(runs), "--quiet")
    assert rc == 0, err
    ranked = set(frames["mask"].loc[frames["mask"]["fold"] == 0, "person"])
    assert f"ranked {len(ranked)} of the 300 people" in caplog.text and "gender/fold1" in caplog.text
    saved = json.loads((runs / "part" / "noise" / "truth-scores.json").read_text())
    assert saved["people_ranked"] == len(ranked) < saved["people"] == 300
    truth = pd.read_csv(synthetic / "truth" / "noise.csv", dtype=str, keep_default_na=False)
    for kind, entry in saved["scores"].items():
        seen = truth[(truth["kind"] == kind) & truth["path"].isin(ranked)]
        assert entry["planted"] == seen["path"].nunique() > 0, kind
