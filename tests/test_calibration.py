"""predict.py --calibrate: per-class log-probability offsets fitted on the out-of-fold predictions for the
18-class macro F1; the fit on arrays (it fixes a known bias, it is fast, its cross-fitted estimate never scores
a fold with offsets fitted on its own rows), and end to end on a tiny trained experiment."""

from __future__ import annotations

import json
import shutil
import time

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import f1_score

import analysis.calibration as calibration
import predict
from analysis.calibration import (
    OofArrays,
    calibrate,
    calibrated_answer,
    calibration_oof,
    cross_fit,
    fit_offsets,
    macro_f1,
    macro_f1_many,
)
from core.errors import DataError
from core.tasks import TASK_NAMES, TASKS, class18, split_class18
from lightning_modules.ensemble import combine_heads


def biased_oof(n: int = 3000, folds: int = 3, seed: int = 0) -> OofArrays:
    """Heads that are right most of the time, except that the age head under-predicts its rare oldest group
    (its log-probability pushed down by 1.5) and the gender head leans to male."""
    rng = np.random.default_rng(seed)
    labels = {
        "mask": rng.choice(3, n, p=[0.7, 0.15, 0.15]),
        "gender": rng.choice(2, n, p=[0.4, 0.6]),
        "age": rng.choice(3, n, p=[0.45, 0.45, 0.1]),
    }
    bias = {"mask": [0.0, 0.0, 0.0], "gender": [0.8, 0.0], "age": [0.0, 0.0, -1.5]}
    probs = {}
    for task in TASK_NAMES:
        k = TASKS[task].num_classes
        logits = 1.6 * np.eye(k)[labels[task]] + rng.normal(0, 1, (n, k)) + np.asarray(bias[task])
        e = np.exp(logits - logits.max(1, keepdims=True))
        probs[task] = e / e.sum(1, keepdims=True)
    truth = class18(labels["mask"], labels["gender"], labels["age"])
    return OofArrays(probs, truth, np.arange(n) % folds, "test")


def test_the_vectorised_macro_f1_is_sklearns():
    rng = np.random.default_rng(1)
    truth = rng.integers(0, 18, 500)
    truth[truth == 5] = 6  # a class never true
    preds = rng.integers(0, 18, (4, 500))
    preds[0, preds[0] == 7] = 8  # a class never predicted
    expected = [f1_score(truth, p, labels=list(range(18)), average="macro", zero_division=0) for p in preds]
    assert np.allclose(macro_f1_many(truth, preds), expected)


def test_zero_offsets_answer_as_combine_heads():
    arrays = biased_oof(300)
    _, expected = combine_heads(*(arrays.probs[t] for t in TASK_NAMES))
    assert np.array_equal(calibrated_answer(arrays.probs), expected)
    zeros = {t: np.zeros(TASKS[t].num_classes) for t in TASK_NAMES}
    assert np.array_equal(calibrated_answer(arrays.probs, zeros), expected)


def test_offsets_fix_an_under_predicted_rare_class_and_raise_macro_f1():
    arrays = biased_oof()
    offsets = fit_offsets(arrays.probs, arrays.truth)
    assert all(offsets[t][0] == 0 for t in TASK_NAMES)  # each head's first class is the reference
    assert offsets["age"][2] > offsets["age"][1] + 0.1  # the oldest group, pushed down by 1.5, is raised
    assert offsets["gender"][1] > 0.3  # female, against the lean to male
    before = macro_f1(arrays.truth, calibrated_answer(arrays.probs))
    after = macro_f1(arrays.truth, calibrated_answer(arrays.probs, offsets))
    assert after > before + 0.02
    oldest = [np.mean(split_class18(calibrated_answer(arrays.probs, o))[2] == 2) for o in (None, offsets)]
    assert oldest[0] < oldest[1]  # answered more often


def test_offsets_stay_zero_when_nothing_helps():
    arrays = biased_oof(400)
    heads = split_class18(arrays.truth)
    perfect = {t: np.eye(TASKS[t].num_classes)[h] for t, h in zip(TASK_NAMES, heads, strict=True)}
    offsets = fit_offsets(perfect, arrays.truth)
    assert all(np.all(offsets[t] == 0) for t in TASK_NAMES)


