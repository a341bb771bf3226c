"""Bad input that used to fail with a traceback, a hang or silently: each ends with one line naming the culprit
(the setting, the file, the person) and a non-zero exit code, before any work."""

from __future__ import annotations

import pytest

import train
from configs.config import load_config
from core.errors import ConfigError
from lightning_modules.weights import check_weights
from rundir.layout import exp_dir


@pytest.mark.parametrize(
    "override, named",
    [
        ("optim.lr=nan", "optim.lr"),
        ("optim.lr=.inf", "optim.lr"),
        ("optim.weight_decay=-0.1", "optim.weight_decay"),
        ("trainer.limit_train_batches=0", "trainer.limit_train_batches"),
        ("trainer.limit_train_batches=2.5", "trainer.limit_train_batches"),
        ("trainer.checkpoint_every_n_steps=-1", "trainer.checkpoint_every_n_steps"),
        ("model.pretrained_file=''", "model.pretrained_file"),
        ("exp=../../x", "exp"),
    ],
)
def test_values_a_setting_cannot_take_are_refused_naming_the_key(override, named):
    with pytest.raises(ConfigError, match=named):
        load_config(None, [], [override])


def test_a_fraction_or_a_whole_number_of_batches_is_accepted():
    assert load_config(None, [], ["trainer.limit_train_batches=0.25"]).trainer.limit_train_batches == 0.25
    assert load_config(None, [], ["trainer.limit_train_batches=10"]).trainer.limit_train_batches == 10


def test_an_experiment_name_is_one_folder_under_runs(tmp_path, capsys):
    with pytest.raises(ConfigError, match="experiment name"):
        exp_dir(tmp_path / "runs", "../../x")
    code = train.main(["--exp", "../../x", "--prepare-only", "--data-dir", str(tmp_path / "none")])
    assert code == 2 and "experiment name '../../x'" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_an_empty_weights_file_is_named(tmp_path):
    empty = tmp_path / "weights.pth"
    empty.touch()
    cfg = load_config(None, [], ["model.backbone=resnet10t", f"model.pretrained_file={empty}"])
    with pytest.raises(ConfigError, match=r"model.pretrained_file: .*weights.pth cannot be read .*EOFError"):
        check_weights(cfg.model)
