"""Predict the evaluation images with every fold's checkpoint, merge folds, TTA views and the three task
heads into the 18 classes, and write the submission; or score the out-of-fold predictions.

    python predict.py --exp default --ensemble soft --tta flip
    python predict.py --exp default --oof                 # from the oof.csv files (no TTA)
    python predict.py --exp default --oof --tta flip      # in the submission's TTA (the oof_flip.csv files)
    python predict.py --exp default --calibrate           # per-class offsets fitted on the OOF, then applied
    python predict.py --exp default --oof --calibrate     # fit and score the offsets only (no submission)
    python predict.py --exp default --group-people        # gender and age averaged over each person's photos
    python predict.py --exp default --oof --age-cuts 30,58  # an ordinal age head's groups read at other cuts
    python predict.py --exp default --neighbours          # each fold's oof_neighbours.csv, for the noise finder

By default only the k-fold models (``fold0`` .. ``fold<k-1>``) are used; the ``full`` and ``holdout`` runs
overlap them, so they are used only when named with ``--folds``.

Two options change the answers, never the probabilities written; both are off by default:

``--calibrate`` fits a per-class offset for each head's log-probabilities (mask 3, gender 2, age 3; each head's
first at 0) on the out-of-fold predictions in the submission's TTA (oof_flip.csv for --tta flip, the default;
oof.csv for --tta none; refitted every run) to maximise the 18-class
macro F1, prints the OOF macro F1 before, after (in-sample) and cross-fitted (each fold scored with offsets
fitted on the other folds: the honest estimate), saves them to runs/<exp>/calibration.json, and applies them to
the submission before the argmax. It needs the k-fold runs' out-of-fold predictions.

``--group-people`` groups the evaluation images into people of about 7 photos by appearance (the gender and age
models' backbone features, read in the same pass as the probabilities), writes each image's group to the
``group`` column of <stem>_probs.csv, and averages each group's gender and age probabilities before the argmax
(the mask stays per photo). With a truth file it reports the groups' purity and the scores with and without.
With both options, the offsets shift the group-averaged probabilities.

``--neighbours [K]`` writes no submission: beside each fold's oof.csv it writes oof_neighbours.csv, each
out-of-fold image's labels as voted by its K (default 20) nearest training images in that fold's model's feature
space, which ``python -m analysis.noise --neighbours`` ranks gender and age on (see inference/neighbours.py).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from configs.config import load_config
from core.errors import ConfigError, DataError, run_cli
from core.tasks import AGE_RANGE
from inference.calibration import write_calibration
from inference.neighbours import NEIGHBOURS_K, write_neighbours
from inference.oof import write_oof_report
from inference.predictor import TTA_VIEWS
from inference.submission import write_submission
from rundir.layout import NAMED_FOLDS, OOF_NEIGHBOURS, exp_dir

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
        "oof.csv files, while flip reads the oof_flip.csv files training wrote, the validation images predicted as "
        "the submission predicts eval/; re-predicted and written for folds without them)",
    )
    p.add_argument(
        "--folds",
        help="comma-separated fold names, e.g. 0,1,2, full, holdout or 0,1,2,3,4,full (default: the k-fold runs "
        "0..k-1; full and holdout only when named)",
    )
    p.add_argument(
        "--data-dir",
        help="data holding eval/ (and train/ when --oof --tta flip re-predicts; default: the checkpoints' data.dir)",
    )
    p.add_argument("--out", help="submission file (default: runs/<exp>/submission.csv)")
    p.add_argument("--oof", action="store_true", help="score the out-of-fold predictions instead")
    p.add_argument(
        "--calibrate",
        action="store_true",
        help="fit per-class log-probability offsets on the out-of-fold predictions in the submission's TTA (default "
        "flip: the oof_flip.csv files) for the best 18-class macro F1, save them to runs/<exp>/calibration.json with "
        "the scores before, after and cross-fitted, and apply them "
        "to the submission (with --oof: fit, save and print only)",
    )
    p.add_argument(
        "--group-people",
        action="store_true",
        help="group the eval images into people of about 7 photos by appearance (backbone features) and average "
        "each group's gender and age probabilities before the argmax (the group is written to <stem>_probs.csv)",
    )
    p.add_argument(
        "--neighbours",
        nargs="?",
        type=int,
        const=NEIGHBOURS_K,
        metavar="K",
        help="write no submission: beside each fold's oof.csv, write oof_neighbours.csv, each out-of-fold image's "
        f"labels voted by its K (default {NEIGHBOURS_K}) nearest training images in the fold model's feature space "
        "(for the noise finder's --neighbours)",
    )
    p.add_argument("--batch-size", type=int, help="images per batch, at least 1 (default: loader.batch_size)")
    p.add_argument(
        "--workers",
        type=int,
        help="DataLoader workers: 0 or more, or -1 for every usable core but one (default: loader.num_workers)",
    )
    p.add_argument(
        "--age-cuts",
        metavar="YOUNG,OLD",
        help="read ordinal age heads (model.age_head=ordinal) at these cuts, e.g. 30,58: their groups follow from "
        "P(age >= t) at any cut; with --oof the models re-predict and are scored at these cuts and the competition's",
    )
    p.add_argument("--wandb", choices=["auto", "online", "offline", "disabled"], help="log the OOF report")
    p.add_argument("--config", action="append", default=[], metavar="FILE")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--debug", action="store_true", help="show tracebacks for data and config errors")
    return p


def parse_age_cuts(text: str | None) -> tuple[int, int] | None:
    """``--age-cuts 30,58`` -> ``(30, 58)``; not given -> None (each model's own cuts)."""
    if text is None:
        return None
    low, high = AGE_RANGE
    try:
        cuts = tuple(int(c) for c in text.split(","))
    except ValueError:
        cuts = ()
    if len(cuts) != 2 or not low < cuts[0] < cuts[1] <= high:
        raise ConfigError(
            f"--age-cuts {text!r}: expected two ages young,old with {low} < young < old <= {high}, e.g. 30,58"
        )
    return cuts


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
    age_cuts = parse_age_cuts(args.age_cuts)
    if age_cuts is not None and args.calibrate:
        raise ConfigError(
            "--calibrate fits its offsets on the out-of-fold files, made at the models' own age cuts: leave out "
            "--age-cuts"
        )
    if args.neighbours is not None:
        others = [flag for flag, on in (("--oof", args.oof), ("--calibrate", args.calibrate)) if on]
        others += [flag for flag, on in (("--group-people", args.group_people), ("--age-cuts", age_cuts)) if on]
        if others:
            raise ConfigError(f"--neighbours writes the neighbours' votes only: leave out {', '.join(others)}")
        written = write_neighbours(cfg, where, folds, args.neighbours, args.data_dir)
        print(f"wrote {len(written)} {OOF_NEIGHBOURS} file(s), e.g. {written[0]}", flush=True)
        return {"neighbours": [str(p) for p in written]}
    if args.oof:
        if args.group_people:
            raise ConfigError(
                "--group-people groups the evaluation images of a submission; the out-of-fold images are not grouped: "
                "leave out --oof or --group-people"
            )
        report = write_oof_report(cfg, where, folds, args.tta or "none", args.data_dir, age_cuts)
        if not args.calibrate:
            return report
        return {**report, "calibration": write_calibration(where, folds, args.tta or "flip")}  # the submission's view
    out = Path(args.out) if args.out else None
    return write_submission(
        cfg,
        where,
        args.ensemble,
        args.tta or "flip",
        folds,
        args.data_dir,
        out,
        args.calibrate,
        args.group_people,
        age_cuts,
    )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    return run_cli(lambda: run(args), args.debug, rerun=RERUN)


if __name__ == "__main__":
    sys.exit(main())
