"""Typed configuration: YAML files layered on dataclass defaults, then ``--set key=value`` overrides.

Order of layers: ``configs/default.yaml`` -> ``configs/tasks/<task>.yaml`` -> each ``--config FILE`` ->
each ``--set``. Unknown keys and values of the wrong type raise :class:`ConfigError` naming the key.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from configs.ranges import check_exp_name, check_ranges
from core.atomic import write_text_atomic
from core.errors import ConfigError
from core.tasks import AGE_RANGE, CLASS18, TASK_NAMES

CONFIG_DIR = Path(__file__).resolve().parent
MULTIHEAD_HEADS = (*TASK_NAMES, CLASS18)  # the multihead section names a weight and a loss per head


def choice(default: Any, *choices: Any) -> Any:
    """A dataclass field whose value must be one of ``choices``."""
    return field(default=default, metadata={"choices": choices})


@dataclass
class SyntheticConfig:
    """Size of the synthetic stand-in generated when the default data directory is missing."""

    people: int = 2700
    eval_people: int = 1800
    width: int = 384
    height: int = 512
    seed: int = 0


@dataclass
class DataConfig:
    dir: str = "data/synthetic"
    default_dir: str = "data/synthetic"  # the one directory that may be generated when missing
    cache_dir: str = ".cache"
    age_cuts: list[int] = field(default_factory=lambda: [30, 60])
    relabel: list[str] = field(default_factory=list)  # corrections files; "competition" = the shipped one
    n_folds: int = 5
    holdout_fraction: float = 0.2
    fold_seed: int | None = None  # the folds' shuffle; null: the run's seed (a fixed one: seeds share folds)
    validate_images: bool = True
    skip_bad: bool = False  # exclude undecodable images (with a warning listing them) instead of stopping
    cache_images: bool = True  # decode + resize + crop each image once into a uint8 memory map
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)


@dataclass
class AugmentConfig:
    resize_height: int = 512
    resize_width: int = 384
    crop: int = 304
    geometric_p: float = 1.0  # one of: horizontal flip, vertical flip, rotation
    rotate_limit: int = 30
    color_p: float = 1.0  # one of: colour jitters, grayscale
    random_erasing_p: float = 0.5
    normalization: str = choice("auto", "auto", "dataset", "imagenet")  # auto: imagenet if pretrained
    # batch mixing on the device (timm's Mixup), the losses taking the mixed targets; 0: off
    mixup_alpha: float = 0.0  # MixUp: blend two images, lambda ~ Beta(alpha, alpha)
    cutmix_alpha: float = 0.0  # CutMix: paste a box of another image, lambda = the kept area
    mix_prob: float = 1.0  # share of batches mixed when an alpha is on
    mix_switch_prob: float = 0.5  # with both alphas on: the share of mixed batches that use CutMix


@dataclass
class LoaderConfig:
    batch_size: int = 128  # per device and step; accumulation makes up trainer.effective_batch
    num_workers: int = -1  # -1: this process's share of the usable cores, less one (at most 16)
    sampler: str = choice("balanced", "balanced", "shuffle")


@dataclass
class ModelConfig:
    backbone: str = "resnext50_32x4d"
    pretrained: bool = True  # timm's ImageNet weights, as the seed started from
    pretrained_file: str | None = None  # or a saved state dict (.pth/.bin/.safetensors), for offline machines
    drop_rate: float = 0.0
    # age: softmax over the groups, or ordinal: P(age >= t) for every age t (cumulative logits), the groups at
    # any cuts read from it after training
    age_head: str = choice("softmax", "softmax", "ordinal")


@dataclass
class LossConfig:
    kind: str = choice("ce_f1", "ce", "f1", "ce_f1", "focal", "label_smoothing", "gaussian")
    f1_weight: float = 0.85  # f in (1 - f) * CE + f * F1
    focal_gamma: float = 2.0
    smoothing: float = 0.1
    gaussian_sigma: float = 0.5  # in age groups, for the ordinal "neighbouring group" smoothing
    class_weights: str = choice("none", "none", "balanced")


@dataclass
class MultiheadConfig:
    """``--task multihead``: one backbone, a head per task trained together. Each head's loss is weighted;
    its loss settings are the ``loss`` section's unless given here (e.g. ``multihead.age_loss.kind=gaussian``).
    ``class18_weight > 0`` adds a fourth, 18-class head (an auxiliary loss, logged as ``val/f1_class18``)."""

    mask_weight: float = 1.0
    gender_weight: float = 1.0
    age_weight: float = 1.0
    class18_weight: float = 0.0
    mask_loss: LossConfig | None = None
    gender_loss: LossConfig | None = None
    age_loss: LossConfig | None = None
    class18_loss: LossConfig | None = None


@dataclass
class OptimConfig:
    name: str = choice("madgrad", "madgrad", "adamw", "sgd")
    lr: float = 1e-4
    weight_decay: float = 0.0
    momentum: float = 0.9
    scheduler: str = choice("none", "none", "cosine", "step", "plateau")
    step_size: int = 3
    gamma: float = 0.5  # lr factor of the step and plateau schedulers
    patience: int = 1  # plateau: epochs without a better val/f1 before the lr is cut


@dataclass
class TrainerConfig:
    max_epochs: int = 5
    effective_batch: int = 256
    accelerator: str = choice("auto", "auto", "cpu", "gpu", "cuda")
    devices: int = 1
    num_nodes: int = 1  # machines of a multi-node DDP run (torchrun or SLURM start one process per device)
    parallel_jobs: int = 1  # training runs side by side on this machine (--gpus sets it): they share its cores
    strategy: str = "auto"
    precision: str = choice("auto", "auto", "32", "bf16-mixed", "16-mixed")  # auto: bf16-mixed (16-mixed) on CUDA
    early_stopping_patience: int = 0  # 0 = off
    limit_train_batches: float = 1.0
    limit_val_batches: float = 1.0
    log_every_n_steps: int = 10
    deterministic: bool = False
    progress_bar: bool = True
    worst_images: int = 16  # rows of the W&B table of worst misclassified validation images
    checkpoint_every_n_steps: int = 200  # also save last.ckpt every N optimizer steps (0: at epoch ends only)
    compile: bool = False  # torch.compile the backbone (on CPU too, with a C++ compiler)
    channels_last: bool | None = None  # channels_last memory format; None: on CUDA only
    ema_decay: float = 0.0  # > 0: an exponential moving average of the weights, validated and checkpointed


@dataclass
class WandbConfig:
    # auto: W&B's WANDB_MODE when set, else online if logged in
    mode: str = choice("auto", "auto", "online", "offline", "disabled")
    project: str = "mask-status"
    entity: str | None = None
    dir: str = "wandb"


@dataclass
class Config:
    seed: int = 42
    exp: str = "default"
    runs_dir: str = "runs"
    data: DataConfig = field(default_factory=DataConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    loader: LoaderConfig = field(default_factory=LoaderConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    multihead: MultiheadConfig = field(default_factory=MultiheadConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    wandb: WandbConfig = field(default_factory=WandbConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# ---------------------------------------------------------------- building from plain data


def _convert(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against the annotation ``tp``; return it converted (int -> float, "1e-4" -> float)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _convert(value, inner[0], key)
    if origin is list:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        (item_tp,) = typing.get_args(tp)
        return [_convert(v, item_tp, f"{key}[{i}]") for i, v in enumerate(value)]
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected an integer, got {value!r}")
    if tp is float:
        number = None
        if isinstance(value, int | float) and not isinstance(value, bool):
            number = float(value)
        elif isinstance(value, str):
            try:
                number = float(value)
            except ValueError:
                pass
        if number is None or not math.isfinite(number):  # nan and inf are no setting's value
            raise ConfigError(f"{key}: expected a finite number, got {value!r}")
        return number
    if tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, int | float) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"{key}: expected a string, got {value!r}")
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, key + ".")
    raise ConfigError(f"{key}: unsupported type {tp}")


def _build(cls: type, data: Any, prefix: str = "") -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        names = ", ".join(f"{prefix}{k}" for k in unknown)
        raise ConfigError(f"unknown config key {names} (known here: {', '.join(sorted(fields))})")
    kwargs = {}
    for name, value in data.items():
        key = f"{prefix}{name}"
        converted = _convert(value, hints[name], key)
        choices = fields[name].metadata.get("choices")
        if choices and converted not in choices:
            raise ConfigError(f"{key}: {converted!r} is not one of {', '.join(map(str, choices))}")
        kwargs[name] = converted
    return cls(**kwargs)


def _merge(base: dict, update: dict) -> dict:
    out = dict(base)
    for k, v in update.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = v
    return out


def read_yaml(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of settings, not {type(data).__name__}")
    return data


def parse_override(text: str) -> dict:
    """``"optim.lr=3e-4"`` -> ``{"optim": {"lr": 3e-4}}``; the value is read as YAML."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"--set {text!r}: expected key=value, e.g. optim.lr=3e-4")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    out: dict = value
    for part in reversed(key.split(".")):
        out = {part: out}
    return out


