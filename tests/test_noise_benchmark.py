"""The noise-finder benchmark records the settings of the models it measured: each task's own, since one
experiment may hold separate models trained differently (a weak gender model beside a strong mask model)."""

from __future__ import annotations

from pathlib import Path

import yaml

from benchmarks.noise_finder import task_settings
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
