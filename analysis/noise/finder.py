"""The noise finder's run (:func:`run_finder`: read, rank every kind (:func:`find_suspects`), write, log)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from analysis.noise.outliers import outlier_suspects, photo_scores
from analysis.noise.outputs import NoiseReport, log_report, write_outputs
from analysis.noise.reading import read_experiments, read_reviewed_units
from analysis.noise.rules import age_suspects, gender_suspects, mask_swap_suspects
from analysis.noise.suspects import FIXED, INCORRECT, MIN_CONFIDENCE, NOT_WEAR, SUSPECT_COLUMNS, THRESHOLD_MODES, ranked
from core.errors import ConfigError
from core.tasks import COMPETITION_AGE_CUTS
from rundir.layout import noise_dir


def experiment_names(exp: str | Sequence[str]) -> list[str]:
    """``"A"``, ``"A,B"`` or ``["A", "B,C"]`` -> the experiments named, in order (an error for none or a repeat)."""
    values = [exp] if isinstance(exp, str) else list(exp)
    names = [n.strip() for v in values for n in str(v).split(",") if n.strip()]
    if not names:
        raise ConfigError(f"--exp {exp!r} names no experiment")
    if len(set(names)) < len(names):
        raise ConfigError(f"--exp: {', '.join(names)} names an experiment twice")
    return names


def find_suspects(
    frames: dict[str, pd.DataFrame],
    ages: dict[str, int] | None = None,
    cuts: tuple[int, int] = COMPETITION_AGE_CUTS,
    files: dict | None = None,
    min_confidence: float = MIN_CONFIDENCE,
    progress: bool = True,
    mode: str = FIXED,
    reviewed: dict[str, set] | None = None,
    person_frames: dict[str, pd.DataFrame] | None = None,
) -> pd.DataFrame:
    """Every unit of every kind, sorted by score (``attrs``: thresholds, ranked_only, held_back); ``reviewed``
    units are never flagged and ranked last; ``person_frames`` (the neighbours' votes) replace gender and age's."""
    parts = [pd.DataFrame(columns=SUSPECT_COLUMNS)]
    judged = {**frames, **(person_frames or {})}
    if "gender" in judged:
        parts.append(gender_suspects(judged["gender"], min_confidence, mode))
    if "age" in judged:
        parts.append(age_suspects(judged["age"], ages, cuts, min_confidence, mode=mode))
    explained: set[tuple[str, str]] = set()
    if "mask" in frames:
        swaps = mask_swap_suspects(frames["mask"], min_confidence, mode)
        parts.append(swaps)
        m = frames["mask"]
        flagged = set(swaps.loc[swaps["flag"], "person"])  # a reviewed swap's too: its photos have been seen
        swapped = m["person"].isin(flagged) & m["label"].isin([INCORRECT, NOT_WEAR])
        explained = set(zip(m.loc[swapped, "person"], m.loc[swapped, "stem"], strict=True))
    scores = photo_scores(frames, files, progress)
    parts.append(outlier_suspects(frames, scores, explained, min_confidence, mode))
    thresholds = {key: value for part in parts for key, value in part.attrs.get("thresholds", {}).items()}
    ranked_only = {key: value for part in parts for key, value in part.attrs.get("ranked_only", {}).items()}
    table = pd.concat([p for p in parts if len(p)] or parts[:1], ignore_index=True)
    out = ranked(table, thresholds, reviewed)
    out.attrs["ranked_only"] = ranked_only
    return out


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
    ensemble, person_frames, config_path, data, truth, tta, lacking = read_experiments(
        names, runs_dir, data_dir, neighbours
    )
    review = read_reviewed_units(ensemble.frames, data, reviewed)
    frames, cuts = ensemble.frames, ensemble.age_cuts
    ranking = (frames, data.ages or None, cuts, data.files, min_confidence, progress, mode, review.units)
    suspects = find_suspects(*ranking, person_frames)
    report = NoiseReport(suspects, Path(out) if out else noise_dir(runs_dir, names), ensemble.missing, data)
    report.frames, report.mode, report.min_confidence, report.experiments = frames, mode, min_confidence, names
    report.thresholds, report.held_back = suspects.attrs.get("thresholds", {}), suspects.attrs.get("held_back", {})
    report.ranked_only, report.seconds = suspects.attrs.get("ranked_only", {}), time.perf_counter() - start
    report.reviewed, report.tta, report.lacking, report.neighbours = review, tta, lacking, list(person_frames)
    write_outputs(report, top, cuts, truth, progress)
    log_report(report, config_path, wandb_mode, top, progress)
    return report
