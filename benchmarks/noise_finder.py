"""How much of a synthetic set's planted label noise does the noise finder find, with the model it is given?

Runs the finder (``python -m analysis.noise``) on an experiment trained on a synthetic data set, in each
threshold mode (``fixed``, the default, and ``adaptive``), each again with the set's disputed people
(``truth/disputed.csv``) given as reviewed (``<mode>-reviewed``, as ``configs/relabel/competition.yaml``
gives the real data's 14 disputed gender labels), and, after writing each experiment's nearest-photo votes
(``--neighbours K``), with gender and age ranked on them (``<mode>-neighbours[-reviewed]``). Each run is scored
against the set's ``truth/noise.csv``.

``benchmarks/results/noise-finder-<name>.json`` gets the summary a person reads: per mode and planted kind
(gender, age, mask_swap, outlier), flagged, found, precision, recall and ``recall_top_n`` (the share of the
planted among the first 2 x planted of the kind's ranking, flagged or not); the units the rank-only rules
would flag; whether the targets are met (gender flips and mask swaps, recall >= 0.9 at precision >= 0.8 for
a strong model, >= 0.8 at >= 0.5 for a weak one); the gender ranking by age band; the thresholds used; the
models' out-of-fold macro F1, settings and training time; the command that wrote it. The per-unit details
(each missed and falsely flagged gender flip or swap with its rank) go to
``runs/<exp>/noise-benchmark/<name>.json``, each mode's ranking to ``runs/<exp>/noise-<mode>.../suspects.csv``.

The experiments (docs/noise-finder.md): the default synthetic set's 2,700 people drawn at 48x64, one
multihead ``test_resnet`` per fold on the 2-core CPU, from ``benchmarks/configs/options-cpu.yaml`` and one of
``noise-finder-{strong60,strong,weak16}-cpu.yaml`` or ``noise-finder-cpu.yaml`` (weak). Each model once, and
its seeds as an ensemble (several ``--exp``), e.g.::

    python -m synthetic --out data/synthetic-2700-48 --size 48x64
    python train.py --task multihead --fold all --config benchmarks/configs/options-cpu.yaml \\
        --config benchmarks/configs/noise-finder-strong-cpu.yaml
    python benchmarks/noise_finder.py --exp noise-strong --data-dir data/synthetic-2700-48 \\
        --name synthetic-2700-strong-cpu-2core --target strong
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from sklearn.metrics import f1_score

from analysis import noise
from analysis.noise.finder import NoiseReport
from analysis.noise.reading import read_oof_frames
from analysis.scoring import task_oof_files
from configs.config import load_config
from core.tasks import TASKS
from inference.neighbours import NEIGHBOURS_K, write_neighbours
from rundir.layout import CONFIG, DONE, exp_dir, fold_name, noise_dir, prob_columns, run_dirs, run_place

ROOT = Path(__file__).resolve().parent.parent  # the results go to ROOT/benchmarks/results/

TARGETS = {  # the targets, for gender flips and mask swaps
    "strong": {"recall": 0.9, "precision": 0.8},
    "weak": {"recall": 0.8, "precision": 0.5},
}
TARGET_KINDS = ("gender", "mask_swap")
AGE_BANDS = (30, 45, 60)  # the gender ranking is also read by age band: under 30, 30-44, 45-59, 60 and over
AGE_BAND_NAMES = ("<30", "30-44", "45-59", "60+")
REVIEWED_NAME = "disputed-reviewed.yaml"  # the set's disputed people as a corrections file's reviewed section


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


def model_settings(config: dict) -> dict:
    """The settings that make a model weak or strong, from a run's saved config."""
    augment = config.get("augment") or {}
    return {
        "backbone": (config.get("model") or {}).get("backbone"),
        "max_epochs": (config.get("trainer") or {}).get("max_epochs"),
        "resize": [augment.get("resize_width"), augment.get("resize_height")],
        "crop": augment.get("crop"),
    }