def config_from_dict(data: dict) -> Config:
    return _build(Config, _merge(dataclasses.asdict(Config()), data))


def load_config(task: str | None = None, files: list[str | Path] = (), overrides: list[str] = ()) -> Config:
    """Build the resolved config for ``task`` from the default, the task's file, ``files`` and ``overrides``."""
    layers = [CONFIG_DIR / "default.yaml"]
    if task is not None and (CONFIG_DIR / "tasks" / f"{task}.yaml").is_file():
        layers.append(CONFIG_DIR / "tasks" / f"{task}.yaml")
    data: dict = {}
    for path in [*layers, *files]:
        layer = read_yaml(path)
        try:
            config_from_dict(layer)  # each file's own keys and values, so that a mistake names its file
        except ConfigError as exc:
            raise ConfigError(f"config file {path}: {exc}") from None
        data = _merge(data, layer)
    for text in overrides:
        data = _merge(data, parse_override(text))
    cfg = config_from_dict(data)
    validate(cfg)
    return cfg


def validate(cfg: Config) -> None:
    """Checks that span more than one field's type."""
    cuts = cfg.data.age_cuts
    low, high = AGE_RANGE
    if len(cuts) != 2 or not low < cuts[0] < cuts[1] <= high:
        raise ConfigError(f"data.age_cuts: expected two ages with {low} < young < old <= {high}, got {cuts}")
    if cfg.data.n_folds < 2:
        raise ConfigError(f"data.n_folds: need at least 2 folds, got {cfg.data.n_folds}")
    if not 0.0 < cfg.data.holdout_fraction < 1.0:
        raise ConfigError(f"data.holdout_fraction: must lie between 0 and 1, got {cfg.data.holdout_fraction}")
    positive = {
        "loader.batch_size": cfg.loader.batch_size,
        "trainer.effective_batch": cfg.trainer.effective_batch,
        "trainer.max_epochs": cfg.trainer.max_epochs,
        "trainer.devices": cfg.trainer.devices,
        "trainer.num_nodes": cfg.trainer.num_nodes,
        "trainer.parallel_jobs": cfg.trainer.parallel_jobs,
        "augment.crop": cfg.augment.crop,
        "augment.resize_height": cfg.augment.resize_height,
        "augment.resize_width": cfg.augment.resize_width,
        "data.synthetic.people": cfg.data.synthetic.people,
    }
    for key, value in positive.items():
        if value < 1:
            raise ConfigError(f"{key}: must be at least 1, got {value}")
    if cfg.loader.num_workers < -1:
        raise ConfigError(f"loader.num_workers: must be 0 or more (or -1: auto), got {cfg.loader.num_workers}")
    if cfg.augment.crop > min(cfg.augment.resize_height, cfg.augment.resize_width):
        raise ConfigError(
            f"augment.crop: {cfg.augment.crop} is larger than the resized image "
            f"({cfg.augment.resize_height}x{cfg.augment.resize_width})"
        )
    for key in ("mixup_alpha", "cutmix_alpha"):
        if getattr(cfg.augment, key) < 0:
            raise ConfigError(f"augment.{key}: must be 0 (off) or more, got {getattr(cfg.augment, key)}")
    if not 0.0 <= cfg.trainer.ema_decay < 1.0:
        raise ConfigError(f"trainer.ema_decay: 0 (off) or a decay below 1 (e.g. 0.999), got {cfg.trainer.ema_decay}")
    for key in ("geometric_p", "color_p", "random_erasing_p", "mix_prob", "mix_switch_prob"):
        p = getattr(cfg.augment, key)
        if not 0.0 <= p <= 1.0:
            raise ConfigError(f"augment.{key}: a probability between 0 and 1, got {p}")
    check_loss(cfg.loss, "loss")
    for head in MULTIHEAD_HEADS:
        if getattr(cfg.multihead, f"{head}_weight") < 0:
            raise ConfigError(f"multihead.{head}_weight: must be 0 or more")
        head_loss = getattr(cfg.multihead, f"{head}_loss")
        if head_loss is not None:
            check_loss(head_loss, f"multihead.{head}_loss")
    if not 0.0 < cfg.optim.gamma < 1.0:
        raise ConfigError(f"optim.gamma: must lie between 0 and 1, got {cfg.optim.gamma}")
    if cfg.optim.lr <= 0:
        raise ConfigError(f"optim.lr: must be positive, got {cfg.optim.lr}")
    check_ranges(cfg)
    check_exp_name(cfg.exp)


