"""Starting, resuming or replacing a run in its directory, without losing a result on the way.

- A run directory holding an earlier run's results is never replaced unless ``--overwrite`` is given; then the
  earlier results are set aside in ``<run>/.replaced/`` and dropped only once the new run has finished (a new
  run that stops before its first checkpoint gets them back; one stopped later can be resumed, and an unfinished
  run overwritten again is dropped instead: the last finished run is what stays aside).
- ``--resume`` continues from ``last.ckpt`` only when the asked settings are the checkpoint's (those that shape
  the model, the data, the loss and the optimisation); otherwise it refuses, naming the keys, before anything
  is written.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from configs.config import Config
from core.atomic import write_text_atomic
from core.errors import RunError
from lightning_modules.checkpoint import checkpoint_task, read_checkpoint
from rundir.layout import BEST_CKPT, CONFIG, DONE, LAST_CKPT, METRICS, REPLACED, RESULTS, read_done

# settings a resumed run may change: where things are, how it is shown and logged, how long it trains, and on
# what hardware (the effective batch is kept); every other setting (precision, compile, the weights' average,
# the batches an epoch trains or validates on, ...) gives the weights and optimiser state another meaning
RESUMABLE = (
    "exp",
    "runs_dir",
    "data.dir",
    "data.default_dir",
    "data.cache_dir",
    "data.validate_images",
    "data.skip_bad",
    "data.cache_images",
    "data.synthetic.",
    "loader.batch_size",
    "loader.num_workers",
    "trainer.max_epochs",
    "trainer.early_stopping_patience",
    "trainer.log_every_n_steps",
    "trainer.progress_bar",
    "trainer.worst_images",
    "trainer.checkpoint_every_n_steps",
    "trainer.accelerator",
    "trainer.devices",
    "trainer.num_nodes",
    "trainer.parallel_jobs",  # --gpus sets it: the loader workers of jobs side by side
    "trainer.strategy",
    "trainer.deterministic",
    "wandb.",
)


def ensure_writable(out: Path) -> None:
    """Create ``out``; an error naming it when it cannot be written (before any work is done)."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        write_text_atomic(out / ".write-check", "")
        (out / ".write-check").unlink()
    except OSError as exc:
        raise RunError(
            f"cannot write the run directory {out} ({exc.strerror or exc}): choose another runs_dir "
            "(--set runs_dir=DIR) or fix its permissions"
        ) from None


def has_checkpoint(out: Path) -> bool:
    return any((out / name).is_file() for name in (BEST_CKPT, LAST_CKPT))


def settle_replaced(out: Path) -> None:
    """Once a run that replaced a finished one stops (or before the next start, after a kill): drop the finished
    run's results when the new run has finished too; put them back when the new run has no checkpoint (nothing
    of it to resume); else keep them aside, so that ``--resume`` can finish the new run."""
    aside = out / REPLACED
    if not aside.is_dir():
        return
    if (out / DONE).is_file():
        shutil.rmtree(aside)
    elif not has_checkpoint(out):
        for path in aside.iterdir():
            os.replace(path, out / path.name)
        aside.rmdir()


def _set_aside(out: Path, names: list[str]) -> None:
    """Move the results ``names`` into ``.replaced/``; when it holds a finished run already (the one an
    unfinished, overwritten run replaced), that one stays and the unfinished run's results are dropped."""
    aside = out / REPLACED
    keep = not aside.is_dir()
    if keep and names:
        aside.mkdir()
    for name in names:
        if keep:
            os.replace(out / name, aside / name)
        else:
            (out / name).unlink()


