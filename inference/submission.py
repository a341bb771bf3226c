"""The submission: eval/ predicted by the experiment's models, written with its per-head probabilities and a
report beside it, and scored when the data has a truth file (the synthetic set's)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from analysis.scoring import score_predictions
from configs.config import Config
from core.atomic import write_text_atomic
from core.errors import DataError
from inference.predictor import predict_eval, write_csv
from rundir.layout import SUBMISSION, probs_path, report_path


def check_output(out: Path) -> None:
    """Stop before any prediction work when the submission cannot be written where asked."""
    for path in (out, probs_path(out), report_path(out)):
        if path.is_dir():
            raise DataError(f"--out {out}: {path} is a directory; name a file, e.g. --out {out / SUBMISSION}")


def write_submission(
    cfg: Config,
    exp_dir: Path,
    ensemble: str = "soft",
    tta: str = "flip",
    folds: list[str] | None = None,
    data_dir: str | None = None,
    out: Path | None = None,
) -> dict:
    """Predict eval/ with the checkpoints of ``folds`` (default: the k-fold runs); write the submission, the
    per-head probabilities (``<stem>_probs.csv``) and the report (``<stem>_report.json``) beside it, scoring
    the answers when the data has truth/."""
    out = Path(out) if out is not None else exp_dir / SUBMISSION
    check_output(out)
    probs, data_dir = predict_eval(cfg, exp_dir, data_dir, ensemble, tta, folds)
    probs_out = probs_path(out)
    write_csv(probs[["ImageID", "ans"]], out)
    write_csv(probs, probs_out)
    print(f"submission: {out} ({len(probs)} images); per-head probabilities: {probs_out}")
    report = {"submission": str(out), "images": len(probs)}
    truth = data_dir / "truth" / "eval_answers.csv"
    if truth.is_file():
        report["eval"] = score_predictions(probs, pd.read_csv(truth))
        print(f"eval vs {truth}: macro F1 {report['eval']['f1']:.4f}, accuracy {report['eval']['accuracy']:.4f}")
    write_text_atomic(report_path(out), json.dumps(report, indent=2))
    return report