def choices(cls: type, name: str) -> tuple:
    """The values the dataclass field ``cls.name`` accepts."""
    return next(f for f in dataclasses.fields(cls) if f.name == name).metadata["choices"]


def check_loss(loss: LossConfig, key: str = "loss") -> None:
    """The loss settings' own checks (``key``: where they sit, e.g. ``multihead.age_loss``), also for a
    ``LossConfig`` made in code."""
    kinds, weights = choices(LossConfig, "kind"), choices(LossConfig, "class_weights")
    if loss.kind not in kinds:
        raise ConfigError(f"{key}.kind: unknown loss {loss.kind!r}; choose one of {', '.join(kinds)}")
    if loss.class_weights not in weights:
        raise ConfigError(f"{key}.class_weights: unknown value {loss.class_weights!r}; choose {' or '.join(weights)}")
    if not 0.0 <= loss.f1_weight <= 1.0:
        raise ConfigError(f"{key}.f1_weight: must lie between 0 and 1, got {loss.f1_weight}")
    if loss.gaussian_sigma <= 0:
        raise ConfigError(f"{key}.gaussian_sigma: must be positive, got {loss.gaussian_sigma}")
    if loss.focal_gamma < 0:
        raise ConfigError(f"{key}.focal_gamma: must be 0 or more, got {loss.focal_gamma}")
    if not 0.0 <= loss.smoothing < 1.0:
        raise ConfigError(f"{key}.smoothing: must lie in [0, 1), got {loss.smoothing}")


def save_config(cfg: Config, path: str | Path) -> None:
    write_text_atomic(path, yaml.safe_dump(cfg.to_dict(), sort_keys=False))