def task_settings(experiment: Path, tasks: list[str], tta: str) -> dict[str, dict]:
    """Each task's model settings (:func:`model_settings`), from the config.yaml beside the first of the files
    its out-of-fold predictions come from (its own model's, else a multihead model's): an experiment may hold
    separate models trained differently, e.g. a weak gender model beside a strong mask model."""
    out = {}
    for task in tasks:
        files = task_oof_files(experiment, task, tta=tta)
        config = files[0].parent / CONFIG if files else None
        if config is not None and config.is_file():
            out[task] = model_settings(yaml.safe_load(config.read_text()) or {})
    return out


def oof_f1(frames: dict[str, pd.DataFrame]) -> dict[str, float]:
    out = {}
    for task, f in frames.items():
        k = TASKS[task].num_classes
        pred = f[prob_columns(k)].to_numpy().argmax(1)
        out[task] = round(float(f1_score(f["label"], pred, labels=list(range(k)), average="macro")), 4)
    return out


def target_met(scores: dict, target: dict) -> dict[str, bool]:
    return {
        kind: bool(
            (scores.get(kind, {}).get("recall") or 0) >= target["recall"]
            and (scores.get(kind, {}).get("precision") or 0) >= target["precision"]
        )
        for kind in TARGET_KINDS
    }


def errors_by_unit(suspects: pd.DataFrame, truth: pd.DataFrame, disputed: dict[str, set[str]]) -> dict:
    """For each target kind, the planted units not flagged (``missed``) and the flagged units not planted
    (``false_alarms``): person, rank in the kind's ranking (1 first), confidence, threshold, and whether the
    person is disputed."""
    out = {}
    for kind in TARGET_KINDS:
        planted = set(truth.loc[truth["kind"] == kind, "path"])
        units = suspects[suspects["kind"] == kind].reset_index(drop=True).assign(rank=lambda d: d.index + 1)
        units["disputed"] = units["person"].isin(disputed.get(kind, set()))
        units[["confidence", "threshold"]] = units[["confidence", "threshold"]].round(4)
        is_planted = units["person"].isin(planted)
        columns = ["person", "rank", "confidence", "threshold", "disputed"]
        out[kind] = {
            "missed": units.loc[is_planted & ~units["flag"], columns].to_dict("records"),
            "false_alarms": units.loc[~is_planted & units["flag"], columns].to_dict("records"),
        }
    return out


