"""The trained models an experiment's prediction uses: finding each task's checkpoints in the run layout,
loading them safely on the inference device, and checking they can be merged (one preprocessing per group,
one set of age cuts)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch

from configs.config import Config
from core.errors import DataError
from core.tasks import COMPETITION_AGE_CUTS, MULTIHEAD, TASK_NAMES
from lightning_modules.base import ClassifierModule
from lightning_modules.checkpoint import model_from_checkpoint
from lightning_modules.hardware import channels_last, cuda_facts, predict_precision, ready_for_device
from rundir.layout import (
    BEST_CKPT,
    DONE,
    TaskModels,
    finish_command,
    fold_name,
    run_place,
    task_models,
    unfinished_note,
)

log = logging.getLogger("predict")
CHECKPOINT = BEST_CKPT


def find_checkpoints(exp_dir: Path, folds: list[str] | None) -> dict[str, list[Path]]:
    """``task -> [checkpoints]`` of ``folds`` (default: the k-fold runs, not ``full`` or ``holdout``): the task's
    own models and a multihead model's, both (``rundir.layout.task_models``: the rule the OOF score follows too),
    logged per task. An unfinished run (no ``done.json``) is left out with a warning naming it; a fold named in
    ``folds`` that no finished model of a task serves, a finished run without its checkpoint, or a task with no
    checkpoint at all is an error naming it."""
    models = {task: task_models(exp_dir, task, folds) for task in TASK_NAMES}
    for found in models.values():
        if folds is not None:
            check_named_folds(exp_dir, found, folds)
        lost = [run / CHECKPOINT for run in found.runs if not (run / CHECKPOINT).is_file()]
        if lost:
            raise DataError(f"{lost[0]} is missing, though its run finished: {retrain_hint(lost[0])}")
    missing = [t for t, m in models.items() if not m.runs]
    if missing:
        wanted = f" for folds {','.join(folds)}" if folds else ""
        raise DataError(
            f"no finished {CHECKPOINT} for task(s) {', '.join(missing)}{wanted} under {exp_dir}: "
            f"train them first, e.g. python train.py --task {missing[0]} --exp {exp_dir.name}"
        )
    note = unfinished_note(list(models.values()))
    if note:
        log.warning(note)
    for found in models.values():
        log.info(found.summary("checkpoints"))
    return {task: found.files(CHECKPOINT) for task, found in models.items()}


def check_named_folds(exp_dir: Path, models: TaskModels, folds: list[str]) -> None:
    """Every fold of ``folds`` (named with --folds) has a finished model of ``models.task``, else an error naming
    the fold and the file: a named fold is never dropped in silence."""
    served = {run.name for run in models.runs}
    for fold in folds:
        if fold_name(fold) in served:
            continue
        owners = (models.task, MULTIHEAD)
        runs = [exp_dir / owner / fold_name(fold) for owner in owners if (exp_dir / owner / fold_name(fold)).is_dir()]
        if runs and runs[0] in models.unfinished:
            raise DataError(
                f"--folds {fold}: {runs[0] / DONE} is missing (the run stopped, or is still training): finish it "
                f"({finish_command(runs[0])}, with the options it was trained with) or leave fold {fold} out of --folds"
            )
        path = exp_dir / models.task / fold_name(fold) / CHECKPOINT
        raise DataError(
            f"--folds {fold}: no {path} (nor {MULTIHEAD}/{fold_name(fold)}/{CHECKPOINT}) for task {models.task}: "
            f"train that fold (python train.py --task {models.task} --fold {fold} --exp {exp_dir.name}) or leave "
            "it out of --folds"
        )


def retrain_hint(path: Path) -> str:
    """What to do about the bad checkpoint ``runs/<exp>/<task>/fold<k>/best.ckpt``."""
    run = run_place(path)
    return (
        f"retrain that fold (python train.py --task {run.task} --fold {run.fold} --exp {run.exp} --overwrite) or "
        "leave it out with --folds"
    )


def folder_tasks(path: Path) -> list[str]:
    """The tasks a checkpoint serves by where it sits: its task folder's, or every task in ``multihead/``."""
    folder = run_place(path).task
    return list(TASK_NAMES) if folder == MULTIHEAD else [folder] if folder in TASK_NAMES else []


