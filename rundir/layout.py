"""The run layout, defined once: where a run's files live (``<runs_dir>/<exp>/<task>/fold<k>/``), their names,
``done.json``, and the ``oof.csv`` schema. Training writes it, prediction, scoring, the noise finder and the
benchmarks read it; nothing else spells a path of a run."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from configs.ranges import check_exp_name
from core.atomic import write_text_atomic
from core.tasks import HEAD_SIZES, MULTIHEAD, TASK_NAMES, side_by_side

FOLD_PREFIX = "fold"
HOLDOUT, FULL = "holdout", "full"  # the 80/20 holdout and all data: used only when asked for by name
NAMED_FOLDS = (HOLDOUT, FULL)
BEST = "best"  # best.ckpt: the best by val/f1, or the final one when there is no validation
LAST = "last"  # last.ckpt: where --resume continues from (every N optimizer steps, each epoch end, on SIGTERM)
BEST_CKPT, LAST_CKPT = f"{BEST}.ckpt", f"{LAST}.ckpt"
CONFIG = "config.yaml"  # the run's resolved config
METRICS = "metrics.csv"  # one row per epoch
OOF = "oof.csv"  # the validation images' predictions, one row per image (schema below)
OOF_FLIP = "oof_flip.csv"  # the same, in the submission's flip TTA: each image and its mirror, averaged
OOF_FILES = {"none": OOF, "flip": OOF_FLIP}  # the out-of-fold predictions by test-time augmentation
# the same rows and columns, each head's probabilities replaced by the votes of the image's nearest training images
# in the run's best.ckpt's feature space (written by predict.py --neighbours; see inference/neighbours.py)
OOF_NEIGHBOURS = "oof_neighbours.csv"
NEIGHBOURS = "neighbours"
OOF_READINGS = {**OOF_FILES, NEIGHBOURS: OOF_NEIGHBOURS}  # every per-image out-of-fold file, by what it reads
DONE = "done.json"  # written last: the run finished (a resumed --fold all skips it)
RESULTS = (BEST_CKPT, LAST_CKPT, OOF, OOF_FLIP, OOF_NEIGHBOURS, DONE)  # what makes a directory "an earlier run"
REPLACED = ".replaced"  # the last finished run's files, when overwritten: kept until a new run finishes
LOCK = ".lock"  # held by the process training in the directory
LOGS = "logs"  # <exp>/logs/<task>-fold<k>.log: each parallel job's output
NOISE = "noise"  # <exp>/noise/: the noise finder's reports; <A>/noise+<B>[+<C>]/: an ensemble's
SUBMISSION = "submission.csv"  # <exp>/submission.csv, with <stem>_probs.csv and <stem>_report.json beside it
OOF_SCORES = "oof_scores.json"  # <exp>/oof_scores.json: the out-of-fold report
OOF_CONFUSION = "oof_confusion.png"
CALIBRATION = "calibration.json"  # <exp>/calibration.json: predict.py --calibrate's per-class offsets
COMPARE = "compare"  # <runs_dir>/compare/<A>_vs_<B>/: python -m analysis compare's outputs
COMPARE_CSV, COMPARE_PNG = "compare.csv", "compare.png"

# oof.csv: these columns, then ``age`` (the person's raw age), then ``prob_0`` .. ``prob_<k-1>``
KEY = ["person", "stem"]  # one image
OOF_COLUMNS = ["person", "image", "stem", "fold", "label"]
AGE = "age"


def prob_columns(num_classes: int) -> list[str]:
    return [f"prob_{k}" for k in range(num_classes)]


HEAD_COLUMNS = side_by_side(dict(zip(TASK_NAMES, HEAD_SIZES, strict=True)))  # a multihead oof.csv's prob_ columns


def exp_dir(runs_dir: str | Path, exp: str) -> Path:
    """``<runs_dir>/<exp>``; a ConfigError when ``exp`` is not one folder name (``../x`` would leave runs_dir)."""
    return Path(runs_dir) / check_exp_name(exp)


def safe_folder(name: str, fallback: str) -> str:
    """``name`` made safe for a folder name (``fallback`` when nothing is left); a long one shortened with a
    hash."""
    safe = re.sub(r"[^A-Za-z0-9._+=-]+", "_", name).lstrip(".") or fallback
    if len(safe) > 120:
        safe = f"{safe[:100]}-{hashlib.sha1(safe.encode()).hexdigest()[:10]}"
    return safe


def noise_dir(runs_dir: str | Path, exps: Sequence[str]) -> Path:
    """The noise finder's outputs: ``<runs_dir>/<exp>/noise`` for one experiment; for an ensemble, in its first
    experiment's folder, ``<runs_dir>/<A>/noise+<B>[+<C>...]``."""
    first, *others = exps
    return exp_dir(runs_dir, first) / safe_folder("+".join([NOISE, *others]), NOISE)


def fold_name(fold: int | str) -> str:
    return f"{FOLD_PREFIX}{fold}"


def run_dir(runs_dir: str | Path, exp: str, task: str, fold: int | str) -> Path:
    """``<runs_dir>/<exp>/<task>/fold<k>``: one model of one fold."""
    return exp_dir(runs_dir, exp) / task / fold_name(fold)


