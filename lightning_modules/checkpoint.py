"""Reading this project's checkpoints safely, with one clear error naming the file for anything that is not one.

Checkpoints are loaded with ``weights_only=True``: tensors and plain data only, never code. A file that is
not a complete checkpoint (truncated, another format, a stray file), that holds Python objects beyond plain
data (which this project's checkpoints never do: loading it could run code, so it is refused, with no advice
to load it unsafely), or whose weights do not fit its own settings, is a :class:`DataError` naming the file and
what to do. The model class comes from the checkpoint's saved hyperparameters (a task model names its task; a
multihead model does not), never from the folder it sits in.
"""

from __future__ import annotations

import copy
import pickle
import zipfile
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch

from configs.config import config_from_dict
from core.errors import ConfigError, DataError
from core.tasks import MULTIHEAD
from lightning_modules.multihead import MultiHeadModule
from lightning_modules.task_module import TaskModule


def read_checkpoint(path: str | Path, what_to_do: str) -> dict[str, Any]:
    """The checkpoint at ``path`` as plain data (tensors memory-mapped, read when used); a :class:`DataError`
    naming the file, the problem and ``what_to_do`` when it is not a readable checkpoint of this project."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such checkpoint; {what_to_do}")
    if not zipfile.is_zipfile(path):
        raise DataError(
            f"{path} is not a checkpoint, or only part of one (a complete checkpoint is a zip archive written by "
            f"torch.save); {what_to_do}"
        )
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except pickle.UnpicklingError:
        raise DataError(
            f"{path} holds Python objects beyond tensors and plain data, which this project's checkpoints never do: "
            f"it is refused, since loading it could run code; {what_to_do}"
        ) from None
    except Exception as exc:  # a damaged archive: torch raises several types
        reason = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise DataError(f"{path} cannot be read as a checkpoint ({reason}); {what_to_do}") from None
    hparams = ckpt.get("hyper_parameters") if isinstance(ckpt, dict) else None
    if not isinstance(hparams, dict) or "config" not in hparams or "state_dict" not in ckpt:
        raise DataError(f"{path} is not a checkpoint of this project (it has no saved settings); {what_to_do}")
    return ckpt


def checkpoint_task(ckpt: dict[str, Any]) -> str:
    """The task a checkpoint's model was trained for: mask, gender, age or multihead."""
    return ckpt["hyper_parameters"].get("task") or MULTIHEAD


def module_class(ckpt: dict[str, Any]) -> type[pl.LightningModule]:
    """The LightningModule class that wrote ``ckpt``, from its saved hyperparameters."""
    return TaskModule if ckpt["hyper_parameters"].get("task") else MultiHeadModule


def model_from_checkpoint(path: str | Path, what_to_do: str) -> pl.LightningModule:
    """The trained model saved at ``path``, on the CPU, in evaluation mode."""
    ckpt = read_checkpoint(path, what_to_do)
    cls = module_class(ckpt)
    hparams = copy.deepcopy(dict(ckpt["hyper_parameters"]))
    if isinstance(hparams["config"].get("model"), dict):  # the checkpoint holds every weight: no starting weights
        hparams["config"]["model"].update(pretrained=False, pretrained_file=None)
    try:
        model = cls(**hparams)
        model.load_state_dict(ckpt["state_dict"])
        model.cfg = config_from_dict(ckpt["hyper_parameters"]["config"])  # its settings as trained
    except (ConfigError, TypeError, KeyError, RuntimeError, ValueError) as exc:
        reason = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise DataError(f"{path}: its weights do not fit its own saved settings ({reason}); {what_to_do}") from None
    model.on_load_checkpoint(ckpt)
    return model.eval()