def load_model(path: Path, device: torch.device, age_cuts: tuple[int, int] | None = None) -> ClassifierModule:
    """The model saved at ``path``, safely loaded (its class from its own saved settings), on ``device``; a
    DataError naming the file when it is not a readable checkpoint or has no head for the task(s) of the folder
    it sits in (a gender model in ``age/fold0``). A multihead model in a task's folder serves that task.
    ``age_cuts``: read an ordinal age head's groups at these cuts (a softmax age head has only its own)."""
    hint = retrain_hint(path)
    model = model_from_checkpoint(path, hint)
    missing = [t for t in folder_tasks(path) if t not in model.head_slices()]
    if missing:
        raise DataError(f"{path} holds a {model.task.name} model, not a model of {' and '.join(missing)}; {hint}")
    if age_cuts is not None and "age" in model.head_slices():
        if not model.ordinal_age and tuple(age_cuts) != model.age_cuts:
            raise DataError(
                f"{path}: its age head is a softmax over the groups at {list(model.age_cuts)}, which only an ordinal "
                "age head (model.age_head=ordinal) can be read at other cuts: leave out --age-cuts"
            )
        model.age_cuts = tuple(age_cuts)
    return ready_to_predict(model.to(device))


def ready_to_predict(model: ClassifierModule) -> ClassifierModule:
    """``model`` (on its inference device) set to predict at the precision it was trained at, in the memory format
    its settings ask for on that device."""
    cuda = model.device.type == "cuda"
    bf16 = cuda and cuda_facts()[1]
    model.precision = predict_precision(model.trained_precision, model.cfg.trainer.precision, cuda, bf16)
    return ready_for_device(model, channels_last(model.cfg.trainer.channels_last, cuda), compile=False, cuda=cuda)


def inference_device(cfg: Config) -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() and cfg.trainer.accelerator != "cpu" else "cpu")


def preprocessing_key(model: ClassifierModule) -> str:
    """Models with the same key are fed the very same tensors (one decode for all of them)."""
    aug = model.cfg.augment
    return json.dumps([aug.resize_height, aug.resize_width, aug.crop, model.hparams.mean, model.hparams.std])


def check_compatible(models: dict[Path, ClassifierModule], age_paths: list[Path] | None = None) -> tuple[int, int]:
    """The age cuts of the models that serve the age task (``age_paths``; default: every model with an age
    head), which one submission needs them to share; an error listing them otherwise."""
    paths = [p for p, m in models.items() if "age" in m.head_slices()] if age_paths is None else age_paths
    age = {p: tuple(models[p].age_cuts) for p in paths}
    if len(set(age.values())) > 1:
        listing = "; ".join(f"{p}: {list(c)}" for p, c in age.items())
        raise DataError(f"the age checkpoints were trained with different age cuts ({listing}): pass --folds")
    return next(iter(age.values()), COMPETITION_AGE_CUTS)


def age_cuts_note(cuts: tuple[int, int]) -> str | None:
    """The line to log when the age models' groups are not the competition's, which they are submitted as."""
    if tuple(cuts) == COMPETITION_AGE_CUTS:
        return None
    young, old = COMPETITION_AGE_CUTS
    return (
        f"the age models were trained with data.age_cuts={list(cuts)}: their groups <{cuts[0]}, "
        f"{cuts[0]}-{cuts[1] - 1} and {cuts[1]}+ are submitted as the competition's <{young}, {young}-{old - 1} "
        f"and {old}+ (their group 2 as {old}+)"
    )
