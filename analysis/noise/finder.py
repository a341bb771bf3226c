"""The noise finder's run (:func:`run_finder`: read, rank, write, log) and what it reports."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from analysis.noise.outputs import (
    SHEET_NAME,
    SUSPECTS_NAME,
    check_draft,
    contact_sheet,
    draft_corrections,
    draft_place,
    log_wandb,
    write_draft,
)
from analysis.noise.ranking import find_suspects
from analysis.noise.reading import (
    DataInfo,
    Reviewed,
    choose_tta,
    load_data_info,
    ranked_people,
    read_ensemble,
    read_neighbours,
    read_reviewed_units,
    saved_config,
    write_command,
)
from analysis.noise.suspects import FIXED, KINDS, MIN_CONFIDENCE, THRESHOLD_MODES
from analysis.noise.truth import PLANTED, TRUTH_DIR, TRUTH_SCORES_NAME, read_disputed, read_truth, score_suspects
from callbacks.wandb_run import resolve_mode
from configs.config import load_config
from core.atomic import atomic_path, write_text_atomic
from core.errors import ConfigError, DataError
from rundir.layout import exp_dir, noise_dir

log = logging.getLogger("noise")


@dataclass
class NoiseReport:
    """What a run ranked, wrote and measured (the command prints it: :func:`analysis.noise.command.summarize`)."""

    suspects: pd.DataFrame  # every unit ranked, with its flag
    out_dir: Path
    missing: list[str]
    data: DataInfo
    csv: Path | None = None
    draft: Path | None = None
    sheet: Path | None = None
    draft_changes: int | None = None
    truth_scores: dict[str, dict] | None = None  # against DIR/truth/ of a synthetic set
    truth_file: Path | None = None
    frames: dict[str, pd.DataFrame] = field(default_factory=dict)  # the out-of-fold predictions it ranked
    mode: str = FIXED
    min_confidence: float = MIN_CONFIDENCE
    thresholds: dict = field(default_factory=dict)  # the thresholds used, by kind (or task) and class
    seconds: float = 0.0  # reading and ranking, outputs not included
    experiments: list[str] = field(default_factory=list)  # the experiments averaged (the first's config and data)
    reviewed: Reviewed = field(default_factory=Reviewed)  # the units kept as labelled, never flagged
    held_back: dict[str, int] = field(default_factory=dict)  # kind -> reviewed units the rules would have flagged
    tta: str = "none"  # the out-of-fold predictions ranked: flip (oof_flip.csv) or none (oof.csv)
    lacking: dict[str, list[Path]] = field(default_factory=dict)  # exp -> its oof.csv files without oof_flip.csv
    neighbours: list[str] = field(default_factory=list)  # the tasks ranked on the nearest training photos' votes
    ranked_only: dict[str, int] = field(default_factory=dict)  # kind -> units a rank-only rule would flag
    draft_kept: Path | None = None  # an edited draft left as it was (the new one went beside it)


def experiment_names(exp: str | Sequence[str]) -> list[str]:
    """``"A"``, ``"A,B"`` or ``["A", "B,C"]`` -> the experiments named, in order (an error for none or a repeat)."""
    values = [exp] if isinstance(exp, str) else list(exp)
    names = [n.strip() for v in values for n in str(v).split(",") if n.strip()]
    if not names:
        raise ConfigError(f"--exp {exp!r} names no experiment")
    if len(set(names)) < len(names):
        raise ConfigError(f"--exp: {', '.join(names)} names an experiment twice")
    return names


def _read(names: list[str], runs_dir, data_dir, neighbours: bool) -> tuple:
    """The experiments' out-of-fold predictions (flip TTA where every fold has it), config, data and truth."""
    dirs = [exp_dir(runs_dir, n) for n in names]
    tta, lacking = choose_tta(dirs)
    if lacking:
        log.warning(
            "%d fold(s) have no out-of-fold predictions in flip TTA (runs trained before training wrote them), so "
            "the ranking reads those without TTA; the flip TTA's predictions rank label errors better: %s writes "
            "them",
            sum(map(len, lacking.values())),
            write_command(lacking, "flip"),
        )
    ensemble = read_ensemble(dirs, tta)
    if ensemble.missing:
        log.warning("no out-of-fold predictions for %s: those checks are skipped", ", ".join(ensemble.missing))
    for task, averaged in ensemble.members.items():
        if len(names) > 1 and len(averaged) < len(names):
            log.warning("%s: predicted by %s only: the ensemble reads it from them", task, ", ".join(averaged))
    person_frames = read_neighbours(dirs).frames if neighbours else {}
    config, config_path = saved_config(dirs[0])  # the first experiment's config and data
    data_cfg = config.get("data") or {}
    relabel = [str(r) for r in data_cfg.get("relabel") or []]
    data = load_data_info(data_dir or data_cfg.get("dir"), relabel, explicit=data_dir is not None)
    truth = None
    if data.data_dir is not None and (data.data_dir / TRUTH_DIR / PLANTED).is_file():
        truth = read_truth(data.data_dir), read_disputed(data.data_dir)  # read first: a bad file stops here
    return ensemble, person_frames, config_path, data, truth, tta, lacking


