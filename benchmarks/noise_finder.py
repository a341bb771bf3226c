"""How much of a synthetic set's planted label noise does the noise finder find?

Runs the finder (``python -m analysis.noise``) on an experiment trained on a synthetic data set, scores
its suspects against the set's ``truth/noise.csv`` (person-level precision and recall per error kind at
the finder's cut-off; outliers also per photo; flags on the people of ``truth/disputed.csv``, drawn between
the genders, count as false alarms and are also reported apart) and writes
``benchmarks/results/noise-finder-<name>.json`` with the models' out-of-fold F1 and training time.

The experiment behind ``benchmarks/results/noise-finder-synthetic-2700-cpu-2core.json`` (the default
synthetic set's 2,700 people and planted noise, drawn at 60x80, one multihead model per fold on the 2-core
CPU; ``benchmarks/configs/noise-finder-cpu.yaml`` has the settings)::

    python -m synthetic --out data/synthetic-2700 --eval-people 0 --size 60x80
    python train.py --task multihead --fold all --config benchmarks/configs/noise-finder-cpu.yaml
    python benchmarks/noise_finder.py --exp noise-cpu --data-dir data/synthetic-2700 --name synthetic-2700-cpu-2core
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import pandas as pd
from sklearn.metrics import f1_score

from analysis import noise
from core.tasks import TASKS
from rundir.layout import CONFIG, DONE, exp_dir, fold_name, prob_columns, run_dirs, run_place

ROOT = Path(__file__).resolve().parent.parent  # the results go to ROOT/benchmarks/results/

TARGET = {"gender": {"recall": 0.9, "precision": 0.8}, "mask_swap": {"recall": 0.9, "precision": 0.8}}


def train_seconds(experiment: Path) -> dict[str, float]:
    """Wall seconds of each (task, fold) run: train.py's done.json, or the time from the run's config.yaml
    (written at its start) to its done.json (written at its end)."""
    out = {}
    for done in [run / DONE for run in run_dirs(experiment) if (run / DONE).is_file()]:
        seconds = json.loads(done.read_text()).get("seconds")
        config = done.parent / CONFIG
        if seconds is None and config.is_file():
            seconds = done.stat().st_mtime - config.stat().st_mtime
        if seconds is not None:
            place = run_place(done)
            out[f"{place.task}/{fold_name(place.fold)}"] = round(float(seconds), 1)
    return out


def oof_f1(frames: dict[str, pd.DataFrame]) -> dict[str, float]:
    out = {}
    for task, f in frames.items():
        k = TASKS[task].num_classes
        pred = f[prob_columns(k)].to_numpy().argmax(1)
        out[task] = round(float(f1_score(f["label"], pred, labels=list(range(k)), average="macro")), 4)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--exp", required=True)
    ap.add_argument("--runs-dir", default="runs")
    ap.add_argument("--data-dir", required=True, type=Path, help="the synthetic set (with truth/noise.csv)")
    ap.add_argument("--name", required=True, help="results file: benchmarks/results/noise-finder-<name>.json")
    ap.add_argument("--min-confidence", type=float, default=noise.MIN_CONFIDENCE)
    args = ap.parse_args(argv)

    truth = noise.read_truth(args.data_dir)  # a clear error for a set without planted truth
    start = time.perf_counter()
    report = noise.run_finder(
        args.exp, args.runs_dir, args.data_dir, out=None, wandb_mode="disabled", min_confidence=args.min_confidence
    )
    seconds = time.perf_counter() - start
    disputed = noise.read_disputed(args.data_dir)
    scores = report.truth_scores
    frames, config = report.frames, report.config
    planted_flips = set(truth.loc[truth["kind"] == "gender", "path"])
    seconds_per_run = train_seconds(exp_dir(args.runs_dir, args.exp))
    result = {
        "experiment": args.exp,
        "data": str(args.data_dir),
        "people": int(report.data.images["person"].nunique()) if report.data.images is not None else None,
        "model": {
            "backbone": (config.get("model") or {}).get("backbone"),
            "max_epochs": (config.get("trainer") or {}).get("max_epochs"),
            "crop": (config.get("augment") or {}).get("crop"),
            "oof_macro_f1": oof_f1(frames),
            "train_seconds": round(sum(seconds_per_run.values()), 1) if seconds_per_run else None,
            "train_seconds_per_run": seconds_per_run,
        },
        "decision_rule": {
            "min_confidence": args.min_confidence,
            "prob_floor": noise.PROB_FLOOR,
            "age_margin_years": noise.AGE_MARGIN_YEARS,
        },
        "finder_seconds": round(seconds, 1),
        "machine": f"{platform.machine()} CPU, {os.cpu_count()} cores",
        "scores": scores,
        "target": TARGET,
        "target_met": {
            kind: bool(
                scores.get(kind, {}).get("recall") is not None
                and scores[kind]["recall"] >= t["recall"]
                and (scores[kind]["precision"] or 0) >= t["precision"]
            )
            for kind, t in TARGET.items()
        },
    }
    if "gender" in disputed:
        result["gender_disputed"] = {
            "people": len(disputed["gender"]),
            "planted_flips_among_them": len(disputed["gender"] & planted_flips),
            "flagged": scores.get("gender", {}).get("flagged_disputed"),
            "note": "truth/disputed.csv: people drawn between the genders; a flip among them cannot be seen",
        }
    out = ROOT / "benchmarks" / "results" / f"noise-finder-{args.name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result["scores"], indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
