"""Resumable training: ``last.ckpt`` written every N optimizer steps and at every epoch end (atomically),
the training sampler put back where a killed run left it, and SIGTERM turned into a checkpoint plus a hint.

How a resume goes in Lightning 2.6: ``trainer.fit(ckpt_path=...)`` restores the loops' progress (epoch, and
how many batches of the epoch were done), so a mid-epoch resume counts those batches as done; but a plain
``DataLoader`` has no state, so on its own the sampler would start the epoch from its first index again, and
Lightning even builds the loader's iterator before it sets the sampler's epoch. :class:`SamplerPosition`
stores the position in the checkpoint and, when training starts, moves the sampler there and rebuilds the
iterator, so the rest of the epoch is exactly the batches the killed run had not trained on.

On SIGTERM Lightning only sets ``trainer.received_sigterm`` and raises ``SIGTERMException`` (a
``SystemExit`` with exit code 0) after the current batch. :class:`LastCheckpoint` holds that back to the end
of a gradient-accumulation cycle (or the epoch's end, after validation), saves ``last.ckpt`` and makes the
process exit with 143, logging the command that resumes the run. A first Ctrl-C during training takes the same
way (exit 130); a second one stops at once, with the same hint (``last.ckpt`` then holds the last save).

A resumed run may be asked for more epochs than it was planned for: :class:`ScheduleLength` makes the restored
learning-rate schedule the one a run planned for the new length follows (see ``fit_schedule_to_length``).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import shlex
import signal
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import Checkpoint, ModelCheckpoint
from pytorch_lightning.trainer.states import TrainerFn
from pytorch_lightning.utilities.exceptions import SIGTERMException
from torch.utils.data import DataLoader

from lightning_modules.optim import fit_schedule_to_length

log = logging.getLogger(__name__)
SIGTERM_EXIT = 128 + signal.SIGTERM  # 143: the shell's code for "stopped by SIGTERM"
SIGINT_EXIT = 128 + signal.SIGINT  # 130: stopped by Ctrl-C


@contextlib.contextmanager
def atomic_checkpoint(trainer: pl.Trainer, path: str | Path) -> Iterator[Path]:
    """Yield ``<path>.tmp`` to save a checkpoint to; once saved it is flushed to disk and renamed over ``path``.

    Lightning writes a checkpoint to a temporary file in the system temp directory and moves it into place,
    which is a plain copy (a half file under the real name when killed) when that directory is on another
    file system. A rename within the run directory always leaves either the old file or the new one whole.
    """
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        if trainer.is_global_zero:
            # Lightning's writer swallows a permission error and writes nothing: make the file first, so that an
            # unwritable directory is an error naming it
            tmp.parent.mkdir(parents=True, exist_ok=True)
            open(tmp, "wb").close()
        yield tmp  # every process saves (the global-zero one writes)
        if trainer.is_global_zero:
            if tmp.stat().st_size == 0:
                raise OSError(errno.EIO, "the checkpoint was not written (nothing reached the file)", str(tmp))
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
            os.replace(tmp, path)
    finally:
        if trainer.is_global_zero:
            tmp.unlink(missing_ok=True)
    trainer.strategy.barrier("atomic_checkpoint")


def save_checkpoint_atomic(trainer: pl.Trainer, path: str | Path, weights_only: bool = False) -> None:
    """``trainer.save_checkpoint``, never leaving a half file at ``path``."""
    with atomic_checkpoint(trainer, path) as tmp:
        trainer.save_checkpoint(tmp, weights_only)


class AtomicModelCheckpoint(ModelCheckpoint):
    """``ModelCheckpoint`` whose files are written through :func:`atomic_checkpoint`, and whose best score
    survives a run folder that was moved or renamed since the checkpoint was saved."""

    def _save_checkpoint(self, trainer: pl.Trainer, filepath: str) -> None:
        with atomic_checkpoint(trainer, filepath) as tmp:
            super()._save_checkpoint(trainer, str(tmp))
        self._last_checkpoint_saved = filepath

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Lightning restores the best score only when the folder is the one saved in the checkpoint; otherwise
        the next epoch, however worse, would replace ``best.ckpt``. The run's files keep their names in a moved
        folder, so the saved paths are moved along with it."""
        before = state_dict.get("dirpath")
        if before and self.dirpath and before != self.dirpath:
            state_dict = moved_state(state_dict, before, self.dirpath)
        super().load_state_dict(state_dict)


def moved_state(state: dict[str, Any], before: str, now: str) -> dict[str, Any]:
    """A ``ModelCheckpoint`` state with the paths of files in the folder ``before`` made paths in ``now``."""

    def move(path: Any) -> Any:
        if isinstance(path, str) and path and os.path.dirname(path) == before:
            return os.path.join(now, os.path.basename(path))
        return path

    moved = {key: move(value) for key, value in state.items()}
    moved["dirpath"] = now
    moved["best_k_models"] = {move(path): score for path, score in (state.get("best_k_models") or {}).items()}
    return moved


RESUME_HINT = "the same command with --resume"  # when the caller did not say the command line


