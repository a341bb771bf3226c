"""The options benchmark re-measures some options without losing the others' figures: the seed recipe's epoch
time and out-of-fold score survive ``--only base,calibrate`` when its models are the ones measured before,
and its reference score is the one its comparisons take."""

from __future__ import annotations

import json

import pytest

from analysis.compare import compare_experiments
from benchmarks import options
from tests.test_compare import predict, truth, write_exp

CALIBRATED = {"before": 0.58, "after": 0.60, "cross_fitted": 0.59, "seconds": 1.5}


def _seed(exp: str, eval_f1: float) -> dict:
    return {"exp": exp, "train_seconds": 60.0, "eval_f1": eval_f1, "eval_accuracy": 0.7, "predict_seconds": 30.0}


def _recorded() -> dict:
    """A results file of an earlier call: every option trained, compared, timed; calibration measured."""
    base = [_seed(options.exp_name("base", s), 0.66 + s / 100) for s in options.SEEDS]
    mix = [_seed(options.exp_name("mix", s), 0.58) for s in options.SEEDS]
    compared = {"f1": {"base": 0.5811, "mix": 0.5126, "difference": -0.0685, "interval": [-0.08, -0.06]}}
    compared["f1"]["verdict"] = "base better"
    old_calibration = [{"eval_f1": 0.65, "eval_f1_without": s["eval_f1"], "details": CALIBRATED} for s in base]
    return {
        "trained": {
            "base": {"what": options.OPTIONS["base"][0], "per_seed": base, "eval_f1": 0.665, "oof_f1": 0.5811}
            | {"epoch_seconds": 11.3},
            "mix": {"what": options.OPTIONS["mix"][0], "per_seed": mix, "eval_f1": 0.58, "oof": compared}
            | {"epoch_seconds": 11.2},
        },
        "after": {
            "calibrate": {"per_seed": old_calibration, "eval_f1": 0.65, "eval_f1_without": 0.665, "predict_seconds": 28}
        },
    }


@pytest.fixture
def bench(tmp_path, monkeypatch):
    """options.py writing under tmp_path, its training and prediction replaced by the recorded models' scores
    (``shift`` moves the seed recipe's eval scores: models other than the recorded ones)."""
    monkeypatch.setattr(options, "ROOT", tmp_path)
    monkeypatch.setattr(options, "CONFIG", tmp_path / "benchmarks" / "configs" / "options-cpu.yaml")
    monkeypatch.setattr(options, "device", lambda: "cpu-2core")
    out = tmp_path / "benchmarks" / "results" / "options-cpu-2core.json"
    out.parent.mkdir(parents=True)
    out.write_text(json.dumps(_recorded()))
    state = {"shift": 0.0, "reference": 0.5799}
    monkeypatch.setattr(
        options, "train", lambda option, seed: _seed(options.exp_name(option, seed), 0.66 + seed / 100 + state["shift"])
    )
    new_fit = CALIBRATED | {"before": 0.57, "cross_fitted": 0.6}
    after = {"eval_f1": 0.67, "eval_accuracy": 0.75, "predict_seconds": 29.0, "details": new_fit}
    monkeypatch.setattr(options, "after", lambda option, seed: after | {"eval_f1_without": 0.66 + seed / 100})
    monkeypatch.setattr(options, "reference_f1", lambda: state["reference"])
    return out, state


def test_remeasuring_the_seed_recipe_and_calibration_keeps_the_other_figures(bench, capsys):
    out, _ = bench
    assert options.main(["--only", "base,calibrate"]) == 0
    results = json.loads(out.read_text())
    base = results["trained"]["base"]
    assert base["epoch_seconds"] == 11.3  # not timed again: the same models
    assert base["oof_f1"] == 0.5799  # measured again
    assert results["trained"]["mix"]["epoch_seconds"] == 11.2
    assert results["after"]["calibrate"]["per_seed"][0]["details"]["cross_fitted"] == 0.6
    printed = capsys.readouterr().out
    assert "| the seed recipe | 0.5799 | reference | 0.6650 | 11 s an epoch (1.00x) |" in printed
    assert "0.6000 cross-fitted (+0.0300)" in printed
    assert "warning" not in printed
    assert json.loads(out.read_text())["packages"]["torch"] == options.packages()["torch"]


def test_other_seed_recipe_models_drop_the_old_figures_and_say_which_comparisons_are_stale(bench, capsys):
    out, state = bench
    state["shift"] = 0.01
    assert options.main(["--only", "base,calibrate"]) == 0
    base = json.loads(out.read_text())["trained"]["base"]
    assert "epoch_seconds" not in base  # the recorded time was of other models
    printed = capsys.readouterr().out
    assert "the seed recipe's models differ" in printed and "--only base,mix,ema,ordinal" in printed
    assert "not timed (python benchmarks/options.py --timing)" in printed


def test_the_reference_score_is_the_one_every_comparison_takes(tmp_path, monkeypatch):
    runs = tmp_path / "runs"
    images = truth()
    names = [options.exp_name("base", s) for s in options.SEEDS]
    for seed, name in enumerate(names):
        write_exp(runs, name, images, predict(images, 0.25, seed=seed), multihead=True)
    write_exp(runs, "options-mix-s0", images, predict(images, 0.4, seed=7), multihead=True)
    monkeypatch.setattr(options, "RUNS", runs)
    table = compare_experiments(runs, [names, ["options-mix-s0"]], tmp_path / "cmp", boot=1, plot=False)["table"]
    expected = table[(table["metric"] == "f1") & (table["verdict"] == "reference")]["value"].iloc[0]
    assert options.reference_f1() == pytest.approx(expected, abs=5e-5)
    assert 0.3 < options.reference_f1() < 0.95


def test_figures_kept_from_other_packages_are_named(bench, capsys):
    out, _ = bench
    recorded = json.loads(out.read_text())
    recorded["packages"] = options.packages() | {"timm": "0.0.1"}
    out.write_text(json.dumps(recorded))
    assert options.main(["--only", "base,calibrate"]) == 0
    printed = capsys.readouterr().out
    assert "other packages than the results file's" in printed and "'timm': ('0.0.1'," in printed
    assert json.loads(out.read_text())["packages"] == options.packages()  # now the ones measured with
