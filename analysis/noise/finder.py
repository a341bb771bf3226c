"""The noise finder's run (:func:`run_finder`: read, rank, write, log), its printed summary and its command
line, ``python -m analysis.noise``; the decision rule is the package's doc."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from analysis.noise.outputs import (
    COMMAND,
    DRAFT_NAME,
    SHEET_NAME,
    SUSPECTS_NAME,
    check_draft,
    contact_sheet,
    draft_corrections,
    log_wandb,
)
from analysis.noise.reading import DataInfo, load_data_info, read_oof_frames, saved_config
from analysis.noise.rules import find_suspects
from analysis.noise.suspects import KINDS, MIN_CONFIDENCE
from analysis.noise.truth import TRUTH_DIR, TRUTH_SCORES_NAME, score_against_truth
from analysis.scoring import oof_age_cuts
from callbacks.wandb_run import resolve_mode
from configs.config import load_config
from core.atomic import atomic_path, write_text_atomic
from core.errors import ConfigError, DataError, run_cli
from rundir.layout import NOISE, exp_dir

log = logging.getLogger("noise")


@dataclass
class NoiseReport:
    suspects: pd.DataFrame
    out_dir: Path
    csv: Path
    draft: Path
    sheet: Path | None
    missing: list[str]
    data: DataInfo
    draft_changes: int | None
    truth_scores: dict[str, dict] | None = None  # against DIR/truth/ of a synthetic set
    truth_file: Path | None = None
    frames: dict[str, pd.DataFrame] = field(default_factory=dict)  # the out-of-fold predictions it ranked
    config: dict = field(default_factory=dict)  # the experiment's saved config, as plain data


def _wandb_config(config_path: Path | None, exp: str):
    try:
        cfg = load_config(None, [config_path] if config_path else [], [])
    except (ConfigError, DataError):
        cfg = load_config(None, [], [])
    cfg.exp = exp
    return cfg


def run_finder(
    exp: str,
    runs_dir: str | Path = "runs",
    data_dir: str | Path | None = None,
    top: int = 24,
    out: str | Path | None = None,
    wandb_mode: str | None = None,
    min_confidence: float = MIN_CONFIDENCE,
    progress: bool = True,
) -> NoiseReport:
    """Rank the suspects of experiment ``exp`` and write suspects.csv, the contact sheet and the draft."""
    experiment = exp_dir(runs_dir, exp)
    frames, missing = read_oof_frames(experiment)
    if missing:
        log.warning("no out-of-fold predictions for %s: those checks are skipped", ", ".join(missing))
    config, config_path = saved_config(experiment)
    data_cfg = config.get("data") or {}
    relabel = [str(r) for r in data_cfg.get("relabel") or []]
    data = load_data_info(data_dir or data_cfg.get("dir"), relabel, explicit=data_dir is not None)
    cuts = oof_age_cuts(experiment)  # the k-fold age models' (or the multihead models')
    suspects = find_suspects(frames, data.ages or None, cuts, data.files, min_confidence, progress)

    out_dir = Path(out) if out else experiment / NOISE
    out_dir.mkdir(parents=True, exist_ok=True)
    csv = out_dir / SUSPECTS_NAME
    with atomic_path(csv) as tmp:
        suspects.to_csv(tmp, index=False)
    draft = out_dir / DRAFT_NAME
    write_text_atomic(draft, draft_corrections(suspects, exp, cuts, data.relabel, str(draft)))
    changes = None
    if data.images is not None:
        changes = len(check_draft(draft, data.images))
    sheet = contact_sheet(suspects.head(top), data.files, out_dir / SHEET_NAME, progress=progress)
    scores = score_against_truth(suspects, data.data_dir) if data.data_dir is not None else None
    truth_file = None
    if scores is not None:
        truth_file = out_dir / TRUTH_SCORES_NAME
        write_text_atomic(truth_file, json.dumps({"min_confidence": min_confidence, "scores": scores}, indent=2) + "\n")

    cfg = _wandb_config(config_path, exp)
    if wandb_mode:
        cfg.wandb.mode = wandb_mode
    mode = resolve_mode(cfg.wandb.mode)
    if mode != "disabled":
        counts = suspects["kind"].value_counts().reindex(KINDS, fill_value=0).to_dict()
        summary = {"exp": exp, "min_confidence": min_confidence, "missing_tasks": missing, "counts": counts}
        log_wandb(cfg, mode, suspects.head(top), data.files, sheet, summary, progress)
    return NoiseReport(suspects, out_dir, csv, draft, sheet, missing, data, changes, scores, truth_file, frames, config)


def summarize(report: NoiseReport) -> str:
    s = report.suspects
    counts = ", ".join(f"{k} {int((s['kind'] == k).sum())}" for k in KINDS)
    lines = [f"{len(s)} suspects ({counts})"]
    if report.missing:
        lines.append(f"missing out-of-fold predictions: {', '.join(report.missing)} (those checks were skipped)")
    if report.data.data_dir is None:
        lines.append("no data directory: no contact sheet, no photo comparison, ages from the models only")
    lines.append(f"suspects: {report.csv}")
    if report.sheet:
        lines.append(f"contact sheet: {report.sheet}")
    check = f" (applies cleanly: {report.draft_changes} changes)" if report.draft_changes is not None else ""
    lines.append(f"draft corrections{check}: {report.draft}")
    lines.append(f"review it, then: python train.py --set 'data.relabel=[{report.draft}]' ...")
    if report.truth_scores:
        lines.append(f"against the planted errors in {report.data.data_dir / TRUTH_DIR} ({report.truth_file}):")
        for kind, e in report.truth_scores.items():
            p, r = (f"{v:.2f}" if v is not None else "-" for v in (e["precision"], e["recall"]))
            extra = f", {e['flagged_disputed']} disputed people flagged" if e.get("flagged_disputed") else ""
            lines.append(
                f"  {kind}: found {e['found']}/{e['planted']}, flagged {e['flagged']}: precision {p}, recall {r}{extra}"
            )
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=COMMAND,
        description=sys.modules[__package__].__doc__.split("\n")[0],  # the package doc's first line
        epilog="Decision rule: see the package doc (analysis/noise/__init__.py).",
    )
    p.add_argument("--exp", required=True, help="experiment name: reads runs/<exp>/<task>/fold<k>/oof.csv")
    p.add_argument("--runs-dir", default="runs", help="where the experiments are (default: runs)")
    p.add_argument("--data-dir", help="the data (default: the experiment's saved data.dir)")
    p.add_argument("--top", type=int, default=24, help="suspects on the contact sheet and in W&B (default 24)")
    p.add_argument("--out", help="output folder (default: runs/<exp>/noise)")
    p.add_argument("--wandb", choices=["auto", "online", "offline", "disabled"], help="default: the experiment's")
    p.add_argument("--min-confidence", type=float, default=MIN_CONFIDENCE, help="report threshold (default 0.9)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--debug", action="store_true", help="show tracebacks for data errors")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if not 0 < args.min_confidence <= 1:
        build_parser().error("--min-confidence must be in (0, 1]")

    def work():
        report = run_finder(
            args.exp,
            args.runs_dir,
            args.data_dir,
            args.top,
            args.out,
            args.wandb,
            args.min_confidence,
            progress=not args.quiet,
        )
        print(summarize(report), flush=True)

    return run_cli(work, args.debug)