def resume_command(argv: list[str]) -> str:
    """The command line that continues a run started with ``argv`` (the script and its arguments): the same
    arguments with ``--resume``."""
    args = [a for a in argv if a != "--overwrite"]
    if "--resume" not in args:
        args.append("--resume")
    return shlex.join(["python", *args])


def _batch_progress(trainer: pl.Trainer):
    return trainer.fit_loop.epoch_loop.batch_progress


def last_batch_of_epoch(trainer: pl.Trainer) -> bool:
    """Whether the batch that just ran is the epoch's last one."""
    progress = _batch_progress(trainer)
    return bool(progress.is_last_batch) or progress.current.ready >= trainer.num_training_batches


def step_boundary(trainer: pl.Trainer) -> bool:
    """Whether the batch that just ran completed an optimizer step (gradient accumulation included)."""
    return last_batch_of_epoch(trainer) or _batch_progress(trainer).current.ready % trainer.accumulate_grad_batches == 0


class LastCheckpoint(Checkpoint):
    """Writes ``last.ckpt``, where ``--resume`` continues from:

    - every ``every_n_steps`` optimizer steps (0: never mid-epoch), always right after an optimizer step, so no
      accumulated gradient is lost;
    - at the end of every epoch, after validation and the other epoch-end callbacks;
    - when SIGTERM stops the run: at the end of the current accumulation cycle, or of the epoch when the signal
      comes during its last batch or its validation (which runs to its end: the validation metrics are not in
      a checkpoint). The process then exits with code 143 and logs the command that resumes it.

    Every file is written under a temporary name and renamed, so a kill never leaves a half ``last.ckpt``.
    """

    def __init__(self, path: str | Path, every_n_steps: int = 0, resume_hint: str = RESUME_HINT):
        if every_n_steps < 0:
            raise ValueError(f"every_n_steps must be 0 or more, got {every_n_steps}")
        self.path = Path(path)
        self.every_n_steps = every_n_steps
        self.resume_hint = resume_hint  # the command that resumes the run, told when a signal stops it
        self._saved_step = -1  # the global step last.ckpt was last written at, by this process
        self._sigterm_held = False
        self._stopped_by = "SIGTERM"  # or Ctrl-C
        self._sigint_before: Any = None  # the SIGINT handler to put back after training

    def save(self, trainer: pl.Trainer) -> None:
        save_checkpoint_atomic(trainer, self.path)
        self._saved_step = trainer.global_step

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._saved_step = trainer.global_step  # a resumed run starts from a checkpoint of this step
        self._catch_ctrl_c(trainer)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._release_ctrl_c()

    def _catch_ctrl_c(self, trainer: pl.Trainer) -> None:
        """A first Ctrl-C stops like SIGTERM (at the end of the optimizer step, saving last.ckpt); a second one
        raises KeyboardInterrupt at once. Only the main thread can own a signal."""
        if threading.current_thread() is not threading.main_thread():
            return
        self._sigint_before = signal.getsignal(signal.SIGINT)

        def first_ctrl_c(signum, frame) -> None:
            self._release_ctrl_c()  # the next Ctrl-C goes to the handler from before: KeyboardInterrupt
            self._stopped_by = "Ctrl-C"
            if trainer.is_global_zero:
                log.warning(
                    "Ctrl-C: finishing the optimizer step, then saving %s (Ctrl-C again stops at once)", self.path
                )
            trainer._signal_connector.received_sigterm = True

        signal.signal(signal.SIGINT, first_ctrl_c)

    def _release_ctrl_c(self) -> None:
        if self._sigint_before is not None:
            signal.signal(signal.SIGINT, self._sigint_before)
            self._sigint_before = None

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any) -> None:
        epoch_end, boundary = last_batch_of_epoch(trainer), step_boundary(trainer)
        if trainer.received_sigterm and (epoch_end or not boundary):
            self._hold_sigterm(trainer)
        elif self._sigterm_held and boundary:
            self._release_sigterm(trainer)  # Lightning stops after this batch; on_exception saves
        if (
            self.every_n_steps
            and boundary
            and not epoch_end  # the epoch-end checkpoint follows, after validation
            and trainer.global_step % self.every_n_steps == 0
            and trainer.global_step != self._saved_step
        ):
            self.save(trainer)

    def on_validation_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any) -> None:
        if trainer.state.fn == TrainerFn.FITTING and trainer.received_sigterm:
            self._hold_sigterm(trainer)  # else Lightning stops part-way through validation

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.save(trainer)
        if self._sigterm_held:
            self._release_sigterm(trainer)  # Lightning stops once the epoch is closed

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        self._release_ctrl_c()
        if isinstance(exception, KeyboardInterrupt):  # a second Ctrl-C: no save, the last one stands
            if trainer.is_global_zero:
                saved = f"{self.path} holds the last saved step" if self.path.is_file() else "nothing was saved yet"
                log.warning("Stopped by Ctrl-C; %s. Resume with:\n  %s", saved, self.resume_hint)
            return
        if not isinstance(exception, SIGTERMException) or trainer.state.fn != TrainerFn.FITTING:
            return
        if trainer.global_step != self._saved_step:
            self.save(trainer)
        exception.code = SIGINT_EXIT if self._stopped_by == "Ctrl-C" else SIGTERM_EXIT
        if trainer.is_global_zero:
            epochs = trainer.fit_loop.epoch_progress.current
            if epochs.processed < epochs.started:
                where = f"epoch {epochs.processed} after {_batch_progress(trainer).current.processed} batches"
            else:
                where = f"the end of epoch {epochs.processed - 1}"
            log.warning(
                "Stopped by %s at step %d (%s); saved in %s. Resume with:\n  %s",
                self._stopped_by,
                trainer.global_step,
                where,
                self.path,
                self.resume_hint,
            )

    def on_predict_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Lightning notes a SIGTERM during prediction but does not stop: stop here, once the outputs are written
        if trainer.received_sigterm:
            if trainer.is_global_zero:
                log.warning("Stopped by SIGTERM after this run's prediction. Resume with:\n  %s", self.resume_hint)
            raise SystemExit(SIGTERM_EXIT)

    def _hold_sigterm(self, trainer: pl.Trainer) -> None:
        if not self._sigterm_held and trainer.is_global_zero:
            log.info("SIGTERM: finishing the optimizer step (or epoch) before saving %s", self.path)
        self._sigterm_held = True
        trainer._signal_connector.received_sigterm = False

    def _release_sigterm(self, trainer: pl.Trainer) -> None:
        self._sigterm_held = False
        trainer._signal_connector.received_sigterm = True


