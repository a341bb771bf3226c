"""W&B sweep files: well formed, and every value the agent can hand over parses into a valid config.

The command line is rendered with wandb's own helpers, as ``wandb agent`` does it (no network).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from wandb.sdk.launch.sweeps import utils as sweep_utils

import train
from configs.config import load_config
from core.tasks import TASKS
from datamodules.datamodule import parse_fold
from lightning_modules.losses import build_loss

ROOT = Path(__file__).resolve().parent.parent
SWEEPS = sorted((ROOT / "configs" / "sweeps").glob("*.yaml"))
METHODS = ("bayes", "random", "grid")
DISTRIBUTIONS = ("uniform", "log_uniform_values", "int_uniform", "q_uniform", "q_log_uniform_values", "normal")


def load(path: Path) -> dict:
    config = sweep_utils.load_sweep_config(str(path))  # what `wandb sweep FILE` reads
    assert isinstance(config, dict), f"{path.name}: not a YAML mapping"
    return config


def agent_argv(sweep: dict, values: dict) -> list[str]:
    """The argv ``wandb agent`` starts for one trial (``Agent._command_run``): the sweep's command with its
    macros filled in by wandb's helpers; the values arrive as JSON from the W&B server."""
    command = sweep_utils.create_sweep_command(list(sweep.get("command") or sweep_utils.DEFAULT_SWEEP_COMMAND))
    args = {name: {"value": json.loads(json.dumps(value))} for name, value in values.items()}
    macros = sweep_utils.create_sweep_command_args({"args": args})
    macros.update(env=["/usr/bin/env"], interpreter=["python"], program=[sweep["program"]])
    argv: list[str] = []
    for chunk in map(str, command):
        if chunk.startswith("${") and chunk.endswith("}"):
            argv += macros.get(chunk[2:-1]) or []
        else:
            argv.append(chunk)
    return argv


def samples(spec: dict) -> list:
    """Values of one parameter to try: each listed value, or the ends and middle of its range."""
    if "value" in spec:
        return [spec["value"]]
    if "values" in spec:
        return list(spec["values"])
    lo, hi = spec["min"], spec["max"]
    if spec.get("distribution") == "int_uniform":
        return [lo, (lo + hi) // 2, hi]
    if "log" in spec.get("distribution", ""):
        return [lo, math.sqrt(lo * hi), hi]
    return [lo, (lo + hi) / 2, hi]


def lookup(cfg, key: str):
    for part in key.split("."):
        cfg = getattr(cfg, part)
    return cfg


def trial_config(sweep: dict, values: dict):
    """The config train.py builds for one trial, and its parsed options."""
    argv = agent_argv(sweep, values)
    assert argv[:3] == ["/usr/bin/env", "python", "train.py"], argv
    try:
        args = train.parse_args(argv[3:])
    except SystemExit:
        pytest.fail(f"train.py rejects the agent's command line {argv[3:]}")
    return args, load_config(args.task, args.config, args.set)


def test_there_is_a_sweep():
    assert SWEEPS, "no sweep file in configs/sweeps/"


@pytest.mark.parametrize("path", SWEEPS, ids=lambda p: p.name)
def test_sweep_file_is_well_formed(path):
    sweep = load(path)
    try:
        import sweeps  # wandb's own sweep engine (wandb[sweeps]), when installed
    except ImportError:
        sweeps = None
    if sweeps is not None:
        assert sweeps.schema_violations_from_proposed_config(sweep) == []
    assert sweep["program"] == "train.py" and (ROOT / sweep["program"]).is_file()
    assert sweep["method"] in METHODS
    # scored at the competition's age cuts, whatever cuts a trial trains with
    assert sweep["metric"] == {"name": "val/f1_competition_best", "goal": "maximize"}
    module = (ROOT / "lightning_modules" / "base.py").read_text()
    assert '"val/f1_competition_best"' in module, "the sweep's metric is no longer logged by the model"
    assert sweep["parameters"]
    for name, spec in sweep["parameters"].items():
        assert isinstance(spec, dict) and "parameters" not in spec, (
            f"{name}: nested parameters reach train.py as --{name}={{...}}"
        )
        if "values" in spec:
            assert isinstance(spec["values"], list) and spec["values"], name
        elif "value" not in spec:
            assert spec.get("distribution") in DISTRIBUTIONS and spec["min"] < spec["max"], name
            if "log" in spec["distribution"]:
                assert spec["min"] > 0, name
        if sweep["method"] == "grid":
            assert "values" in spec or "value" in spec, f"{name}: grid search needs listed values"
    command = [str(c) for c in sweep["command"]]
    assert command[:3] == ["${env}", "${interpreter}", "${program}"] and command[-1] == "${args}"
    assert "--task" in command and "--fold" in command, "the command fixes the task and the fold"


@pytest.mark.parametrize("path", SWEEPS, ids=lambda p: p.name)
def test_every_value_parses_into_the_intended_setting(path):
    sweep = load(path)
    params = sweep["parameters"]
    first = {name: samples(spec)[0] for name, spec in params.items()}
    for name, spec in params.items():
        for value in samples(spec):
            args, cfg = trial_config(sweep, {**first, name: value})
            expected = json.loads(json.dumps(value))
            got = lookup(cfg, name)
            if isinstance(expected, float):
                assert got == pytest.approx(expected, rel=1e-12), (name, value)
            else:
                assert got == expected, (name, value)
            assert parse_fold(args.fold, cfg.data.n_folds) is not None
            task = TASKS[args.task]
            build_loss(cfg.loss, task.num_classes, task.name, class_counts=[5] * task.num_classes)


def test_agent_rendering_of_lists_bools_and_floats():
    """What the agent does with each kind of value: Python's str(), read back as YAML by train.py."""
    sweep = {"program": "train.py", "command": ["${env}", "${interpreter}", "${program}", "--task", "age", "${args}"]}
    values = {
        "data.age_cuts": [30, 58],
        "data.relabel": ["competition"],
        "trainer.deterministic": False,
        "trainer.progress_bar": True,
        "optim.lr": 1e-5,
        "loss.f1_weight": 0,
        "loss.kind": "focal",
        "trainer.max_epochs": 7,
    }
    argv = agent_argv(sweep, values)
    assert "--data.age_cuts=[30, 58]" in argv and "--data.relabel=['competition']" in argv
    assert "--trainer.deterministic=False" in argv and "--optim.lr=1e-05" in argv
    args, cfg = trial_config(sweep, values)
    assert args.task == "age"
    for name, value in values.items():
        assert lookup(cfg, name) == value, name
