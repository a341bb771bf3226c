"""The noise finder's run (:func:`run_finder`: read, rank, write, log) and what it reports; the decision
rule is the package's doc, the command line :mod:`analysis.noise.command`."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from analysis.noise.outputs import (
    DRAFT_NAME,
    SHEET_NAME,
    SUSPECTS_NAME,
    check_draft,
    contact_sheet,
    draft_corrections,
    log_wandb,
)
from analysis.noise.pooling import MEAN, POOLINGS
from analysis.noise.ranking import find_suspects
from analysis.noise.reading import (
    AUTO,
    TTA_CHOICES,
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
from analysis.noise.suspects import ADAPTIVE, KINDS, MIN_CONFIDENCE, THRESHOLD_MODES
from analysis.noise.truth import PLANTED, TRUTH_DIR, TRUTH_SCORES_NAME, read_disputed, read_truth, score_suspects
from callbacks.wandb_run import resolve_mode
from configs.config import load_config
from core.atomic import atomic_path, write_text_atomic
from core.errors import ConfigError, DataError
from rundir.layout import exp_dir, noise_dir

log = logging.getLogger("noise")


@dataclass
class NoiseReport:
    suspects: pd.DataFrame  # every unit ranked, with its flag
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
    mode: str = ADAPTIVE
    thresholds: dict = field(default_factory=dict)  # the thresholds used, by kind (or task) and class
    pooling: dict = field(default_factory=dict)  # the pooling used per person-level task (mean or learnt)
    seconds: float = 0.0  # reading and ranking, outputs not included
    experiments: list[str] = field(default_factory=list)  # the experiments averaged (the first's config and data)
    reviewed: Reviewed = field(default_factory=Reviewed)  # the units kept as labelled, never flagged
    held_back: dict[str, int] = field(default_factory=dict)  # kind -> reviewed units the rules would have flagged
    tta: str = "none"  # the out-of-fold predictions ranked: flip (oof_flip.csv) or none (oof.csv)
    lacking: dict[str, list[Path]] = field(default_factory=dict)  # exp -> its oof.csv files without oof_flip.csv
    neighbours: list[str] = field(default_factory=list)  # the tasks ranked on the nearest training photos' votes

    @property
    def flagged(self) -> pd.DataFrame:
        return self.suspects[self.suspects["flag"]]


def _wandb_config(config_path: Path | None, exp: str):
    try:
        cfg = load_config(None, [config_path] if config_path else [], [])
    except (ConfigError, DataError):
        cfg = load_config(None, [], [])
    cfg.exp = exp
    return cfg


def experiment_names(exp: str | Sequence[str]) -> list[str]:
    """``"A"``, ``"A,B"`` or ``["A", "B,C"]`` -> the experiments named, in order (an error for none or a repeat)."""
    values = [exp] if isinstance(exp, str) else list(exp)
    names = [n.strip() for v in values for n in str(v).split(",") if n.strip()]
    if not names:
        raise ConfigError(f"--exp {exp!r} names no experiment")
    if len(set(names)) < len(names):
        raise ConfigError(f"--exp: {', '.join(names)} names an experiment twice")
    return names


def run_finder(
    exp: str | Sequence[str],
    runs_dir: str | Path = "runs",
    data_dir: str | Path | None = None,
    top: int = 24,
    out: str | Path | None = None,
    wandb_mode: str | None = None,
    min_confidence: float = MIN_CONFIDENCE,
    progress: bool = True,
    mode: str = ADAPTIVE,
    pooling: str = MEAN,
    reviewed: Sequence[str] = (),
    tta: str = AUTO,
    neighbours: bool = False,
) -> NoiseReport:
    """Rank every unit of experiment ``exp`` and write suspects.csv, the contact sheet of the top ``top``
    and the draft of the flagged. Several experiments (a list, or ``"A,B"``) are an ensemble: each photo's
    out-of-fold probabilities are averaged over them (:func:`read_ensemble`), the first gives the config and
    data, and the outputs go to ``runs/<A>/noise+<B>...``. ``mode``: ``adaptive`` (per-class thresholds from
    the out-of-fold probabilities) or ``fixed`` (``min_confidence`` for every rule); ``pooling``: ``mean``
    or ``learnt``, how a person's photos are pooled (:mod:`analysis.noise.pooling`). The units under
    ``reviewed:`` in the experiment's corrections files and in the files ``reviewed`` (looked at and kept as
    labelled) are ranked last and never flagged. ``tta``: the out-of-fold predictions ranked, ``flip`` (the
    ``oof_flip.csv`` files: each photo and its mirror, averaged), ``none`` (``oof.csv``) or ``auto`` (flip when
    every fold has them, else none, with a warning naming the command that writes them). ``neighbours``: rank
    gender and age on the votes of each photo's nearest training photos (``oof_neighbours.csv``, written by
    ``predict.py --neighbours``) instead of the models' probabilities."""
    if mode not in THRESHOLD_MODES:
        raise ConfigError(f"thresholds {mode!r}: expected one of {', '.join(THRESHOLD_MODES)}")
    if pooling not in POOLINGS:
        raise ConfigError(f"pooling {pooling!r}: expected one of {', '.join(POOLINGS)}")
    if tta not in TTA_CHOICES:
        raise ConfigError(f"tta {tta!r}: expected one of {', '.join(TTA_CHOICES)}")
    start = time.perf_counter()
    names = experiment_names(exp)
    experiment = exp_dir(runs_dir, names[0])
    dirs = [exp_dir(runs_dir, n) for n in names]
    tta, lacking = choose_tta(dirs, tta)
    if lacking:
        log.warning(
            "%d fold(s) have no out-of-fold predictions in flip TTA (runs trained before training wrote them), so "
            "the ranking reads those without TTA; the flip TTA's predictions rank label errors better: %s writes "
            "them",
            sum(map(len, lacking.values())),
            write_command(lacking, "flip"),
        )
    ensemble = read_ensemble(dirs, tta)
    frames, missing, cuts = ensemble.frames, ensemble.missing, ensemble.age_cuts
    if missing:
        log.warning("no out-of-fold predictions for %s: those checks are skipped", ", ".join(missing))
    person_frames = read_neighbours(dirs).frames if neighbours else {}
    for task, averaged in ensemble.members.items():
        if len(names) > 1 and len(averaged) < len(names):
            log.warning("%s: predicted by %s only: the ensemble reads it from them", task, ", ".join(averaged))
    config, config_path = saved_config(experiment)
    data_cfg = config.get("data") or {}
    relabel = [str(r) for r in data_cfg.get("relabel") or []]
    data = load_data_info(data_dir or data_cfg.get("dir"), relabel, explicit=data_dir is not None)
    truth = None
    if data.data_dir is not None and (data.data_dir / TRUTH_DIR / PLANTED).is_file():
        truth = read_truth(data.data_dir), read_disputed(data.data_dir)  # read first: a bad file stops here
    review = read_reviewed_units(frames, data, reviewed)
    ages = data.ages or None
    suspects = find_suspects(
        frames, ages, cuts, data.files, min_confidence, progress, mode, pooling, review.units, person_frames
    )
    thresholds, pooled = suspects.attrs.get("thresholds", {}), suspects.attrs.get("pooling", {})
    held_back = suspects.attrs.get("held_back", {})
    reviewed_said = {"files": review.files, "units": review.counts(), "held_back": held_back}
    seconds = time.perf_counter() - start

    out_dir = Path(out) if out else noise_dir(runs_dir, names)
    out_dir.mkdir(parents=True, exist_ok=True)
    csv = out_dir / SUSPECTS_NAME
    with atomic_path(csv) as tmp:
        suspects.to_csv(tmp, index=False, float_format="%.4f")
    draft = out_dir / DRAFT_NAME
    write_text_atomic(draft, draft_corrections(suspects, names[0], cuts, data.relabel, str(draft), names[1:]))
    changes = None
    if data.images is not None:
        changes = len(check_draft(draft, data.images))
    sheet = contact_sheet(suspects.head(top), data.files, out_dir / SHEET_NAME, progress=progress)
    people, total = ranked_people(frames, data)
    if total is not None and len(people) < total:
        log.warning("ranked %d of the %d people: the others' folds are not trained or not finished", len(people), total)
    else:
        log.info("ranked %d of the %s people", len(people), total or "data's (not read)")
    scores = score_suspects(suspects, *truth, people) if truth is not None else None
    truth_file = None
    if scores is not None:
        truth_file = out_dir / TRUTH_SCORES_NAME
        rule = {"thresholds": mode, "min_confidence": min_confidence, "used": thresholds, "pooling": pooled, "tta": tta}
        rule["neighbours"] = list(person_frames)
        rule["reviewed"] = reviewed_said
        rule["people_ranked"], rule["people"] = len(people), total  # the truth is scored over the ranked only
        write_text_atomic(truth_file, json.dumps({**rule, "scores": scores}, indent=2) + "\n")

    cfg = _wandb_config(config_path, names[0])
    if wandb_mode:
        cfg.wandb.mode = wandb_mode
    wandb_run_mode = resolve_mode(cfg.wandb.mode)
    if wandb_run_mode != "disabled":
        counts = suspects.loc[suspects["flag"], "kind"].value_counts().reindex(KINDS, fill_value=0).to_dict()
        summary = {"exp": names[0], "ensemble": names, "thresholds": mode, "min_confidence": min_confidence}
        summary["pooling"], summary["tta"], summary["neighbours"] = pooled, tta, list(person_frames)
        summary["reviewed"] = reviewed_said
        summary |= {"missing_tasks": missing, "counts": counts, "thresholds_used": thresholds}
        log_wandb(cfg, wandb_run_mode, suspects.head(top), data.files, sheet, summary, progress)
    return NoiseReport(
        suspects,
        out_dir,
        csv,
        draft,
        sheet,
        missing,
        data,
        changes,
        scores,
        truth_file,
        frames,
        config,
        mode,
        thresholds,
        pooled,
        seconds,
        names,
        review,
        held_back,
        tta,
        lacking,
        list(person_frames),
    )