def test_the_cross_fit_never_uses_a_folds_own_rows(monkeypatch):
    arrays = biased_oof(1500, folds=3)
    seen = []
    real = calibration.fit_offsets

    def spy(probs, truth, *args):
        seen.append(truth.copy())
        return real(probs, truth, *args)

    monkeypatch.setattr(calibration, "fit_offsets", spy)
    pred, fitted = cross_fit(arrays.probs, arrays.truth, arrays.folds)
    assert len(seen) == 3
    for k, truth in enumerate(seen):
        assert np.array_equal(truth, arrays.truth[arrays.folds != k])  # the others' rows, none of fold k's
    monkeypatch.undo()
    # scrambling fold 0's own rows (probabilities and truth) leaves the offsets it is answered with unchanged
    rng = np.random.default_rng(5)
    own = arrays.folds == 0
    scrambled = {t: p.copy() for t, p in arrays.probs.items()}
    for p in scrambled.values():
        p[own] = rng.permutation(p[own])
    truth = arrays.truth.copy()
    truth[own] = rng.permutation(truth[own])
    _, fitted_again = cross_fit(scrambled, truth, arrays.folds)
    for t in TASK_NAMES:
        assert np.array_equal(fitted["0"][t], fitted_again["0"][t])
    expected = calibrated_answer({t: p[own] for t, p in arrays.probs.items()}, fitted["0"])
    assert np.array_equal(pred[own], expected)


def test_calibrate_reports_before_after_and_cross_fitted_in_seconds():
    arrays = biased_oof(19000, folds=5)
    start = time.perf_counter()
    result = calibrate(arrays)
    assert time.perf_counter() - start < 20  # 6 fits (all rows, then each of 5 folds left out) on 19,000 images
    f1 = result["f1"]
    assert f1["after"] >= f1["before"] and f1["cross_fitted"] > f1["before"]
    assert f1["cross_fitted"] <= f1["after"] + 0.01  # in-sample flatters, a little
    assert set(result["fold_f1"]["cross_fitted"]) == {"0", "1", "2", "3", "4"}
    assert set(result["cross_fit_offsets"]) == {"0", "1", "2", "3", "4"}
    assert [len(result["offsets"][t]) for t in TASK_NAMES] == [3, 2, 3]
    json.dumps(result)  # saved as it is


def test_one_fold_has_no_cross_fitted_estimate():
    arrays = biased_oof(600, folds=1)
    result = calibrate(arrays)
    assert result["f1"]["cross_fitted"] is None and "one fold" in result["note"]


def test_no_out_of_fold_predictions_is_a_clear_error(tmp_path):
    (tmp_path / "exp" / "mask" / "foldfull").mkdir(parents=True)
    with pytest.raises(DataError, match="calibration needs the k-fold runs' out-of-fold predictions"):
        calibration_oof(tmp_path / "exp")


# ---------------------------------------------------------------------------------------- end to end


def _args(runs, *extra):
    return ["--exp", "mhx", "--set", f"runs_dir={runs}", "--set", "loader.num_workers=0", "--tta", "none", *extra]


def test_predict_calibrate_fits_saves_and_applies_the_offsets(multihead_experiment, tmp_path, capsys):
    runs = multihead_experiment
    out = tmp_path / "sub.csv"
    assert predict.main(_args(runs, "--calibrate", "--out", str(out))) == 0
    printed = capsys.readouterr().out
    assert "cross-fitted" in printed and "before" in printed
    saved = json.loads((runs / "mhx" / "calibration.json").read_text())
    assert saved["fitted_on"]["age"] == ["multihead/fold0/oof.csv", "multihead/fold1/oof.csv"]
    assert saved["images"] == 300 * 7 and set(saved["f1"]) == {"before", "after", "cross_fitted"}
    assert saved["f1"]["after"] >= saved["f1"]["before"]
    report = json.loads(out.with_name("sub_report.json").read_text())
    assert report["calibration"]["offsets"] == saved["offsets"]
    assert {"eval", "eval_uncalibrated"} <= set(report)  # the synthetic truth, with and without
    probs = pd.read_csv(out.with_name("sub_probs.csv"))
    heads = {t: probs[[f"{t}_{k}" for k in range(TASKS[t].num_classes)]].to_numpy() for t in TASK_NAMES}
    offsets = {t: np.asarray(v) for t, v in saved["offsets"].items()}
    assert np.array_equal(pd.read_csv(out)["ans"], calibrated_answer(heads, offsets))  # applied to the answer
    assert np.allclose(heads["age"].sum(1), 1, atol=1e-4)  # the probabilities stay uncalibrated


def test_oof_calibrate_writes_no_submission(multihead_experiment, capsys):
    runs = multihead_experiment
    exp = runs / "mhx"
    (exp / "calibration.json").unlink(missing_ok=True)
    assert predict.main(_args(runs, "--oof", "--calibrate")) == 0
    assert (exp / "calibration.json").is_file() and not (exp / "submission.csv").exists()
    assert "cross-fitted" in capsys.readouterr().out


def test_calibrate_without_oof_names_what_to_train(multihead_experiment, capsys):
    runs = multihead_experiment
    shutil.copytree(runs / "mhx", runs / "nooof", ignore=shutil.ignore_patterns("oof.csv"))
    argv = _args(runs, "--calibrate")
    argv[1] = "nooof"
    assert predict.main(argv) == 2
    err = capsys.readouterr().err
    assert "calibration needs the k-fold runs' out-of-fold predictions" in err and "--fold all" in err
    assert not (runs / "nooof" / "submission.csv").exists()
