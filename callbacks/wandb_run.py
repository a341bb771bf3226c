"""Starting a W&B run per (task, fold) that never blocks or crashes training."""

from __future__ import annotations

import logging
import netrc
import os
from pathlib import Path

from configs.config import Config

log = logging.getLogger(__name__)
INIT_TIMEOUT_S = 60


def logged_in() -> bool:
    """True when a W&B API key is set in the environment or stored by ``wandb login``."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False


def resolve_mode(mode: str) -> str:
    """``auto`` -> ``online`` when logged in, else ``offline`` (``wandb sync`` uploads the run later)."""
    if mode == "auto":
        return "online" if logged_in() else "offline"
    return mode


def start_wandb_logger(cfg: Config, task: str, fold: int | str):
    """A ``WandbLogger`` for one model (group ``<exp>-<task>``, name ``<task>-fold<k>``), or None when off.

    An online run that cannot reach W&B falls back to offline with one warning; offline never fails.
    """
    mode = resolve_mode(cfg.wandb.mode)
    if mode == "disabled":
        return None
    import wandb
    from pytorch_lightning.loggers import WandbLogger

    Path(cfg.wandb.dir).mkdir(parents=True, exist_ok=True)
    kwargs = dict(
        project=cfg.wandb.project,
        entity=cfg.wandb.entity,
        group=f"{cfg.exp}-{task}",
        name=f"{task}-fold{fold}",
        job_type="train",
        dir=cfg.wandb.dir,
        config={**cfg.to_dict(), "task": task, "fold": fold},
        reinit="finish_previous",
    )
    settings = wandb.Settings(init_timeout=INIT_TIMEOUT_S, silent=True)
    try:
        run = wandb.init(mode=mode, settings=settings, **kwargs)
    except Exception as exc:  # unreachable server, bad key: never stop training for it
        log.warning("W&B %s run could not start (%s); logging offline instead", mode, exc)
        run = wandb.init(mode="offline", settings=settings, **kwargs)
    if mode == "offline":
        log.info("W&B is offline: the run is stored in %s; upload it later with `wandb sync`", run.dir)
    return WandbLogger(experiment=run)


def finish_wandb() -> None:
    """Close the current run so the next fold starts a fresh one."""
    try:
        import wandb

        if wandb.run is not None:
            wandb.finish()
    except Exception as exc:
        log.warning("W&B run did not finish cleanly: %s", exc)
