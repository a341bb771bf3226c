"""Predict the evaluation images with every fold's checkpoint, merge folds, TTA views and the three task
heads into the 18 classes, and write the submission; or score the out-of-fold predictions.

    python predict.py --exp default --ensemble soft --tta flip
    python predict.py --exp default --oof                 # from the oof.csv files (no TTA)
    python predict.py --exp default --oof --tta flip      # re-predicted with the submission's TTA

By default only the k-fold models (``fold0`` .. ``fold<k-1>``) are used; the ``full`` and ``holdout`` runs
overlap them, so they are used only when named with ``--folds``.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from configs.config import load_config
from core.errors import ConfigError, DataError, run_cli
from inference.oof import write_oof_report
from inference.predictor import TTA_VIEWS
from inference.submission import write_submission
from rundir.layout import NAMED_FOLDS, exp_dir

RERUN = "run the same command again"  # predict.py has no --resume: it writes its results at the end


def parse_folds(text: str | None) -> list[str] | None:
    """``--folds 0,1,full`` -> ``["0", "1", "full"]``; not given -> None (the k-fold runs)."""
    if text is None:
        return None
    names = [name.strip() for name in text.split(",") if name.strip()]
    bad = [name for name in names if not (name.isdigit() or name in NAMED_FOLDS)]
    if bad or not names:
        raise ConfigError(
            f"--folds {text!r}: expected comma-separated fold names, each a number (0..k-1), holdout or full, "
            "e.g. --folds 0,1,2 or --folds full"
        )
    return list(dict.fromkeys(names))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--exp", help="experiment name (runs/<exp>/); default: the config's exp")
    p.add_argument("--ensemble", default="soft", choices=["soft", "hard", "none"])
    p.add_argument(
        "--tta",
        choices=list(TTA_VIEWS),
        help="test-time augmentation (default: flip for the submission; none for --oof, which then reads the "
        "oof.csv files, while flip re-predicts the validation images as the submission predicts eval/)",
    )
    p.add_argument(
        "--folds",
        help="comma-separated fold names, e.g. 0,1,2, full, holdout or 0,1,2,3,4,full (default: the k-fold runs "
        "0..k-1; full and holdout only when named)",
    )
    p.add_argument(
        "--data-dir", help="data holding eval/ (and train/ for --oof --tta flip; default: the checkpoints' data.dir)"
    )
    p.add_argument("--out", help="submission file (default: runs/<exp>/submission.csv)")
    p.add_argument("--oof", action="store_true", help="score the out-of-fold predictions instead")
    p.add_argument("--batch-size", type=int, help="images per batch, at least 1 (default: loader.batch_size)")
    p.add_argument(
        "--workers",
        type=int,
        help="DataLoader workers: 0 or more, or -1 for every usable core but one (default: loader.num_workers)",
    )
    p.add_argument("--wandb", choices=["auto", "online", "offline", "disabled"], help="log the OOF report")
    p.add_argument("--config", action="append", default=[], metavar="FILE")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--debug", action="store_true", help="show tracebacks for data and config errors")
    return p


def check_loader_options(args: argparse.Namespace) -> None:
    """``--batch-size`` and ``--workers`` must make sense before anything is loaded."""
    if args.batch_size is not None and args.batch_size < 1:
        raise ConfigError(f"--batch-size {args.batch_size}: must be at least 1")
    if args.workers is not None and args.workers < -1:
        raise ConfigError(
            f"--workers {args.workers}: must be 0 (read in the main process) or more, or -1 (every usable core but one)"
        )


def run(args: argparse.Namespace) -> dict:
    check_loader_options(args)
    folds = parse_folds(args.folds)
    cfg = load_config(None, args.config, args.set)
    if args.wandb:
        cfg.wandb.mode = args.wandb
    exp = args.exp or cfg.exp
    where = exp_dir(cfg.runs_dir, exp)
    if not where.is_dir():
        raise DataError(f"experiment {where} does not exist: train first (python train.py --exp {exp})")
    if args.batch_size is not None:
        cfg.loader.batch_size = args.batch_size
    if args.workers is not None:
        cfg.loader.num_workers = args.workers
    if args.oof:
        return write_oof_report(cfg, where, folds, args.tta or "none", args.data_dir)
    out = Path(args.out) if args.out else None
    return write_submission(cfg, where, args.ensemble, args.tta or "flip", folds, args.data_dir, out)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    return run_cli(lambda: run(args), args.debug, rerun=RERUN)


if __name__ == "__main__":
    sys.exit(main())
