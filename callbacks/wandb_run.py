"""Starting a W&B run per (task, fold) that never blocks or crashes training."""

from __future__ import annotations

import logging
import netrc
import os
from pathlib import Path

from configs.config import Config

log = logging.getLogger(__name__)
INIT_TIMEOUT_S = 60
_state = {"online_failed": False, "offline_told": False}  # said once per process, not once per run


def logged_in() -> bool:
    """True when a W&B API key is set in the environment or stored by ``wandb login``."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False


ENV_MODES = {"online": "online", "offline": "offline", "disabled": "disabled", "dryrun": "offline", "run": "online"}


def resolve_mode(mode: str) -> str:
    """``auto`` -> W&B's own ``WANDB_MODE`` when it is set (``WANDB_MODE=disabled`` turns W&B off for every
    command), else ``online`` when logged in, else ``offline`` (``wandb sync`` uploads the run later). A mode
    set in the config or by ``--wandb`` wins over the environment."""
    if mode == "auto":
        env = ENV_MODES.get(os.environ.get("WANDB_MODE", "").strip().lower())
        return env or ("online" if logged_in() else "offline")
    return mode


def init_run(cfg: Config, mode: str, **kwargs):
    """``wandb.init`` that falls back to offline, with one warning, when an online run cannot start."""
    import wandb

    # absolute: W&B's background service resolves a relative dir against its own working directory,
    # which is wherever the first run of this process started
    run_dir = Path(cfg.wandb.dir).resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    kwargs = dict(project=cfg.wandb.project, entity=cfg.wandb.entity, dir=str(run_dir), **kwargs)
    settings = wandb.Settings(init_timeout=INIT_TIMEOUT_S, silent=True)
    if mode == "online" and _state["online_failed"]:
        mode = "offline"  # it failed once in this process: the next runs do not wait for it again
    try:
        run = wandb.init(mode=mode, settings=settings, reinit="finish_previous", **kwargs)
    except Exception as exc:  # unreachable server, bad key: never stop the work for it
        if mode != "online":
            raise
        _state["online_failed"] = True
        log.warning(
            "W&B online run could not start (%s): training goes on, logging offline (upload later with "
            "`wandb sync %s`)",
            exc,
            run_dir,
        )
        run = wandb.init(mode="offline", settings=settings, reinit="finish_previous", **kwargs)
        mode = "offline"
    if mode == "offline" and not _state["offline_told"]:
        _state["offline_told"] = True
        log.info("W&B is offline: runs are stored under %s; upload them later with `wandb sync`", run_dir)
    return run


def start_wandb_logger(cfg: Config, task: str, fold: int | str):
    """A ``WandbLogger`` for one model (group ``<exp>-<task>``, name ``<task>-fold<k>``), or None when off."""
    mode = resolve_mode(cfg.wandb.mode)
    if mode == "disabled":
        return None
    from pytorch_lightning.loggers import WandbLogger

    run = init_run(
        cfg,
        mode,
        group=f"{cfg.exp}-{task}",
        name=f"{task}-fold{fold}",
        job_type="train",
        config={**cfg.to_dict(), "task": task, "fold": fold},
    )
    return WandbLogger(experiment=run)


def log_report(cfg: Config, name: str, report: dict, images: dict[str, Path]) -> None:
    """Log a scoring report (its numbers, and PNGs by key) as a W&B run of group ``<exp>-eval``, when on."""
    mode = resolve_mode(cfg.wandb.mode)
    if mode == "disabled":
        return
    try:
        import wandb

        run = init_run(cfg, mode, group=f"{cfg.exp}-eval", name=name, job_type="evaluate", config=cfg.to_dict())
        scalars = {k: v for k, v in report.items() if isinstance(v, int | float)}
        for key in ("task_f1", "fold_f1"):
            scalars.update({f"{key}/{k}": v for k, v in report.get(key, {}).items()})
        per_class = wandb.Table(columns=["class", "f1"], data=list(enumerate(report.get("class_f1", []))))
        run.log({**scalars, "class_f1": per_class, **{k: wandb.Image(str(p)) for k, p in images.items()}})
        run.summary.update(scalars)
        run.finish()
    except Exception as exc:
        log.warning("W&B report %s was not logged: %s", name, exc)


def finish_wandb() -> None:
    """Close the current run so the next fold starts a fresh one."""
    try:
        import wandb

        if wandb.run is not None:
            wandb.finish()
    except Exception as exc:
        log.warning("W&B run did not finish cleanly: %s", exc)
