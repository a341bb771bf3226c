"""The noise finder's command line, ``python -m analysis.noise`` (docs/noise-finder.md), and its summary."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from analysis.noise.finder import NoiseReport, run_finder
from analysis.noise.outputs import COMMAND, RANKED_ONLY_WHY
from analysis.noise.reading import write_command
from analysis.noise.suspects import FIXED, KINDS, MIN_CONFIDENCE, THRESHOLD_MODES
from analysis.noise.truth import TRUTH_DIR
from core.atomic import place_problem
from core.errors import ConfigError, run_cli
from rundir.layout import OOF, OOF_FLIP, OOF_NEIGHBOURS


def summarize(report: NoiseReport) -> str:
    """The printed summary: what was ranked and flagged, from what, where the outputs are, and the truth scores."""
    s, names = report.suspects, report.experiments
    counts = ", ".join(f"{k} {(s['kind'] == k).sum()} ({(s['flag'] & (s['kind'] == k)).sum()})" for k in KINDS)
    lines = [f"{len(s)} units ranked, flagged in brackets: {counts}"]
    if len(names) > 1:
        lines.insert(0, f"ensemble of {len(names)} experiments: {', '.join(names)}")
    used = "; ".join(f"{k} " + ", ".join(f"{c} {t:.3f}" for c, t in by.items()) for k, by in report.thresholds.items())
    lines.append(f"thresholds ({report.mode}): {used}")
    read = f"{OOF_FLIP} (flip TTA: each photo and its mirror, averaged)" if report.tta == "flip" else f"{OOF} (no TTA)"
    if report.lacking:
        lacking = sum(map(len, report.lacking.values()))
        read += f"; {lacking} fold(s) lack {OOF_FLIP}: {write_command(report.lacking, 'flip')}"
    lines.append(f"out-of-fold predictions: {read}")
    if report.neighbours:
        lines.append(
            f"{' and '.join(report.neighbours)} ranked on the votes of each photo's nearest training photos "
            f"({OOF_NEIGHBOURS}), not on the models' probabilities"
        )
    left = [f"{n} {RANKED_ONLY_WHY[k]}" for k, n in report.ranked_only.items() if n and k in RANKED_ONLY_WHY]
    if left:
        lines.append(f"ranked, not flagged (their flags were measured mostly wrong): {', '.join(left)}")
    if report.reviewed.files:
        listed = ", ".join(f"{k} {n}" for k, n in report.reviewed.counts().items())
        listed += f", from {', '.join(report.reviewed.files)}; {sum(report.held_back.values())} of them the rules"
        lines.append(f"reviewed, kept as labelled (ranked last, not flagged): {listed} would have flagged")
    if report.missing:
        lines.append(f"missing out-of-fold predictions: {', '.join(report.missing)} (those checks were skipped)")
    if report.data.data_dir is None:
        lines.append("no data directory: no contact sheet, no photo comparison, ages from the models only")
    lines.append(f"ranking: {report.csv}")
    if report.sheet:
        lines.append(f"contact sheet: {report.sheet}")
    check = f" (applies cleanly: {report.draft_changes} changes)" if report.draft_changes is not None else ""
    lines.append(f"draft corrections{check}: {report.draft}")
    if report.draft_kept:
        lines.append(
            f"{report.draft_kept} was edited since the finder wrote it: left as it is, the new draft is beside it"
        )
    lines.append(f"review it, then: python train.py --set 'data.relabel=[{report.draft}]' ...")
    return "\n".join(lines + _truth_lines(report))


def _truth_lines(report: NoiseReport) -> list[str]:
    """A synthetic set's scores: per planted kind, found, flagged, precision, recall and top-2x recall."""
    if not report.truth_scores:
        return []
    lines = [f"against the planted errors in {report.data.data_dir / TRUTH_DIR} ({report.truth_file}):"]
    for kind, e in report.truth_scores.items():
        p, r, t = (f"{v:.2f}" if v is not None else "-" for v in (e["precision"], e["recall"], e["recall_top_n"]))
        extra = f", {e['flagged_disputed']} disputed people flagged" if e.get("flagged_disputed") else ""
        lines.append(
            f"  {kind}: found {e['found']}/{e['planted']}, flagged {e['flagged']}: precision {p}, recall {r}"
            f"{extra}; recall in the top {e['top_n']} of the ranking {t}"
        )
    return lines


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=COMMAND,
        description=sys.modules[__package__].__doc__.split("\n")[0],  # the package doc's first line
        epilog="Method, outputs and measurements: docs/noise-finder.md.",
    )
    p.add_argument(
        "--exp",
        required=True,
        action="append",
        metavar="NAME",
        help="experiment; several (--exp A --exp B, or A,B) are an ensemble, each photo's probabilities averaged",
    )
    p.add_argument("--runs-dir", default="runs", metavar="DIR", help="where the experiments are (default: runs)")
    p.add_argument("--data-dir", metavar="DIR", help="the data (default: the experiment's saved data.dir)")
    p.add_argument(
        "--out", metavar="DIR", help="output folder (default: runs/<exp>/noise; an ensemble's: runs/<A>/noise+<B>...)"
    )
    p.add_argument(
        "--top", type=int, default=24, metavar="N", help="units on the contact sheet and in W&B (default 24)"
    )
    p.add_argument(
        "--thresholds",
        choices=THRESHOLD_MODES,
        default=FIXED,
        help="fixed: one cut, --min-confidence (default); adaptive: per-class thresholds from the predictions",
    )
    p.add_argument(
        "--min-confidence",
        type=float,
        default=MIN_CONFIDENCE,
        metavar="C",
        help="the fixed cut; the adaptive thresholds' ceiling (default 0.9)",
    )
    p.add_argument(
        "--reviewed",
        action="append",
        default=[],
        metavar="FILE",
        help="corrections file whose reviewed: units are ranked last, never flagged (repeatable)",
    )
    p.add_argument(
        "--neighbours",
        action="store_true",
        help="rank gender and age on the nearest training photos' votes (python predict.py --exp EXP --neighbours)",
    )
    p.add_argument(
        "--wandb",
        choices=["auto", "online", "offline", "disabled"],
        metavar="MODE",
        help="W&B: auto, online, offline or disabled (default: the experiment's)",
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
        options = (args.exp, args.runs_dir, args.data_dir, args.top, args.out, args.wandb, args.min_confidence)
        report = run_finder(*options, not args.quiet, args.thresholds, args.reviewed, args.neighbours)
        print(summarize(report), flush=True)

    return run_cli(work, args.debug)
