"""The noise-finder benchmark records the settings of the models it measured (each task's own, since one
experiment may hold separate models trained differently), and writes a summary a person reads."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from benchmarks.noise_finder import ROOT, compact_json, summary, task_settings
from rundir.layout import CONFIG, OOF_FILES, run_dir, write_done


def _run(experiment: Path, task: str, epochs: int, crop: int, folds: int = 2) -> None:
    for fold in range(folds):
        run = run_dir(experiment.parent, experiment.name, task, fold)
        run.mkdir(parents=True)
        write_done(run, {})  # a finished run
        config = {
            "model": {"backbone": "test_resnet"},
            "trainer": {"max_epochs": epochs},
            "augment": {"resize_width": crop, "resize_height": crop + 10, "crop": crop},
        }
        (run / CONFIG).write_text(yaml.safe_dump(config))
        (run / OOF_FILES["flip"]).write_text("person,image,stem,fold,label,prob_0,prob_1\n")


def test_each_task_gets_its_own_models_settings(tmp_path):
    experiment = tmp_path / "weak-gender-strong-mask"
    _run(experiment, "gender", epochs=1, crop=32)
    _run(experiment, "mask", epochs=8, crop=48)
    _run(experiment, "multihead", epochs=3, crop=40)  # age has no model of its own: the multihead's head
    settings = task_settings(experiment, ["mask", "gender", "age"], "flip")
    assert {task: (s["max_epochs"], s["crop"]) for task, s in settings.items()} == {
        "mask": (8, 48),
        "gender": (1, 32),
        "age": (3, 40),
    }
    assert settings["gender"]["resize"] == [32, 42]
    assert settings["mask"]["backbone"] == "test_resnet"


def test_settings_follow_the_predictions_read(tmp_path):
    """Without the flip-TTA files the finder reads oof.csv; the settings are those of the runs that hold it."""
    experiment = tmp_path / "exp"
    _run(experiment, "gender", epochs=1, crop=32)
    assert task_settings(experiment, ["gender"], "none") == {}  # no oof.csv: no model to describe
    (run_dir(tmp_path, "exp", "gender", 0) / OOF_FILES["none"]).write_text("")
    assert task_settings(experiment, ["gender"], "none")["gender"]["max_epochs"] == 1


def test_the_results_file_is_a_summary_a_person_reads():
    """The results file keeps every measured number and says how it was made; the per-unit lists go to runs/
    (the full results), and each value that fits goes on one line."""
    scores = {"gender": {"planted": 14, "flagged": 17, "found": 13, "precision": 0.7647, "recall": 0.9286}}
    units = {"gender": {"missed": [{"person": "p1", "rank": 15}], "false_alarms": [{"person": "p2", "rank": 3}]}}
    full = {
        "produced_by": {"command": "python benchmarks/noise_finder.py --exp e"},
        "model": {"train_seconds": 3.0, "train_seconds_per_run": {"multihead/fold0": 3.0}},
        "modes": {"fixed": {"flagged": 20, "scores": scores, "units": units}},
    }
    text = compact_json(summary(full))
    assert json.loads(text) == {
        "produced_by": full["produced_by"],
        "model": {"train_seconds": 3.0},
        "modes": {"fixed": {"flagged": 20, "scores": scores}},
    }
    assert "missed" not in text and full["modes"]["fixed"]["units"] == units  # the full results are untouched
    assert '"gender": {"planted": 14, "flagged": 17, "found": 13, "precision": 0.7647, "recall": 0.9286}' in text
    for path in (ROOT / "benchmarks" / "results").glob("noise-finder-*.json"):
        saved = json.loads(path.read_text())
        assert "command" in saved["produced_by"] and all("units" not in m for m in saved["modes"].values()), path
