"""The values each number setting can take, checked with the config before any work: a value outside them
(a negative weight decay, no training batches) is refused naming its key, instead of failing inside Lightning
or part-way through a run. Checks that span several settings stay in ``configs/config.py``'s ``validate``."""

from __future__ import annotations

from collections.abc import Callable
from functools import reduce
from typing import Any

from core.errors import ConfigError

AT_LEAST_0 = ("0 or more", lambda v: v >= 0)
AT_LEAST_1 = ("at least 1", lambda v: v >= 1)
BELOW_1 = ("at least 0 and below 1", lambda v: 0 <= v < 1)
BATCHES = (  # Lightning's limit_*_batches: a share of the batches, or a whole number of them
    "a share of the batches above 0 and up to 1 (e.g. 0.25), or a whole number of batches (e.g. 10)",
    lambda v: 0 < v <= 1 or float(v).is_integer() and v > 1,
)
RANGES: dict[str, tuple[str, Callable[[Any], bool]]] = {
    "optim.weight_decay": AT_LEAST_0,
    "optim.momentum": BELOW_1,
    "optim.step_size": AT_LEAST_1,
    "optim.patience": AT_LEAST_0,
    "model.drop_rate": BELOW_1,
    "augment.rotate_limit": ("between 0 and 180 degrees", lambda v: 0 <= v <= 180),
    "trainer.limit_train_batches": BATCHES,
    "trainer.limit_val_batches": BATCHES,  # 0 would validate nothing; --fold full trains without validation
    "trainer.log_every_n_steps": AT_LEAST_1,
    "trainer.checkpoint_every_n_steps": ("0 (at epoch ends only) or more", lambda v: v >= 0),
    "trainer.early_stopping_patience": ("0 (off) or more", lambda v: v >= 0),
    "trainer.worst_images": AT_LEAST_0,
    "data.synthetic.eval_people": AT_LEAST_0,
    "data.synthetic.width": AT_LEAST_1,
    "data.synthetic.height": AT_LEAST_1,
}


def check_ranges(cfg: Any) -> None:
    """Raise a ConfigError naming the first setting of :data:`RANGES` whose value is outside its range."""
    for key, (allowed, ok) in RANGES.items():
        value = reduce(getattr, key.split("."), cfg)
        if not ok(value):
            raise ConfigError(f"{key}: must be {allowed}, got {value}")
    if cfg.model.pretrained_file is not None and not cfg.model.pretrained_file.strip():
        raise ConfigError("model.pretrained_file: is empty; name a saved state dict, or leave it out (null)")


def check_exp_name(exp: str) -> str:
    """``exp`` when it is one folder name under ``runs_dir`` (not empty, no ``/`` or ``\\``, not ``.`` or
    ``..``), so that a run never writes outside ``runs_dir``; else a ConfigError naming it."""
    if not exp or exp.strip() in (".", "..") or any(c in exp for c in "/\\\0"):
        raise ConfigError(
            f"experiment name {exp!r} (exp / --exp): must be one folder name under runs_dir, without / or \\ "
            "and not . or .., e.g. --exp resnet-seed1"
        )
    return exp
