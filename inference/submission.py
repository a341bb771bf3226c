"""The submission: eval/ predicted by the experiment's models, written with its per-head probabilities and a
report beside it, and scored when the data has a truth file (the synthetic set's). Two options change the
answer, not the probabilities written: ``calibrate`` (per-class offsets fitted on the out-of-fold predictions,
``inference.calibration``) and ``group_people`` (gender and age averaged over each person's photos, found by
appearance, ``inference.grouping``)."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.calibration import calibrated_answer
from analysis.scoring import score_predictions
from configs.config import Config
from core.atomic import place_problem, write_text_atomic
from core.errors import DataError
from core.tasks import TASK_NAMES, TASKS
from inference.calibration import offsets_of, write_calibration
from inference.grouping import cluster_people, group_heads, group_sizes, grouping_scores
from inference.predictor import predict_eval, write_csv
from rundir.layout import SUBMISSION, probs_path, report_path

log = logging.getLogger("predict")
PERSON = "person"  # truth/eval_answers.csv's column naming the person each photo shows (the synthetic set's)


def check_output(out: Path) -> None:
    """Stop before any prediction work when the submission cannot be written where asked."""
    for path in (out, probs_path(out), report_path(out)):
        if path.is_dir():
            raise DataError(f"--out {out}: {path} is a directory; name a file, e.g. --out {out / SUBMISSION}")
        problem = place_problem(path)
        if problem:
            raise DataError(f"--out {out}: {path} {problem}")


def head_probs(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """Each head's merged probabilities (``task -> (images, classes)``) from the ``<task>_<k>`` columns."""
    return {t: frame[[f"{t}_{k}" for k in range(TASKS[t].num_classes)]].to_numpy(np.float64) for t in TASK_NAMES}


def answer(
    probs: dict[str, np.ndarray], offsets: dict[str, np.ndarray] | None, groups: np.ndarray | None
) -> np.ndarray:
    """The 18-class answer: gender and age averaged within ``groups`` (when given), then each head's
    log-probabilities shifted by ``offsets`` (when given) before its argmax."""
    return calibrated_answer(probs if groups is None else group_heads(probs, groups), offsets)


def group_eval(embedding: np.ndarray) -> tuple[np.ndarray, dict]:
    """The evaluation images' groups of about 7 (one person each, ideally) and their sizes, timed."""
    start = time.perf_counter()
    groups = cluster_people(embedding)
    stats = {**group_sizes(groups), "dimensions": int(embedding.shape[1])}
    stats["seconds"] = round(time.perf_counter() - start, 2)
    print(
        f"grouped {stats['images']} images into {stats['groups']} groups of about 7 (sizes {stats['size_min']}.."
        f"{stats['size_max']}, median {stats['size_median']:g}) in {stats['seconds']:.1f} s; gender and age "
        "averaged within each"
    )
    return groups, stats


def score_variants(
    probs: pd.DataFrame, truth: pd.DataFrame, variants: dict[str, np.ndarray], report: dict, where: Path
) -> None:
    """Score the submitted answer (``report["eval"]``) and, beside it, the answer without each option used
    (``report["eval_<variant>"]``), against the truth file ``where``."""
    report["eval"] = score_predictions(probs, truth)
    line = f"eval vs {where}: macro F1 {report['eval']['f1']:.4f}, accuracy {report['eval']['accuracy']:.4f}"
    for name, ans in variants.items():
        report[f"eval_{name}"] = score_predictions(probs[["ImageID"]].assign(ans=ans), truth)
        line += f"; {name.replace('_', ' ')}: macro F1 {report[f'eval_{name}']['f1']:.4f}"
    print(line)


def write_submission(
    cfg: Config,
    exp_dir: Path,
    ensemble: str = "soft",
    tta: str = "flip",
    folds: list[str] | None = None,
    data_dir: str | None = None,
    out: Path | None = None,
    calibrate: bool = False,
    group_people: bool = False,
    age_cuts: tuple[int, int] | None = None,
) -> dict:
    """Predict eval/ with the checkpoints of ``folds`` (default: the k-fold runs); write the submission, the
    per-head probabilities (``<stem>_probs.csv``) and the report (``<stem>_report.json``) beside it, scoring
    the answers when the data has truth/.

    ``calibrate``: offsets fitted anew on the OOF predictions (saved to ``runs/<exp>/calibration.json``) shift
    each head's log-probabilities before the argmax. ``group_people``: the images are grouped into people by
    appearance (a ``group`` column in the probabilities file) and each group's gender and age probabilities are
    averaged before the argmax (then the offsets, when both). The probabilities file keeps the per-image merged
    probabilities either way; the report holds the options' details and, with a truth file, the scores without
    each option too. ``age_cuts``: ordinal age heads read at these cuts."""
    out = Path(out) if out is not None else exp_dir / SUBMISSION
    check_output(out)
    calibration = write_calibration(exp_dir, folds, tta) if calibrate else None  # fast; fails before prediction
    probs, data_dir, embedding = predict_eval(cfg, exp_dir, data_dir, ensemble, tta, folds, group_people, age_cuts)
    report = {"submission": str(out), "images": len(probs)}
    variants: dict[str, np.ndarray] = {}  # the answer without each option used, scored against a truth file
    if calibrate or group_people:
        heads = head_probs(probs)
        offsets = offsets_of(calibration) if calibration else None
        groups = None
        if group_people:
            groups, report["grouping"] = group_eval(embedding)
            probs["group"] = groups
            variants["ungrouped"] = answer(heads, offsets, None)
        if calibration:
            report["calibration"] = {k: calibration[k] for k in ("file", "offsets", "f1", "target", "fitted_on", "tta")}
            variants["uncalibrated"] = answer(heads, None, groups)
        if calibrate and group_people:
            variants["plain"] = probs["ans"].to_numpy()
        probs["ans"] = answer(heads, offsets, groups)
    probs_out = probs_path(out)
    write_csv(probs[["ImageID", "ans"]], out)
    write_csv(probs, probs_out)
    print(f"submission: {out} ({len(probs)} images); per-head probabilities: {probs_out}")
    truth = data_dir / "truth" / "eval_answers.csv"
    if truth.is_file():
        answers = pd.read_csv(truth)
        score_variants(probs, answers, variants, report, truth)
        if group_people and PERSON in answers.columns:
            person = probs[["ImageID"]].merge(answers[["ImageID", PERSON]], on="ImageID", how="left")[PERSON]
            if person.notna().all():
                report["grouping"] |= grouping_scores(probs["group"].to_numpy(), person.to_numpy())
                print(
                    f"groups vs {truth}: purity {report['grouping']['purity']:.4f} (images in a group whose "
                    f"most common person is theirs), {report['grouping']['people_whole']:.4f} of people whole "
                    "(all their photos in one group)"
                )
    write_text_atomic(report_path(out), json.dumps(report, indent=2))
    return report
