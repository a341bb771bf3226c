"""The noise finder's command line, ``python -m analysis.noise`` (options in the package doc), and the
summary it prints."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from analysis.noise.finder import NoiseReport, run_finder
from analysis.noise.outputs import COMMAND
from analysis.noise.pooling import MEAN, POOLINGS
from analysis.noise.reading import AUTO, TTA_CHOICES, write_command
from analysis.noise.suspects import ADAPTIVE, KINDS, MIN_CONFIDENCE, THRESHOLD_MODES
from analysis.noise.truth import TRUTH_DIR
from core.atomic import place_problem
from core.errors import ConfigError, run_cli
from rundir.layout import OOF, OOF_FLIP, OOF_NEIGHBOURS


def _thresholds_text(thresholds: dict) -> str:
    return "; ".join(f"{kind} " + ", ".join(f"{c} {t:.3f}" for c, t in by.items()) for kind, by in thresholds.items())


def summarize(report: NoiseReport) -> str:
    s = report.suspects
    counts = ", ".join(
        f"{k} {int((s['kind'] == k).sum())} ({int((s['flag'] & (s['kind'] == k)).sum())})" for k in KINDS
    )
    lines = [f"{len(s)} units ranked, flagged in brackets: {counts}"]
    if len(report.experiments) > 1:
        lines.insert(0, f"ensemble of {len(report.experiments)} experiments: {', '.join(report.experiments)}")
    lines.append(f"thresholds ({report.mode}): {_thresholds_text(report.thresholds)}")
    read = f"{OOF_FLIP} (flip TTA: each photo and its mirror, averaged)" if report.tta == "flip" else f"{OOF} (no TTA)"
    if report.lacking:
        command = write_command(report.lacking, "flip")
        read += f"; {sum(map(len, report.lacking.values()))} fold(s) lack {OOF_FLIP}: {command}"
    lines.append(f"out-of-fold predictions: {read}")
    if report.neighbours:
        lines.append(
            f"{' and '.join(report.neighbours)} ranked on the votes of each photo's nearest training photos "
            f"({OOF_NEIGHBOURS}), not on the models' probabilities"
        )
    if report.pooling:
        lines.append("photos pooled per person: " + ", ".join(f"{t} {how}" for t, how in report.pooling.items()))
    if report.reviewed.files:
        listed = ", ".join(f"{k} {n}" for k, n in report.reviewed.counts().items())
        held = sum(report.held_back.values())
        lines.append(
            f"reviewed, kept as labelled (ranked last, not flagged): {listed}, from {', '.join(report.reviewed.files)}"
            f"; {held} of them the rules would have flagged"
        )
    if report.missing:
        lines.append(f"missing out-of-fold predictions: {', '.join(report.missing)} (those checks were skipped)")
    if report.data.data_dir is None:
        lines.append("no data directory: no contact sheet, no photo comparison, ages from the models only")
    lines.append(f"ranking: {report.csv}")
    if report.sheet:
        lines.append(f"contact sheet: {report.sheet}")
    check = f" (applies cleanly: {report.draft_changes} changes)" if report.draft_changes is not None else ""
    lines.append(f"draft corrections{check}: {report.draft}")
    lines.append(f"review it, then: python train.py --set 'data.relabel=[{report.draft}]' ...")
    if report.truth_scores:
        lines.append(f"against the planted errors in {report.data.data_dir / TRUTH_DIR} ({report.truth_file}):")
        for kind, e in report.truth_scores.items():
            p, r, t = (f"{v:.2f}" if v is not None else "-" for v in (e["precision"], e["recall"], e["recall_top_n"]))
            extra = f", {e['flagged_disputed']} disputed people flagged" if e.get("flagged_disputed") else ""
            lines.append(
                f"  {kind}: found {e['found']}/{e['planted']}, flagged {e['flagged']}: precision {p}, recall {r}"
                f"{extra}; recall in the top {e['top_n']} of the ranking {t}"
            )
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=COMMAND,
        description=sys.modules[__package__].__doc__.split("\n")[0],  # the package doc's first line
        epilog="Decision rule: see the package doc (analysis/noise/__init__.py).",
    )
    p.add_argument(
        "--exp",
        required=True,
        action="append",
        help="experiment name: reads runs/<exp>/<task>/fold<k>/oof_flip.csv (see --tta). Several (--exp A --exp B, "
        "or --exp A,B: seeds, backbones or recipes on the same data) are an ensemble: each photo's probabilities "
        "are averaged",
    )
    p.add_argument("--runs-dir", default="runs", help="where the experiments are (default: runs)")
    p.add_argument("--data-dir", help="the data (default: the experiment's saved data.dir)")
    p.add_argument(
        "--top", type=int, default=24, help="top of the ranking on the contact sheet and in W&B (default 24)"
    )
    p.add_argument("--out", help="output folder (default: runs/<exp>/noise; an ensemble's: runs/<A>/noise+<B>...)")
    p.add_argument("--wandb", choices=["auto", "online", "offline", "disabled"], help="default: the experiment's")
    p.add_argument(
        "--thresholds",
        choices=THRESHOLD_MODES,
        default=ADAPTIVE,
        help="adaptive: per-class thresholds from the out-of-fold probabilities (default); fixed: --min-confidence",
    )
    p.add_argument(
        "--min-confidence",
        type=float,
        default=MIN_CONFIDENCE,
        help="the cut of every rule with --thresholds fixed, the most any adaptive threshold can be, and the "
        "unusual-photo test's level (default 0.9)",
    )
    p.add_argument(
        "--pooling",
        choices=POOLINGS,
        default=MEAN,
        help="how a person's photos are pooled for gender and age: mean (default: every photo alike) or learnt "
        "(each kind of photo weighed by what it tells, fitted to the given labels across the people)",
    )
    p.add_argument(
        "--reviewed",
        action="append",
        default=[],
        metavar="FILE",
        help="a corrections file (datamodules/relabel.py's format) whose reviewed: section lists units already "
        "looked at and kept as labelled: ranked last, never flagged (repeatable; the experiment's own "
        "data.relabel files are read too)",
    )
    p.add_argument(
        "--tta",
        choices=TTA_CHOICES,
        default=AUTO,
        help="the out-of-fold predictions ranked: flip (oof_flip.csv, which training writes: each photo and its "
        "mirror, averaged, as the submission predicts), none (oof.csv), or auto (default: flip when every fold "
        "has them, else none)",
    )
    p.add_argument(
        "--neighbours",
        action="store_true",
        help="rank gender and age on the votes of each photo's nearest training photos in its fold model's feature "
        "space (oof_neighbours.csv, written by python predict.py --exp EXP --neighbours) instead of the models' "
        "probabilities: better with a weak model, which can be sure and wrong about a kind of person",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--debug", action="store_true", help="show tracebacks for data errors")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if not 0 < args.min_confidence <= 1:
        build_parser().error("--min-confidence must be in (0, 1]")

    def work():
        problem = place_problem(args.out, folder=True) if args.out else None
        if problem:  # before the runs are read: not after
            raise ConfigError(f"--out {args.out} {problem}")
        report = run_finder(
            args.exp,
            args.runs_dir,
            args.data_dir,
            args.top,
            args.out,
            args.wandb,
            args.min_confidence,
            progress=not args.quiet,
            mode=args.thresholds,
            pooling=args.pooling,
            reviewed=args.reviewed,
            tta=args.tta,
            neighbours=args.neighbours,
        )
        print(summarize(report), flush=True)

    return run_cli(work, args.debug)
