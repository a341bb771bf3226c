"""Find likely label errors and outlier photos in an experiment's out-of-fold predictions.

    python -m analysis.noise --exp NAME [--exp NAME2 ...] [--runs-dir runs] [--data-dir DIR] [--top N]
        [--out DIR] [--thresholds {adaptive,fixed}] [--min-confidence C] [--pooling {mean,learnt}]
        [--reviewed FILE ...] [--tta {auto,flip,none}] [--neighbours] [--wandb MODE]

Reads the out-of-fold predictions of the mask, gender and age models (any subset; the missing ones are
named): ``runs/<exp>/<task>/fold<k>/oof_flip.csv``, which training writes beside ``oof.csv``, each photo
predicted as it is and mirrored, the two averaged (the submission's flip TTA: with most models the ranking
then flags fewer correctly labelled people, for as many label errors or more: see the README's
measurements). ``--tta none`` reads ``oof.csv``; the default, ``auto``, reads it when some fold has no
``oof_flip.csv`` (runs trained before training wrote it), with a warning naming the command that writes them
(``python predict.py --exp NAME --oof --tta flip``). It writes into ``runs/<exp>/noise/`` (or ``--out``):

- ``suspects.csv``: the ranking, every unit of every kind (person, image, kind, task, given, suggested,
  confidence, threshold, score, flag, reviewed, reason), the strongest contradiction first: a reviewer can
  take the top N of a kind whatever the flags say. Units: a person for gender and age, a person's
  incorrect_mask/normal pair for mask_swap, a photo for outlier;
- ``suspects.png``: a contact sheet of the top ``--top`` of the ranking, flagged or not (flagged ones
  framed in red), given and suggested labels on each;
- ``corrections-draft.yaml``: the flagged units as a corrections file in the format of
  :mod:`datamodules.relabel` (gender flips, age fixes, swap_incorrect_normal, exclude_images for
  outliers), and an empty ``reviewed:`` section. Review and edit it (an entry you reject but have looked at
  goes under ``reviewed:``), then train with ``--set 'data.relabel=[path/to/corrections-draft.yaml]'``;
- ``truth-scores.json``, for a synthetic set (its ``truth/noise.csv``): person-level precision and recall
  of the flags per planted error kind, and the recall within the top 2 x planted of the ranking, also
  printed. A kind the finder does not know stops it with the kinds it knows.

Several experiments (``--exp A --exp B``, or ``--exp A,B``: seeds, backbones or recipes trained on the same
data) are an ensemble: each photo's probabilities are averaged over the experiments that predicted its task
(:func:`read_ensemble`), which must hold the same photos, labels and age cuts (their folds may differ: each
prediction is out-of-fold for its own model); the first gives the config and the data, and the outputs go to
``runs/<A>/noise+<B>[+<C>...]/``. A model's misreadings that another seed does not share average away, and
the flags of a weak model gain most (see the README's measurements).

Neighbours (``--neighbours``). Gender and age are read from ``oof_neighbours.csv`` beside each ``oof.csv``
instead (``python predict.py --exp NAME --neighbours [K]`` writes them from the checkpoints): each photo's
labels as voted by its K (default 20) nearest training photos in its fold model's feature space, the share
of them given each class (:mod:`inference.neighbours`). A weak model's head can be sure and wrong about a
kind of person (older people's gender, on the synthetic set), while its features still place a photo among
photos like it: a mislabelled person's photos sit among photos labelled otherwise. The votes then take the
models' probabilities' place in the rules below (pooling, thresholds, ranking); mask swaps and outliers
still read the models' own predictions (a mask state is one photo's, not the person's). A fold without the
file, or with one older than its ``best.ckpt``, stops the finder with the command that writes them. Measured
in the README.

Reviewed units. A corrections file's ``reviewed:`` section lists, by kind, the units someone has looked at
and kept as labelled (``configs/relabel/competition.yaml`` lists the real data's 14 disputed gender labels
there). The finder reads it from the experiment's own corrections files (``data.relabel``) and from each
``--reviewed FILE``: those units keep their score but are never flagged, and come after every other unit
of the ranking (and so off the contact sheet and out of the draft); the summary counts them, and how many
the rules would have flagged. A review is done once, not again after every retraining.

The images come from the experiment's data directory (its saved ``config.yaml``, or ``--data-dir``);
without it the finder still ranks, but draws no contact sheet and uses the models alone.

Evidence. Every photo's probability is clipped to [0.01, 0.99] (no single photo counts as surer than 99%).

- gender, age (a person): the person's probability of each label is the normalised geometric mean of their
  photos' probabilities (the mean log-probability: the photos of one person are one piece of evidence seen
  several times, so they are averaged, not multiplied). With ``--pooling learnt``, a logistic regression
  weighs each kind of photo (masked, incorrect_mask, normal) by what it tells of the given labels, fitted
  across the people with a rate of wrong labels that it estimates, and cross-fitted so that no person's own
  label enters their score (:mod:`analysis.noise.pooling`). The suggestion is the best label other than
  the given one; for age, only a group the given age lies ``AGE_MARGIN_YEARS`` = 5 years or more outside of
  (models disagree with ages near a cut as a matter of course, and moving a person across a cut they sit
  on changes little). The suggested age is the nearest one in that group.
- mask_swap (an ``incorrect_mask``/``normal`` pair): the two photos are judged jointly, "as labelled"
  against "swapped"; the confidence is P(swapped) from the product of both photos' probabilities, so one
  doubtful photo alone is never a swap.
- outlier (a photo), two reasons: the mask model contradicts its given mask state; or the photo is
  unusual on the whole: four surprises (its given mask state, how far its gender and its age predictions
  disagree with the person's other photos, and how unlike those photos it looks, from 12x16 thumbnails)
  each become a rank p-value among all photos, Fisher's method combines them (as if independent), and the
  confidence is (1 - p) ** N, N the number of photos (Sidak; about 1 - N * p: at 0.9, about 0.1 photos of
  the whole set would look this unusual by chance). The photos of a flagged swap are explained by the swap
  and are not flagged as outliers.

Decision (``--thresholds``, :mod:`analysis.noise.thresholds`). ``adaptive`` (the default): the thresholds
come from the out-of-fold probabilities, as confident learning sets them: per task and class, the mean
probability of the class over the units given it (photos pooled per person for gender and age; photos for
the mask state; pairs for swaps, where "swapped" takes the threshold of "as given"), at most
``--min-confidence``; the calibrated confident joint estimates how many units of each (given, suggested)
cell are wrong, and that many of the cell's top-scored units are flagged, where the suggestion is also the
model's most probable label. ``fixed``: one cut, ``MIN_CONFIDENCE`` = 0.9 (``--min-confidence``), for every
rule (the finder's rule before the adaptive one: a suspect is flagged when its confidence reaches it). The
unusual-photo test keeps ``--min-confidence`` in both modes: a level of significance, not a model's
confidence.

Ranking. ``score`` = how far the confidence is past its threshold, as a share of the way from the threshold
to certainty (1) above it, or to zero (-1) below it (0 at the threshold): within a class it orders as the
confidence, and it puts classes and kinds with different thresholds on one scale. The scores of different
kinds are alike in meaning, not calibrated against each other: read the ranking within a kind first.

The modules: ``reading`` (the experiments' predictions, config and data), ``suspects`` (the columns and
constants), ``thresholds`` (the decision), ``pooling`` (a person's photos pooled), ``rules`` (the
person-level rules), ``outliers``, ``ranking`` (:func:`find_suspects`, every kind), ``outputs`` (draft,
contact sheet, W&B), ``truth`` (a synthetic set's planted errors), ``finder`` (the run), ``command`` (the
command line).
"""

