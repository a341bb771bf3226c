import dataclasses

import pytest
import yaml

from configs.config import CONFIG_DIR, Config, load_config, parse_override, save_config
from core.errors import ConfigError
from core.tasks import TASK_NAMES


def test_default_is_the_seed_recipe():
    cfg = load_config()
    assert cfg.model.backbone == "resnext50_32x4d"
    assert (cfg.augment.resize_height, cfg.augment.resize_width, cfg.augment.crop) == (512, 384, 304)
    assert cfg.loss.kind == "ce_f1" and cfg.loss.f1_weight == 0.85
    assert cfg.optim.name == "madgrad" and cfg.optim.lr == pytest.approx(1e-4)
    assert cfg.trainer.effective_batch == 256
    assert cfg.augment.random_erasing_p == 0.5
    assert cfg.data.age_cuts == [30, 60] and cfg.data.n_folds == 5
    assert cfg.data.relabel == []


def test_overrides_are_typed_and_layered(tmp_path):
    extra = tmp_path / "extra.yaml"
    extra.write_text("optim: {lr: 0.01}\nloader: {batch_size: 16}\n")
    cfg = load_config("age", [extra], ["optim.lr=3e-4", "data.age_cuts=[30, 58]", "model.pretrained=true"])
    assert cfg.optim.lr == pytest.approx(3e-4)  # --set wins over the file; "3e-4" read as a number
    assert cfg.loader.batch_size == 16
    assert cfg.data.age_cuts == [30, 58]
    assert cfg.model.pretrained is True


@pytest.mark.parametrize(
    "override, named",
    [
        ("optim.lrr=1", "optim.lrr"),
        ("nosuch=1", "nosuch"),
        ("loader.batch_size=big", "loader.batch_size"),
        ("loss.kind=hinge", "loss.kind"),
        ("model.pretrained=maybe", "model.pretrained"),
        ("data.age_cuts=[70, 30]", "data.age_cuts"),
        ("augment.crop=999", "augment.crop"),
        ("loss.f1_weight=1.5", "loss.f1_weight"),
    ],
)
def test_bad_keys_and_values_name_the_key(override, named):
    with pytest.raises(ConfigError, match=named.replace("[", r"\[")):
        load_config(None, [], [override])


def test_bad_override_syntax_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="key=value"):
        parse_override("optim.lr")
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(None, [tmp_path / "nope.yaml"])


def test_saved_config_loads_back_identically(tmp_path):
    cfg = load_config(None, [], ["optim.lr=0.002", "exp=x"])
    save_config(cfg, tmp_path / "config.yaml")
    again = load_config(None, [tmp_path / "config.yaml"])
    assert again == cfg
    assert yaml.safe_load((tmp_path / "config.yaml").read_text())["optim"]["lr"] == 0.002


def test_default_yaml_states_every_dataclass_default_and_nothing_else():
    # the defaults have one source: configs/default.yaml (read first by every load) must say exactly what the
    # dataclasses default to, so that editing either one alone fails here instead of silently doing nothing
    stated = yaml.safe_load((CONFIG_DIR / "default.yaml").read_text())
    assert stated == dataclasses.asdict(Config())


def test_task_files_hold_only_what_differs_per_task():
    defaults = dataclasses.asdict(load_config())
    for task in TASK_NAMES:
        own = yaml.safe_load((CONFIG_DIR / "tasks" / f"{task}.yaml").read_text()) or {}
        assert dataclasses.asdict(load_config(task)) == _merged(defaults, own)
        assert not _same_as(own, defaults), f"tasks/{task}.yaml repeats a default"


def _merged(base: dict, update: dict) -> dict:
    return {
        k: _merged(v, update[k]) if isinstance(v, dict) and k in update else update.get(k, v) for k, v in base.items()
    }


def _same_as(own: dict, defaults: dict) -> list[str]:
    """The keys of ``own`` whose value is the default's."""
    same = []
    for key, value in own.items():
        if isinstance(value, dict) and isinstance(defaults.get(key), dict):
            same += [f"{key}.{k}" for k in _same_as(value, defaults[key])]
        elif defaults.get(key) == value:
            same.append(key)
    return same


def test_loss_settings_are_checked_once_for_every_loss_section():
    with pytest.raises(ConfigError, match="multihead.age_loss.smoothing"):
        load_config(None, [], ["multihead.age_loss={kind: label_smoothing, smoothing: 1.5}"])
    with pytest.raises(ConfigError, match="loss.focal_gamma"):
        load_config(None, [], ["loss.focal_gamma=-1"])