def probs_path(submission: Path) -> Path:
    """Where the per-head probabilities of the submission ``submission`` go: beside it, ``<stem>_probs.csv``."""
    return submission.with_name(submission.stem + "_probs.csv")


def report_path(submission: Path) -> Path:
    """Where the report of the submission ``submission`` goes: beside it, ``<stem>_report.json``."""
    return submission.with_name(submission.stem + "_report.json")


def job_name(task: str, fold: int | str) -> str:
    """``age-fold2``: a (task, fold) job's name, and its log's (``<exp>/logs/age-fold2.log``)."""
    return f"{task}-{fold_name(fold)}"


@dataclass(frozen=True)
class RunPlace:
    """What a run directory's path says: its experiment, task and fold."""

    exp: str
    task: str
    fold: str


def run_place(path: str | Path) -> RunPlace:
    """The experiment, task and fold of a run directory, or of a file in one."""
    path = Path(path)
    folder = path if path.name.startswith(FOLD_PREFIX) else path.parent
    return RunPlace(folder.parent.parent.name, folder.parent.name, folder.name.removeprefix(FOLD_PREFIX))


def fold_dirs(task_dir: Path, folds: list[str] | None = None) -> list[Path]:
    """The run folders ``<task>/fold<k>/`` that ``folds`` names (``["0", "1", "full"]``), in that order; by
    default the k-fold runs only (``fold0`` .. ``fold<k-1>``, numerically): ``foldfull`` (all data) and
    ``foldholdout`` (the 80/20 holdout) overlap them, so they are used only when named."""
    if folds is not None:
        return [task_dir / fold_name(name) for name in folds if (task_dir / fold_name(name)).is_dir()]
    numeric = [d for d in task_dir.glob(f"{FOLD_PREFIX}*") if d.is_dir() and d.name.removeprefix(FOLD_PREFIX).isdigit()]
    return sorted(numeric, key=lambda d: int(d.name.removeprefix(FOLD_PREFIX)))


def run_dirs(experiment: Path) -> list[Path]:
    """Every run folder of an experiment (``<task>/fold<k>``), in name order."""
    return sorted(d for d in experiment.glob(f"*/{FOLD_PREFIX}*") if d.is_dir())


def run_files(task_dir: Path, name: str, folds: list[str] | None = None) -> list[Path]:
    """The files called ``name`` in the run folders of ``task_dir`` that ``folds`` names (see :func:`fold_dirs`)."""
    return [d / name for d in fold_dirs(task_dir, folds) if (d / name).is_file()]


@dataclass(frozen=True)
class TaskModels:
    """The one rule for which models serve a task, followed by the submission (which averages them) and by every
    out-of-fold reading (the OOF score, the calibration, the comparison, the noise finder), so that what is scored
    is what is submitted: the finished runs of the task's own folder and of ``multihead/``, both. ``unfinished``:
    the runs of those folds without ``done.json`` (stopped, or still training in another process), left out."""

    task: str
    own: tuple[Path, ...]
    multihead: tuple[Path, ...]
    unfinished: tuple[Path, ...]

    @property
    def runs(self) -> tuple[Path, ...]:
        return (*self.own, *self.multihead)

    def files(self, name: str) -> list[Path]:
        """The files called ``name`` (``best.ckpt``, ``oof.csv``) of the runs, where they exist."""
        return [run / name for run in self.runs if (run / name).is_file()]

    def summary(self, what: str) -> str:
        """``mask: 5 task + 5 multihead checkpoints``."""
        return f"{self.task}: {len(self.own)} task + {len(self.multihead)} multihead {what}"


def task_models(exp: Path, task: str, folds: list[str] | None = None) -> TaskModels:
    """The runs of ``folds`` (see :func:`fold_dirs`) whose models serve ``task`` (see :class:`TaskModels`)."""
    found = {owner: fold_dirs(exp / owner, folds) for owner in (task, MULTIHEAD)}
    finished = {owner: tuple(r for r in runs if read_done(r) is not None) for owner, runs in found.items()}
    unfinished = tuple(r for runs in found.values() for r in runs if read_done(r) is None)
    return TaskModels(task, finished[task], finished[MULTIHEAD], unfinished)


def finish_command(run: Path) -> str:
    """The command that finishes the run ``run`` (add the options it was trained with)."""
    place = run_place(run)
    return f"python train.py --task {place.task} --fold {place.fold} --exp {place.exp} --resume"


def unfinished_note(models: Sequence[TaskModels]) -> str | None:
    """The warning for the runs ``models`` left out as unfinished, naming each and the command that finishes it;
    None when there are none."""
    runs = list(dict.fromkeys(r for m in models for r in m.unfinished))
    if not runs:
        return None
    names = ", ".join(f"{r.parent.name}/{r.name}" for r in runs)
    return (
        f"{len(runs)} run(s) without {DONE} (stopped, or still training) left out of the ensemble and the scores: "
        f"{names}; finish each with its training command plus --resume, e.g. {finish_command(runs[0])}"
    )


def read_done(run: Path) -> dict | None:
    """A finished run's summary (its ``done.json``), None when it has not finished; an unreadable file counts
    as unfinished."""
    try:
        done = json.loads((run / DONE).read_text())
    except (OSError, ValueError):
        return None
    return done if isinstance(done, dict) else None


def write_done(run: Path, summary: dict) -> None:
    write_text_atomic(run / DONE, json.dumps(summary))
