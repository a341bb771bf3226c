"""Find likely label errors and outlier photos in an experiment's out-of-fold predictions.

    python -m analysis.noise --exp NAME [--exp NAME2 ...] [--thresholds {fixed,adaptive}] [--reviewed FILE ...]

Writes ``suspects.csv``, ``suspects.png`` and ``corrections-draft.yaml`` into ``runs/<exp>/noise/``; method,
options and measurements: docs/noise-finder.md. ``finder`` runs it, ``command`` is its command line.
"""

from analysis.noise.command import main
from analysis.noise.finder import experiment_names, find_suspects, run_finder
from analysis.noise.outliers import photo_scores
from analysis.noise.outputs import DRAFT_NAME, SHEET_NAME, check_draft, draft_corrections, log_wandb
from analysis.noise.reading import read_ensemble
from analysis.noise.rules import age_suspects, gender_suspects, mask_swap_suspects, person_posteriors, swap_pairs
from analysis.noise.suspects import (
    ADAPTIVE,
    AGE_MARGIN_YEARS,
    FIXED,
    MIN_CONFIDENCE,
    PROB_FLOOR,
    SUSPECT_COLUMNS,
    THRESHOLD_MODES,
    scaled_score,
)
from analysis.noise.thresholds import judge
from analysis.noise.truth import TOP_FACTOR, TRUTH_SCORES_NAME, read_disputed, read_truth, score_suspects

__all__ = [
    "ADAPTIVE",
    "AGE_MARGIN_YEARS",
    "DRAFT_NAME",
    "FIXED",
    "MIN_CONFIDENCE",
    "PROB_FLOOR",
    "SHEET_NAME",
    "SUSPECT_COLUMNS",
    "THRESHOLD_MODES",
    "TOP_FACTOR",
    "TRUTH_SCORES_NAME",
    "age_suspects",
    "check_draft",
    "draft_corrections",
    "experiment_names",
    "find_suspects",
    "gender_suspects",
    "judge",
    "log_wandb",
    "main",
    "mask_swap_suspects",
    "person_posteriors",
    "photo_scores",
    "read_disputed",
    "read_ensemble",
    "read_truth",
    "run_finder",
    "scaled_score",
    "score_suspects",
    "swap_pairs",
]