def _write(report: NoiseReport, top: int, cuts: tuple[int, int], truth, progress: bool) -> None:
    """suspects.csv, the draft, the contact sheet and, on a synthetic set, the truth scores."""
    suspects, names, out_dir = report.suspects, report.experiments, report.out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    report.csv = out_dir / SUSPECTS_NAME
    with atomic_path(report.csv) as tmp:
        suspects.to_csv(tmp, index=False, float_format="%.4f")
    report.draft, report.draft_kept = draft_place(out_dir)
    text = draft_corrections(
        suspects, names[0], cuts, report.data.relabel, str(report.draft), names[1:], report.ranked_only
    )
    write_draft(report.draft, text)
    if report.data.images is not None:
        report.draft_changes = len(check_draft(report.draft, report.data.images))
    report.sheet = contact_sheet(suspects.head(top), report.data.files, out_dir / SHEET_NAME, progress=progress)
    people, total = ranked_people(report.frames, report.data)
    if total is not None and len(people) < total:
        log.warning("ranked %d of the %d people: the others' folds are not trained or not finished", len(people), total)
    else:
        log.info("ranked %d of the %s people", len(people), total or "data's (not read)")
    if truth is not None:
        report.truth_scores = score_suspects(suspects, *truth, people)
        report.truth_file = out_dir / TRUTH_SCORES_NAME
        rule = {"thresholds": report.mode, "min_confidence": report.min_confidence, "used": report.thresholds}
        rule |= {"tta": report.tta, "neighbours": report.neighbours, "reviewed": _reviewed_said(report)}
        rule["ranked_only"] = report.ranked_only
        rule["people_ranked"], rule["people"] = len(people), total  # the truth is scored over the ranked only
        write_text_atomic(report.truth_file, json.dumps({**rule, "scores": report.truth_scores}, indent=2) + "\n")


def _reviewed_said(report: NoiseReport) -> dict:
    return {"files": report.reviewed.files, "units": report.reviewed.counts(), "held_back": report.held_back}


def _log(report: NoiseReport, config_path: Path | None, wandb_mode: str | None, top: int, progress: bool) -> None:
    """The top of the ranking to W&B, when the experiment's config (or ``wandb_mode``) has it on."""
    try:
        cfg = load_config(None, [config_path] if config_path else [], [])
    except (ConfigError, DataError):
        cfg = load_config(None, [], [])
    cfg.exp = report.experiments[0]
    if wandb_mode:
        cfg.wandb.mode = wandb_mode
    mode = resolve_mode(cfg.wandb.mode)
    if mode == "disabled":
        return
    s = report.suspects
    counts = s.loc[s["flag"], "kind"].value_counts().reindex(KINDS, fill_value=0).to_dict()
    summary = {"exp": report.experiments[0], "ensemble": report.experiments, "thresholds": report.mode}
    summary["min_confidence"] = report.min_confidence
    summary |= {"tta": report.tta, "neighbours": report.neighbours, "reviewed": _reviewed_said(report)}
    summary |= {"missing_tasks": report.missing, "counts": counts, "thresholds_used": report.thresholds}
    log_wandb(cfg, mode, s.head(top), report.data.files, report.sheet, summary, progress)


def run_finder(
    exp: str | Sequence[str],
    runs_dir: str | Path = "runs",
    data_dir: str | Path | None = None,
    top: int = 24,
    out: str | Path | None = None,
    wandb_mode: str | None = None,
    min_confidence: float = MIN_CONFIDENCE,
    progress: bool = True,
    mode: str = FIXED,
    reviewed: Sequence[str] = (),
    neighbours: bool = False,
) -> NoiseReport:
    """Rank every unit of experiment ``exp`` (several, a list or ``"A,B"``: an ensemble) and write the outputs;
    the options are the command line's (docs/noise-finder.md)."""
    if mode not in THRESHOLD_MODES:
        raise ConfigError(f"thresholds {mode!r}: expected one of {', '.join(THRESHOLD_MODES)}")
    start = time.perf_counter()
    names = experiment_names(exp)
    ensemble, person_frames, config_path, data, truth, tta, lacking = _read(names, runs_dir, data_dir, neighbours)
    review = read_reviewed_units(ensemble.frames, data, reviewed)
    frames, cuts = ensemble.frames, ensemble.age_cuts
    ranking = (frames, data.ages or None, cuts, data.files, min_confidence, progress, mode, review.units)
    suspects = find_suspects(*ranking, person_frames)
    report = NoiseReport(suspects, Path(out) if out else noise_dir(runs_dir, names), ensemble.missing, data)
    report.frames, report.mode, report.min_confidence, report.experiments = frames, mode, min_confidence, names
    report.thresholds, report.held_back = suspects.attrs.get("thresholds", {}), suspects.attrs.get("held_back", {})
    report.ranked_only, report.seconds = suspects.attrs.get("ranked_only", {}), time.perf_counter() - start
    report.reviewed, report.tta, report.lacking, report.neighbours = review, tta, lacking, list(person_frames)
    _write(report, top, cuts, truth, progress)
    _log(report, config_path, wandb_mode, top, progress)
    return report