def _train_sampler(trainer: pl.Trainer):
    """The training sampler, when it can resume part-way through an epoch (``resume_at``), else None."""
    loader = trainer.train_dataloader
    if not isinstance(loader, DataLoader):
        return None
    for sampler in (loader.sampler, getattr(loader.batch_sampler, "sampler", None)):
        if hasattr(sampler, "resume_at"):
            return sampler
    return None


class SamplerPosition(pl.Callback):
    """Stores where in the epoch training is (epoch, batches done, batch size, processes) in each checkpoint,
    and on resume moves the training sampler there: the rest of that epoch is the batches the interrupted run
    had not trained on, in the same order, on every process (each skips its own shard's first batches)."""

    def __init__(self) -> None:
        self._trainer: pl.Trainer | None = None
        self._loaded: dict[str, int] | None = None

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._trainer = trainer

    def state_dict(self) -> dict[str, int]:
        trainer = self._trainer
        if trainer is None:
            return {}
        epochs = trainer.fit_loop.epoch_progress.current
        mid_epoch = epochs.processed < epochs.started  # an epoch began and its batches are not all done
        loader = trainer.train_dataloader
        return {
            "epoch": epochs.processed,  # the epoch in progress, or the next one
            "batches": _batch_progress(trainer).current.processed if mid_epoch else 0,
            "batch_size": getattr(loader, "batch_size", None) or 0,
            "world_size": trainer.world_size,
        }

    def load_state_dict(self, state_dict: dict[str, int]) -> None:
        self._loaded = dict(state_dict) or None

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        state, self._loaded = self._loaded, None
        if trainer.ckpt_path is None:
            return
        sampler = _train_sampler(trainer)
        epoch = trainer.current_epoch
        batches = state["batches"] if state and state.get("epoch") == epoch else 0
        if sampler is None:
            if batches:
                log.warning("the training sampler cannot skip batches: epoch %d restarts from its beginning", epoch)
            return
        batch_size = trainer.train_dataloader.batch_size or 1
        if batches and (state.get("batch_size"), state.get("world_size")) != (batch_size, trainer.world_size):
            log.warning(
                "resuming with batch size %d on %d process(es), the checkpoint had %s on %s: the rest of epoch %d "
                "is not the interrupted run's",
                batch_size,
                trainer.world_size,
                state.get("batch_size"),
                state.get("world_size"),
                epoch,
            )
        sampler.resume_at(epoch, batches * batch_size)
        if batches:
            log.info("resuming epoch %d after its first %d batches", epoch, batches)
            warnings.filterwarnings("ignore", message="You're resuming from a checkpoint that ended before the epoch")
        # Lightning made the loader's iterator before the sampler was moved (with worker processes it has
        # already drawn indices from it), and does not make a new one for a resumed epoch: make it now.
        fetcher = getattr(trainer.fit_loop, "_data_fetcher", None)
        if fetcher is not None:
            iter(fetcher)


class ScheduleLength(pl.Callback):
    """On a resumed run: the restored learning-rate schedules follow the run's ``max_epochs`` (which may have
    grown since the checkpoint), by the rule of :func:`lightning_modules.optim.fit_schedule_to_length`."""

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.ckpt_path is None:
            return
        for config in trainer.lr_scheduler_configs:
            if fit_schedule_to_length(config.scheduler, trainer.max_epochs) and trainer.is_global_zero:
                log.info(
                    "resumed with trainer.max_epochs=%d: the cosine learning-rate schedule now runs over %d epochs "
                    "(epoch %d at learning rate %.3g)",
                    trainer.max_epochs,
                    trainer.max_epochs,
                    trainer.current_epoch,
                    config.scheduler.get_last_lr()[0],
                )