def disputed_reviewed(disputed: dict[str, set[str]], path: Path) -> Path:
    """A corrections file listing the set's disputed people (truth/disputed.csv) under ``reviewed:``: what
    the real data's users have in configs/relabel/competition.yaml for its 14 disputed gender labels."""
    lines = [
        "# The synthetic set's disputed people (truth/disputed.csv: drawn between the genders), kept as labelled:",
        "# the stand-in for the real data's 14 disputed gender labels (configs/relabel/competition.yaml).",
        "reviewed:",
        *(f"  {kind}: {json.dumps(sorted(people))}" for kind, people in disputed.items()),
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def gender_by_age(suspects: pd.DataFrame, truth: pd.DataFrame, ages: dict[str, int]) -> dict:
    """The gender ranking by age band (``AGE_BANDS``; the ages after the experiment's corrections): per band,
    the people, the planted flips, the flagged and the flips found, and each flip's rank within its band (1
    first): where a model reads gender well enough to tell a flip from its own misreadings."""
    units = suspects[suspects["kind"] == "gender"].reset_index(drop=True)
    if units.empty or not ages:
        return {}
    band = np.searchsorted(AGE_BANDS, units["person"].map(ages).to_numpy(float), side="right")
    planted = units["person"].isin(set(truth.loc[truth["kind"] == "gender", "path"])).to_numpy()
    out = {}
    for i, name in enumerate(AGE_BAND_NAMES):
        part = units[band == i].reset_index(drop=True)
        hit = planted[band == i]
        out[name] = {
            "people": len(part),
            "planted": int(hit.sum()),
            "flagged": int(part["flag"].sum()),
            "found": int((part["flag"].to_numpy() & hit).sum()),
            "planted_ranks": [int(r) + 1 for r in np.flatnonzero(hit)],
        }
    return out


def run_mode(args, mode: str, reviewed: bool = False, neighbours: bool = False) -> dict:
    """One finder run's part of the results; ``reviewed``: with the set's disputed people reviewed;
    ``neighbours``: gender and age ranked on the nearest training photos' votes (``oof_neighbours.csv``)."""
    start = time.perf_counter()
    key = mode + ("-neighbours" if neighbours else "") + ("-reviewed" if reviewed else "")
    out = noise_dir(args.runs_dir, args.exp)
    out = out.with_name(f"{out.name}-{key}")
    listed = [str(disputed_reviewed(args.disputed, out / REVIEWED_NAME))] if reviewed else []
    report = noise.run_finder(
        args.exp,
        args.runs_dir,
        args.data_dir,
        out=out,
        wandb_mode="disabled",
        min_confidence=args.min_confidence,
        progress=False,
        mode=mode,
        reviewed=listed,
        neighbours=neighbours,
    )
    args.report = args.report or report
    scores = report.truth_scores or {}
    return {
        "flagged": int(report.suspects["flag"].sum()),
        "scores": scores,
        "ranked_only": report.ranked_only,
        "target_met": target_met(scores, TARGETS[args.target]),
        "reviewed": {"units": report.reviewed.counts(), "held_back": report.held_back},
        "thresholds": report.thresholds,
        "finder_seconds": round(report.seconds, 1),
        "finder_seconds_with_outputs": round(time.perf_counter() - start, 1),
        "gender_by_age": gender_by_age(report.suspects, args.truth, report.data.ages),
        "units": errors_by_unit(report.suspects, args.truth, args.disputed),
    }


def write_votes(args) -> float:
    """Write every experiment's ``oof_neighbours.csv`` files (``args.neighbours`` nearest training photos, from
    each fold's checkpoint, on this machine's CPU); the seconds it took."""
    cfg = load_config(None, [], [])
    cfg.trainer.progress_bar = False
    start = time.perf_counter()
    for name in args.exp:
        write_neighbours(cfg, exp_dir(args.runs_dir, name), None, args.neighbours)
    return time.perf_counter() - start


def summary(result: dict) -> dict:
    """The results a person reads: ``result`` without the per-unit lists (each mode's missed and falsely
    flagged units) and the per-run training times."""
    out = json.loads(json.dumps(result))
    for part in out["modes"].values():
        part.pop("units", None)
    out["model"].pop("train_seconds_per_run", None)
    return out


def compact_json(value, indent: int = 0, width: int = 160) -> str:
    """JSON with each value that fits in ``width`` characters on one line: a summary a person can read."""
    flat = json.dumps(value)
    if len(flat) + indent <= width or not isinstance(value, dict | list) or not value:
        return flat
    pad = " " * (indent + 2)
    if isinstance(value, dict):
        items = [f"{pad}{json.dumps(k)}: {compact_json(v, indent + 2, width)}" for k, v in value.items()]
        return "{\n" + ",\n".join(items) + "\n" + " " * indent + "}"
    items = [pad + compact_json(v, indent + 2, width) for v in value]
    return "[\n" + ",\n".join(items) + "\n" + " " * indent + "]"


def model_part(args, report: NoiseReport) -> dict:
    """The models measured: settings per task, out-of-fold macro F1 (an ensemble's and each member's), and
    training seconds."""
    settings = task_settings(exp_dir(args.runs_dir, args.exp[0]), list(report.frames), report.tta)
    shared = {json.dumps(v, sort_keys=True): v for v in settings.values()}  # one entry: every task's model alike
    per_run = {}
    for name in args.exp:
        prefix = f"{name}/" if len(args.exp) > 1 else ""
        per_run |= {prefix + k: v for k, v in train_seconds(exp_dir(args.runs_dir, name)).items()}
    members = {name: oof_f1(read_oof_frames(exp_dir(args.runs_dir, name), report.tta)) for name in args.exp}
    return {
        **(next(iter(shared.values())) if len(shared) == 1 else {}),  # where every task's model has them
        "settings_per_task": settings,
        "oof_macro_f1": oof_f1(report.frames),
        "oof_macro_f1_per_experiment": members,
        "train_seconds": round(sum(per_run.values()), 1) if per_run else None,
        "train_seconds_per_run": per_run,
    }


def parse_args(argv: list[str] | None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--exp", required=True, action="append", help="the experiment; several are an ensemble")
    ap.add_argument("--runs-dir", default="runs")
    ap.add_argument("--data-dir", required=True, type=Path, help="the synthetic set (with truth/noise.csv)")
    ap.add_argument("--name", required=True, help="results file: benchmarks/results/noise-finder-<name>.json")
    ap.add_argument("--target", choices=sorted(TARGETS), default="strong", help="the model's targets (strong)")
    ap.add_argument("--thresholds", nargs="+", choices=noise.THRESHOLD_MODES, default=list(noise.THRESHOLD_MODES))
    ap.add_argument("--min-confidence", type=float, default=noise.MIN_CONFIDENCE)
    ap.add_argument("--no-reviewed", action="store_true", help="skip the runs with the disputed people reviewed")
    ap.add_argument(
        "--neighbours",
        type=int,
        default=NEIGHBOURS_K,
        metavar="K",
        help=f"write the K nearest training photos' votes and rank on them too (default {NEIGHBOURS_K}; 0: skip)",
    )
    ap.add_argument("--device", default="cpu-2core", help="the machine, in the results (default cpu-2core)")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    command = "python benchmarks/noise_finder.py " + " ".join(sys.argv[1:] if argv is None else argv)
    args.truth = noise.read_truth(args.data_dir)  # a clear error for a set without planted truth (or unknown kinds)
    args.disputed = noise.read_disputed(args.data_dir)
    args.exp, args.report = noise.experiment_names(args.exp), None
    reviewed = [False] + ([True] if args.disputed and not args.no_reviewed else [])
    modes = {}
    for mode in dict.fromkeys(args.thresholds):
        for r in reviewed:
            modes[mode + ("-reviewed" if r else "")] = run_mode(args, mode, r)
    neighbours = {}
    if args.neighbours:
        neighbours = {"k": args.neighbours, "write_seconds": round(write_votes(args), 1)}
        for mode in dict.fromkeys(args.thresholds):
            for r in reviewed:
                modes[f"{mode}-neighbours" + ("-reviewed" if r else "")] = run_mode(args, mode, r, neighbours=True)
    report = args.report
    details = exp_dir(args.runs_dir, args.exp[0]) / "noise-benchmark" / f"{args.name}.json"
    result = {
        "produced_by": {"command": command, "per_unit_details": str(details)},
        "experiment": "+".join(args.exp),
        "experiments": args.exp,
        "data": str(args.data_dir),
        "people": int(report.data.images["person"].nunique()) if report.data.images is not None else None,
        "device": args.device,
        "machine": f"{platform.machine()} CPU, {os.cpu_count()} cores",
        "model": model_part(args, report),
        "decision_rule": {
            "min_confidence": args.min_confidence,
            "prob_floor": noise.PROB_FLOOR,
            "age_margin_years": noise.AGE_MARGIN_YEARS,
            "top_factor": noise.TOP_FACTOR,
        },
        "target": {"model": args.target, **{kind: TARGETS[args.target] for kind in TARGET_KINDS}},
        "tta": report.tta,
        "modes": modes,
        "neighbours": neighbours,
    }
    if "gender" in args.disputed:
        planted = set(args.truth.loc[args.truth["kind"] == "gender", "path"])
        result["gender_disputed"] = {
            "people": len(args.disputed["gender"]),
            "planted_flips_among_them": len(args.disputed["gender"] & planted),
        }
    details.parent.mkdir(parents=True, exist_ok=True)
    details.write_text(json.dumps(result, indent=2) + "\n")
    out = ROOT / "benchmarks" / "results" / f"noise-finder-{args.name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(compact_json(summary(result)) + "\n")
    for mode, part in modes.items():
        for kind, e in part["scores"].items():
            print(
                f"{mode} {kind}: flagged {e['flagged']}, found {e['found']}/{e['planted']}: precision "
                f"{e['precision']}, recall {e['recall']}; recall in the top {e['top_n']}: {e['recall_top_n']}"
            )
        print(f"{mode}: target ({args.target}) met: {part['target_met']}")
    print(f"wrote {out} (per-unit details: {details})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
