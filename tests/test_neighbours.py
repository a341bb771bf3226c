"""predict.py --neighbours: each out-of-fold image's labels voted by its nearest training images in its fold
model's feature space, written beside the fold's oof.csv for the noise finder."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
import torch

import predict
from core.tasks import TASK_NAMES, TASKS, split_class18
from inference.neighbours import neighbour_votes
from rundir.layout import HEAD_COLUMNS, OOF, OOF_NEIGHBOURS


def test_votes_are_the_nearest_training_labels_shares():
    """Each row's k most similar training rows (cosine on unit vectors) vote: the share of each class."""
    angles = np.radians([0, 10, 20, 90, 100, 180])
    train = torch.tensor(np.stack([np.cos(angles), np.sin(angles)], 1), dtype=torch.float32)
    labels = np.array([0, 0, 1, 2, 2, 1])
    val = torch.tensor([[1.0, 0.0], [0.0, 1.0]])  # nearest: rows 0, 1, 2 / rows 3, 4, then 2 (70 degrees off)
    votes = neighbour_votes(val, train, labels, classes=3, k=3)
    assert np.allclose(votes, [[2 / 3, 1 / 3, 0], [0, 1 / 3, 2 / 3]])
    assert np.allclose(neighbour_votes(val, train, labels, 4, 1), [[1, 0, 0, 0], [0, 0, 1, 0]])  # classes unseen: 0
    with pytest.raises(Exception, match="fewer than the 7 neighbours"):
        neighbour_votes(val, train, labels, 3, 7)


@pytest.fixture
def runs(multihead_experiment, tmp_path):
    """A copy of the session's two-fold multihead experiment (its files are shared with other tests)."""
    shutil.copytree(multihead_experiment / "mhx", tmp_path / "runs" / "mhx")
    return tmp_path / "runs"


def args(runs, *extra):
    return ["--exp", "mhx", "--set", f"runs_dir={runs}", "--set", "loader.num_workers=0", *extra]


def head_votes(frame: pd.DataFrame, task: str) -> np.ndarray:
    return frame[[f"prob_{c}" for c in HEAD_COLUMNS[task]]].to_numpy()


def test_each_fold_is_voted_by_its_own_training_images(runs, capsys):
    """With k = every training image of fold 0, each of its out-of-fold images gets the shares of the training
    labels of every head: the training images are exactly the other fold's people (two folds), labelled as the
    model learnt them; with a small k the votes are shares of k, and the rows are those of oof.csv."""
    fold0, fold1 = runs / "mhx" / "multihead" / "fold0", runs / "mhx" / "multihead" / "fold1"
    trained_on = pd.read_csv(fold1 / OOF)  # with two folds, fold 1's validation people are fold 0's training people
    assert predict.main(args(runs, "--neighbours", str(len(trained_on)), "--folds", "0")) == 0
    assert f"wrote 1 {OOF_NEIGHBOURS} file(s)" in capsys.readouterr().out
    assert not (fold1 / OOF_NEIGHBOURS).exists()
    oof, votes = pd.read_csv(fold0 / OOF), pd.read_csv(fold0 / OOF_NEIGHBOURS)
    assert list(votes.columns) == list(oof.columns)
    probs = list(oof.filter(like="prob_").columns)
    pd.testing.assert_frame_equal(votes.drop(columns=probs), oof.drop(columns=probs))
    labels = dict(zip(TASK_NAMES, split_class18(trained_on["label"].to_numpy()), strict=True))
    for task in TASK_NAMES:
        shares = np.bincount(labels[task], minlength=TASKS[task].num_classes) / len(trained_on)
        assert np.allclose(head_votes(votes, task), shares, atol=1e-6), task

    assert predict.main(args(runs, "--neighbours", "4")) == 0  # the default folds: both
    for fold in (fold0, fold1):
        votes = pd.read_csv(fold / OOF_NEIGHBOURS)
        for task in TASK_NAMES:
            v = head_votes(votes, task)
            assert np.allclose(v.sum(1), 1) and np.allclose(v * 4, np.round(v * 4), atol=1e-5)
    # the votes differ from image to image (nearest neighbours, not the shares of everyone)
    assert head_votes(pd.read_csv(fold0 / OOF_NEIGHBOURS), "mask").std(0).max() > 0.1


def test_neighbours_options_are_checked(runs, layout, capsys):
    assert predict.main(args(runs, "--neighbours", "0")) == 2
    assert "at least 1" in capsys.readouterr().err
    assert predict.main(args(runs, "--neighbours", "--oof")) == 2
    assert "leave out --oof" in capsys.readouterr().err
    assert predict.main(args(runs, "--neighbours", "--folds", "full")) == 2
    err = capsys.readouterr().err
    assert "best.ckpt and oof.csv" in err and err.count("\n") == 1
    quiet = ("--set", "trainer.progress_bar=false")
    assert predict.main(args(runs, "--neighbours", "--data-dir", str(layout), *quiet)) == 2  # not the trained people
    err = capsys.readouterr().err
    assert "are not in the data at" in err and "--data-dir" in err and err.count("\n") == 1
    assert not list(runs.rglob(OOF_NEIGHBOURS))