from analysis.noise.command import main
from analysis.noise.finder import experiment_names, run_finder
from analysis.noise.outliers import outlier_suspects, photo_scores
from analysis.noise.outputs import DRAFT_NAME, SHEET_NAME, SUSPECTS_NAME, check_draft, draft_corrections, log_wandb
from analysis.noise.pooling import LEARNT, MEAN, POOLINGS, kind_features, pool
from analysis.noise.ranking import find_suspects
from analysis.noise.reading import (
    AUTO,
    NEIGHBOUR_TASKS,
    TTA_CHOICES,
    choose_tta,
    read_ensemble,
    read_neighbours,
    read_oof_frames,
)
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
from analysis.noise.thresholds import class_thresholds, judge
from analysis.noise.truth import TOP_FACTOR, TRUTH_SCORES_NAME, read_disputed, read_truth, score_suspects

__all__ = [
    "ADAPTIVE",
    "AGE_MARGIN_YEARS",
    "AUTO",
    "DRAFT_NAME",
    "FIXED",
    "LEARNT",
    "MEAN",
    "MIN_CONFIDENCE",
    "NEIGHBOUR_TASKS",
    "POOLINGS",
    "PROB_FLOOR",
    "SHEET_NAME",
    "SUSPECTS_NAME",
    "SUSPECT_COLUMNS",
    "THRESHOLD_MODES",
    "TOP_FACTOR",
    "TRUTH_SCORES_NAME",
    "TTA_CHOICES",
    "age_suspects",
    "check_draft",
    "choose_tta",
    "class_thresholds",
    "draft_corrections",
    "experiment_names",
    "find_suspects",
    "gender_suspects",
    "judge",
    "kind_features",
    "log_wandb",
    "main",
    "mask_swap_suspects",
    "outlier_suspects",
    "person_posteriors",
    "photo_scores",
    "pool",
    "read_disputed",
    "read_ensemble",
    "read_neighbours",
    "read_oof_frames",
    "read_truth",
    "run_finder",
    "scaled_score",
    "score_suspects",
    "swap_pairs",
]
