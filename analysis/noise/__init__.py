"""Find likely label errors and outlier photos in an experiment's out-of-fold predictions.

    python -m analysis.noise --exp NAME [--runs-dir runs] [--data-dir DIR] [--top N] [--out DIR] [--wandb MODE]

Reads ``runs/<exp>/<task>/fold<k>/oof.csv`` of the mask, gender and age models (any subset; the missing
ones are named) and writes into ``runs/<exp>/noise/`` (or ``--out``):

- ``suspects.csv``: person, image, task, given, predicted, confidence, reason, kind (gender, age,
  mask_swap, outlier), most suspicious first;
- ``suspects.png``: a contact sheet of the top ``--top`` suspects, given and predicted labels on each;
- ``corrections-draft.yaml``: the suspects as a corrections file in the format of
  :mod:`datamodules.relabel` (gender flips, age fixes, swap_incorrect_normal, exclude_images for
  outliers). Review and edit it, then train with ``--set 'data.relabel=[path/to/corrections-draft.yaml]'``;
- ``truth-scores.json``, for a synthetic set (its ``truth/noise.csv``): person-level precision and recall
  per planted error kind, also printed.

The images come from the experiment's data directory (its saved ``config.yaml``, or ``--data-dir``);
without it the finder still ranks, but draws no contact sheet and uses the models alone.

Decision rule. Every photo's probability is clipped to [0.01, 0.99] (no single photo counts as surer
than 99%), and each kind of suspect gets a confidence in [0, 1]; a suspect is reported when its
confidence is at least ``MIN_CONFIDENCE`` = 0.9 (``--min-confidence``):

- gender, age (a person): the person's probability of each label is the normalised geometric mean of
  their photos' probabilities (the mean log-probability: the photos of one person are one piece of
  evidence seen several times, so they are averaged, not multiplied). The person is a suspect when the
  best label is not the given one; the confidence is its probability (0.9: the photos favour it 9 to 1
  over the given gender). Age also needs the given age to lie ``AGE_MARGIN_YEARS`` = 5 years or more
  outside the predicted group: models disagree with ages near a cut as a matter of course, and moving a
  person across a cut they sit on changes little. The suggested age is the nearest one in that group.
- mask_swap (an ``incorrect_mask``/``normal`` pair): the two photos are judged jointly, "as labelled"
  against "swapped"; the confidence is P(swapped) from the product of both photos' probabilities, so one
  doubtful photo alone is never a swap.
- outlier (a photo), two reasons: the mask model gives its given mask state less than 10% (confidence
  1 - p(given)); or the photo is unusual on the whole: four surprises (its given mask state, how far its
  gender and its age predictions disagree with the person's other photos, and how unlike those photos it
  looks, from 12x16 thumbnails) each become a rank p-value among all photos, Fisher's method combines
  them (as if independent), and the confidence is 1 - N * p, N the number of photos (Bonferroni: at 0.9,
  about 0.1 photos of the whole set would look this unusual by chance). The photos of a flagged swap are
  explained by the swap and are not outliers.

The confidences of different kinds are alike in meaning, not calibrated against each other: read the
ranking within a kind first.

The modules: ``reading`` (the experiment's predictions, config and data), ``rules`` (the person-level rules
and :func:`find_suspects`), ``outliers``, ``outputs`` (draft, contact sheet, W&B), ``truth`` (a synthetic
set's planted errors), ``finder`` (the run and the command line).
"""

from analysis.noise.finder import main, run_finder
from analysis.noise.outliers import photo_scores
from analysis.noise.outputs import DRAFT_NAME, SHEET_NAME, check_draft, draft_corrections, log_wandb
from analysis.noise.rules import (
    age_suspects,
    find_suspects,
    gender_suspects,
    mask_swap_suspects,
    person_posteriors,
    swap_pairs,
)
from analysis.noise.suspects import AGE_MARGIN_YEARS, MIN_CONFIDENCE, PROB_FLOOR, SUSPECT_COLUMNS
from analysis.noise.truth import TRUTH_SCORES_NAME, read_disputed, read_truth, score_suspects

__all__ = [
    "AGE_MARGIN_YEARS",
    "DRAFT_NAME",
    "MIN_CONFIDENCE",
    "PROB_FLOOR",
    "SHEET_NAME",
    "SUSPECT_COLUMNS",
    "TRUTH_SCORES_NAME",
    "age_suspects",
    "check_draft",
    "draft_corrections",
    "find_suspects",
    "gender_suspects",
    "log_wandb",
    "main",
    "mask_swap_suspects",
    "person_posteriors",
    "photo_scores",
    "read_disputed",
    "read_truth",
    "run_finder",
    "score_suspects",
    "swap_pairs",
]