def claim_run_dir(out: Path, resume: bool, overwrite: bool, max_epochs: int) -> bool:
    """Make ``out`` ready for a run; False when ``resume`` finds the run finished already (with at least
    ``max_epochs``: a larger one trains on from last.ckpt). With ``resume`` nothing is changed (but an earlier
    ``--overwrite`` killed before its first checkpoint gets its results back). An earlier run's results are
    replaced only with ``overwrite``, and kept aside until the new run finishes (the last finished run's, when
    an unfinished one is overwritten)."""
    settle_replaced(out)  # an earlier --overwrite that was killed
    found = [name for name in RESULTS if (out / name).exists()]
    if resume:
        if DONE not in found:
            return True
        finished = (read_done(out) or {}).get("max_epochs", 0)  # unreadable: not finished
        return finished < max_epochs  # more epochs asked for: it trains on (done.json goes once it starts)
    if found and not overwrite:
        raise RunError(
            f"{out} already holds an earlier run ({', '.join(found)}): pass --resume to continue it (finished "
            "runs are skipped), --overwrite to replace it, or --exp NAME for a new experiment"
        )
    _set_aside(out, [name for name in (*RESULTS, CONFIG, METRICS) if (out / name).exists()])
    return True


def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def resumable(key: str) -> bool:
    """Whether a resumed run may change the setting ``key`` (``trainer.max_epochs``)."""
    return any(key == k or (k.endswith(".") and key.startswith(k)) for k in RESUMABLE)


def settings_that_differ(saved: dict[str, Any], asked: dict[str, Any]) -> list[str]:
    """``key: checkpoint X, asked Y`` for each setting a resumed run may not change. A setting the checkpoint does
    not name (one added to the project since it was saved) counts as its default."""
    before, now = {**_flatten(Config().to_dict()), **_flatten(saved)}, _flatten(asked)
    keys = sorted(k for k in before.keys() | now.keys() if not resumable(k) and before.get(k) != now.get(k))
    return [f"{k}: checkpoint {before.get(k)!r}, asked {now.get(k)!r}" for k in keys]


def check_resume(cfg: Config, task: str, out: Path) -> dict[str, Any] | None:
    """Before ``--resume`` writes anything: the hyperparameters of ``out``'s last.ckpt, or None when there is
    none to resume from. A :class:`RunError` when the checkpoint is another task's or was trained with other
    settings (naming the keys); a :class:`DataError` when it is not a readable checkpoint."""
    last = out / LAST_CKPT
    if not last.is_file():
        return None
    afresh = "start this run afresh with --overwrite (or a new --exp)"
    ckpt = read_checkpoint(last, afresh)
    saved_task = checkpoint_task(ckpt)
    if saved_task != task:
        raise RunError(f"cannot resume {last}: it holds a {saved_task} model, not {task}; {afresh}")
    differ = settings_that_differ(ckpt["hyper_parameters"]["config"], cfg.to_dict())
    if differ:
        raise RunError(
            f"cannot resume {last} with other settings than it was trained with ({'; '.join(differ)}): resume "
            f"with the same settings, or {afresh}. Nothing was changed."
        )
    return dict(ckpt["hyper_parameters"])


def check_resumed_data(hparams: dict[str, Any] | None, fingerprint: str, out: Path) -> None:
    """A resumed run must train on the data its checkpoint was trained on: the same data set and, when it has
    corrections files, the same corrections (the fingerprint's part after ``+``; a checkpoint saved before the
    fingerprint had that part is checked on the data alone)."""
    saved = (hparams or {}).get("fingerprint")
    if not saved or saved == fingerprint:
        return
    data_before, _, labels_before = saved.partition("+")
    data_now = fingerprint.partition("+")[0]
    if data_before != data_now:
        what = (
            f"another data set (fingerprint {data_before}, the data now gives {data_now}: train.csv or the images "
            "changed)"
        )
    elif labels_before:
        names = ", ".join(map(str, (hparams.get("config") or {}).get("data", {}).get("relabel") or []))
        what = f"other labels (the corrections files data.relabel={names} say something else now)"
    else:
        return
    raise RunError(
        f"cannot resume {out / LAST_CKPT}: it was trained on {what}; start this run afresh with --overwrite "
        "(or a new --exp). Nothing was changed."
    )
