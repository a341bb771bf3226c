"""How much of a synthetic set's planted label noise does the noise finder find, with the model it is given?

Runs the finder (``python -m analysis.noise``) on an experiment trained on a synthetic data set, once per
threshold mode (``adaptive``: per-class thresholds from the out-of-fold probabilities, the finder's
default; ``fixed``: one cut, 0.9) and pooling of a person's photos (``mean``, the default, recorded as
``adaptive`` and ``fixed``; ``learnt``, recorded as ``adaptive-learnt`` and ``fixed-learnt``), and once
more adaptive (mean pooling) with the set's disputed people (``truth/disputed.csv``) given as reviewed, as
``configs/relabel/competition.yaml`` gives the real data's 14 disputed gender labels
(``adaptive-reviewed``); scores each ranking against the set's ``truth/noise.csv`` and writes
``benchmarks/results/noise-finder-<name>.json``:

- per planted kind (gender, age, mask_swap, outlier): person-level precision and recall of the flags
  (outliers also per photo), and ``recall_top_n``: the share of the planted people among the first
  ``top_n`` = 2 x planted units of that kind's ranking, flagged or not (what a reviewer taking the top of
  ``suspects.csv`` gets); flags on the people of ``truth/disputed.csv`` (drawn between the genders) count
  as false alarms and are also reported apart; for gender flips and swaps, the missed and the falsely flagged
  units, each with its rank, confidence and threshold;
- the gender ranking by age band (``gender_by_age``: under 30, 30-44, 45-59, 60 and over): people, flips,
  flagged, found, and each flip's rank within its band;
- confident learning within each age group (``gender_within_age_groups``): the adaptive thresholds and noise
  rates (mean pooling) estimated apart for each of the competition's three age groups, as if gender x age
  group were the classes, then the groups' flags and scores put together and scored as above;
- the finder ranks the flip-TTA out-of-fold predictions (``oof_flip.csv``, its default where every fold has
  them: ``tta`` in the results); ``without_tta``: the adaptive modes (both poolings) again on ``oof.csv``,
  the predictions without TTA, for the gender and swap scores;
- ``neighbours``: each experiment's ``oof_neighbours.csv`` written from its checkpoints (``--neighbours K``,
  default 20: each out-of-fold photo's K nearest training photos in its fold model's feature space vote on its
  labels; the seconds it took on this machine), and the adaptive mode (mean pooling), and again with the
  disputed people reviewed, with gender and age ranked on those votes (the finder's ``--neighbours``);
- the thresholds each mode used (by kind or task, and class), the finder's seconds (reading and ranking;
  and with its outputs), whether the targets are met (``--target``: gender flips and mask swaps, recall
  >= 0.9 at precision >= 0.8 for a strong model, >= 0.8 at >= 0.5 for a weak one);
- the models' out-of-fold macro F1 per task, their settings and training time, and the device
  (``--device``, "cpu-2core" by default).

Each mode's outputs go to ``runs/<exp>/noise-<mode>[-learnt]/`` (an ensemble's: ``runs/<A>/noise+<B>-<mode>...``),
and the adaptive mode's (mean pooling) again at each ``--caps`` value, the ceiling of its thresholds, for the
gender and swap scores.

The experiments: the default synthetic set's 2,700 people and planted noise, drawn at 48x64, one multihead
``test_resnet`` per fold on the 2-core CPU, from the options benchmark's settings
(``benchmarks/configs/options-cpu.yaml``) and one of these configs:

- strong60: the same set drawn at 60x80, 60x60 crops, 12 epochs (``noise-finder-strong60-cpu.yaml``,
  ``noise-strong60``, data ``data/synthetic-2700-60``);
- strong: 48x48 crops, 8 epochs (``noise-finder-strong-cpu.yaml``, experiments ``noise-strong``,
  ``noise-strong-s1``);
- middle: the options benchmark's seed recipe, 32x32 crops, 3 epochs (no second config; ``options-base-s0``,
  ``options-base-s1``, each alone and as a pair);
- weak: the same for 1 epoch (``noise-finder-cpu.yaml``; ``noise-weak`` at seed 42, ``noise-weak-s1`` ...);
  weak-sep: the same recipe as separate mask and gender models (``--task mask``, ``--task gender``,
  experiment ``noise-weak-sep``), the seed recipe's shape; weak-strongmask: that 1-epoch gender model beside a
  mask model trained as the strong one (``--task mask`` with ``noise-finder-strong-cpu.yaml``, experiment
  ``noise-weak-strongmask``): a weak gender reading beside mask read at F1 0.99, the swap ranking apart from
  the weak recipes' mask reading (the results record each task's settings, ``model.settings_per_task``);
- weak16: 16x16 crops, 4 epochs (``noise-finder-weak16-cpu.yaml``; ``noise-weak16``, ``noise-weak16-s1``).

Each model once, and its seeds as an ensemble (several ``--exp``), e.g.::

    python -m synthetic --out data/synthetic-2700-48 --size 48x64
    python train.py --task multihead --fold all --config benchmarks/configs/options-cpu.yaml \\
        --config benchmarks/configs/noise-finder-strong-cpu.yaml
    python train.py --task multihead --fold all --config benchmarks/configs/options-cpu.yaml \\
        --config benchmarks/configs/noise-finder-strong-cpu.yaml --exp noise-strong-s1 --set seed=1
    python benchmarks/noise_finder.py --exp noise-strong --data-dir data/synthetic-2700-48 \\
        --name synthetic-2700-strong-cpu-2core --target strong
    python benchmarks/noise_finder.py --exp noise-strong --exp noise-strong-s1 --data-dir data/synthetic-2700-48 \\
        --name synthetic-2700-strong-x2-cpu-2core --target strong
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
from core.tasks import COMPETITION_AGE_CUTS, TASKS, age_group
from inference.neighbours import NEIGHBOURS_K, write_neighbours
from rundir.layout import CONFIG, DONE, exp_dir, fold_name, noise_dir, prob_columns, run_dirs, run_place

ROOT = Path(__file__).resolve().parent.parent  # the results go to ROOT/benchmarks/results/

TARGETS = {  # the targets, for gender flips and mask swaps
    "strong": {"recall": 0.9, "precision": 0.8},
    "weak": {"recall": 0.8, "precision": 0.5},
}
TARGET_KINDS = ("gender", "mask_swap")
CAPS = (0.8, 0.9, 0.95, 0.99, 1.0)  # the adaptive thresholds' ceiling (--min-confidence), each tried
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


def gender_within_age_groups(report: NoiseReport, args) -> dict:
    """Gender scored with confident learning run apart within each of the competition's age groups: each
    group gets its own thresholds and noise-rate quotas (mean pooling, the adaptive mode's ceiling), as if
    the classes were gender x age group; the groups' flags and scores are then ranked together."""
    frame = report.frames.get("gender")
    ages = report.data.ages
    if frame is None or not ages:
        return {}
    post = noise.person_posteriors(frame, "gender")
    post = post[post.index.isin(set(ages))]  # a person without an age has no group
    group = age_group(post.index.map(ages).to_numpy(float), COMPETITION_AGE_CUTS)
    probs = post[[f"p{c}" for c in range(TASKS["gender"].num_classes)]].to_numpy()
    given = post["given"].to_numpy()
    flag, score, thresholds = np.zeros(len(post), bool), np.full(len(post), -1.0), {}
    for g in np.unique(group):
        part = group == g
        verdict = noise.judge(probs[part], given[part], noise.ADAPTIVE, args.min_confidence)
        flag[part], score[part] = verdict.flag, verdict.score
        thresholds[TASKS["age"].classes[g]] = dict(
            zip(TASKS["gender"].classes, np.round(verdict.thresholds, 4).tolist(), strict=True)
        )
    units = pd.DataFrame({"person": post.index, "image": "", "kind": "gender", "flag": flag, "score": score})
    scores = noise.score_suspects(units, args.truth, args.disputed).get("gender", {})
    return {"age_cuts": list(COMPETITION_AGE_CUTS), "thresholds": thresholds, "scores": scores}


def run_mode(
    args,
    mode: str,
    min_confidence: float,
    pooling: str = noise.MEAN,
    reviewed: bool = False,
    tta: str = noise.AUTO,
    neighbours: bool = False,
) -> tuple[NoiseReport, dict]:
    """One finder run, and its part of the results; ``reviewed``: with the set's disputed people reviewed;
    ``tta``: the out-of-fold predictions ranked (the finder's default, or ``none``); ``neighbours``: gender and
    age ranked on the nearest training photos' votes (``oof_neighbours.csv``)."""
    start = time.perf_counter()
    out = noise_dir(args.runs_dir, args.exp)
    suffix = f"-{mode}" + (f"-{pooling}" if pooling != noise.MEAN else "") + ("-reviewed" if reviewed else "")
    suffix += f"-{min_confidence:g}" if min_confidence != args.min_confidence else ""
    suffix += f"-tta-{tta}" if tta != noise.AUTO else ""
    suffix += "-neighbours" if neighbours else ""
    out = out.with_name(out.name + suffix)
    listed = [str(disputed_reviewed(args.disputed, out / REVIEWED_NAME))] if reviewed else []
    report = noise.run_finder(
        args.exp,
        args.runs_dir,
        args.data_dir,
        out=out,
        wandb_mode="disabled",
        min_confidence=min_confidence,
        progress=False,
        mode=mode,
        pooling=pooling,
        reviewed=listed,
        tta=tta,
        neighbours=neighbours,
    )
    total = time.perf_counter() - start
    scores = report.truth_scores or {}
    part = {
        "tta": report.tta,
        "neighbours": report.neighbours,
        "pooling": report.pooling,
        "thresholds": report.thresholds,
        "finder_seconds": round(report.seconds, 1),
        "finder_seconds_with_outputs": round(total, 1),
        "flagged": int(report.suspects["flag"].sum()),
        "reviewed": {"units": report.reviewed.counts(), "held_back": report.held_back},
        "ranked": len(report.suspects),
        "scores": scores,
        "target_met": target_met(scores, TARGETS[args.target]),
        "units": errors_by_unit(report.suspects, args.truth, args.disputed),
        "gender_by_age": gender_by_age(report.suspects, args.truth, report.data.ages),
    }
    return report, part


def write_votes(args) -> float:
    """Write every experiment's ``oof_neighbours.csv`` files (``args.neighbours`` nearest training photos, from
    each fold's checkpoint, on this machine's CPU); the seconds it took."""
    cfg = load_config(None, [], [])
    cfg.trainer.progress_bar = False
    start = time.perf_counter()
    for name in args.exp:
        write_neighbours(cfg, exp_dir(args.runs_dir, name), None, args.neighbours)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--exp",
        required=True,
        action="append",
        help="the experiment (runs/<exp>/<task>/fold<k>/oof_flip.csv, or oof.csv); several (--exp A --exp B) are an "
        "ensemble",
    )
    ap.add_argument("--runs-dir", default="runs")
    ap.add_argument("--data-dir", required=True, type=Path, help="the synthetic set (with truth/noise.csv)")
    ap.add_argument("--name", required=True, help="results file: benchmarks/results/noise-finder-<name>.json")
    ap.add_argument("--target", choices=sorted(TARGETS), default="strong", help="the model's targets (strong)")
    ap.add_argument("--thresholds", nargs="+", choices=noise.THRESHOLD_MODES, default=list(noise.THRESHOLD_MODES))
    ap.add_argument("--min-confidence", type=float, default=noise.MIN_CONFIDENCE)
    ap.add_argument(
        "--pooling",
        nargs="+",
        choices=noise.POOLINGS,
        default=list(noise.POOLINGS),
        help="each threshold mode with these poolings of a person's photos (default: mean learnt); the modes of "
        "a pooling other than mean are recorded as <mode>-<pooling>",
    )
    ap.add_argument(
        "--caps",
        type=float,
        nargs="*",
        default=list(CAPS),
        help="adaptive mode again at these --min-confidence values, the ceiling of its thresholds (gender and "
        f"mask swaps recorded; default {' '.join(map(str, CAPS))}; none: skip)",
    )
    ap.add_argument(
        "--no-reviewed",
        action="store_true",
        help="skip the adaptive mode (mean pooling) with the set's disputed people given as reviewed "
        "(recorded as adaptive-reviewed)",
    )
    ap.add_argument(
        "--neighbours",
        type=int,
        default=NEIGHBOURS_K,
        metavar="K",
        help="write each experiment's oof_neighbours.csv (each photo's K nearest training photos' votes, from the "
        "checkpoints) and run the adaptive mode, and the reviewed one, with gender and age ranked on them "
        f"(recorded under neighbours; default K={NEIGHBOURS_K}; 0: skip)",
    )
    ap.add_argument("--device", default="cpu-2core", help="the machine, in the results (default cpu-2core)")
    args = ap.parse_args(argv)

    truth = noise.read_truth(args.data_dir)  # a clear error for a set without planted truth (or unknown kinds)
    disputed = noise.read_disputed(args.data_dir)
    args.truth, args.disputed = truth, disputed
    args.exp = noise.experiment_names(args.exp)
    modes, report = {}, None
    for pooling in dict.fromkeys(args.pooling):
        for mode in dict.fromkeys(args.thresholds):
            key = mode if pooling == noise.MEAN else f"{mode}-{pooling}"
            done, modes[key] = run_mode(args, mode, args.min_confidence, pooling)
            report = report or done
    if disputed and not args.no_reviewed:
        modes[f"{noise.ADAPTIVE}-reviewed"] = run_mode(args, noise.ADAPTIVE, args.min_confidence, reviewed=True)[1]
    without = {}
    if report.tta != "none":  # the same ranking on the predictions without TTA
        for pooling in dict.fromkeys(args.pooling):
            key = noise.ADAPTIVE if pooling == noise.MEAN else f"{noise.ADAPTIVE}-{pooling}"
            done, part = run_mode(args, noise.ADAPTIVE, args.min_confidence, pooling, tta="none")
            scores = {k: part["scores"].get(k) for k in TARGET_KINDS}
            without[key] = {"oof_macro_f1": oof_f1(done.frames), **scores, "thresholds": part["thresholds"]}
    caps = {}
    for cap in [c for c in args.caps if c != args.min_confidence]:
        part = run_mode(args, noise.ADAPTIVE, cap)[1]
        caps[f"{cap:g}"] = {k: part["scores"].get(k) for k in TARGET_KINDS} | {"thresholds": part["thresholds"]}
    neighbours = {}
    if args.neighbours:
        seconds = write_votes(args)
        voted = {noise.ADAPTIVE: run_mode(args, noise.ADAPTIVE, args.min_confidence, neighbours=True)[1]}
        if disputed and not args.no_reviewed:
            voted[f"{noise.ADAPTIVE}-reviewed"] = run_mode(
                args, noise.ADAPTIVE, args.min_confidence, reviewed=True, neighbours=True
            )[1]
        neighbours = {"k": args.neighbours, "write_seconds": round(seconds, 1), "modes": voted}
    settings = task_settings(exp_dir(args.runs_dir, args.exp[0]), list(report.frames), report.tta)
    shared = {json.dumps(v, sort_keys=True): v for v in settings.values()}  # one entry: every task's model alike
    seconds_per_run = {}
    for name in args.exp:
        prefix = f"{name}/" if len(args.exp) > 1 else ""
        seconds_per_run |= {prefix + k: v for k, v in train_seconds(exp_dir(args.runs_dir, name)).items()}
    members = {name: oof_f1(read_oof_frames(exp_dir(args.runs_dir, name), report.tta)[0]) for name in args.exp}
    result = {
        "experiment": "+".join(args.exp),
        "experiments": args.exp,
        "data": str(args.data_dir),
        "people": int(report.data.images["person"].nunique()) if report.data.images is not None else None,
        "device": args.device,
        "machine": f"{platform.machine()} CPU, {os.cpu_count()} cores",
        "model": {
            **(next(iter(shared.values())) if len(shared) == 1 else {}),  # where every task's model has them
            "settings_per_task": settings,  # each task's model's, from the config.yaml beside its predictions
            "oof_macro_f1": oof_f1(report.frames),  # an ensemble's: of the averaged probabilities
            "oof_macro_f1_per_experiment": members,
            "train_seconds": round(sum(seconds_per_run.values()), 1) if seconds_per_run else None,
            "train_seconds_per_run": seconds_per_run,
        },
        "decision_rule": {
            "min_confidence": args.min_confidence,
            "prob_floor": noise.PROB_FLOOR,
            "age_margin_years": noise.AGE_MARGIN_YEARS,
            "top_factor": noise.TOP_FACTOR,
        },
        "target": {"model": args.target, **{kind: TARGETS[args.target] for kind in TARGET_KINDS}},
        "tta": report.tta,
        "modes": modes,
        "without_tta": without,
        "adaptive_by_cap": caps,
        "neighbours": neighbours,
        "gender_within_age_groups": gender_within_age_groups(report, args),
    }
    if "gender" in disputed:
        planted_flips = set(truth.loc[truth["kind"] == "gender", "path"])
        result["gender_disputed"] = {
            "people": len(disputed["gender"]),
            "planted_flips_among_them": len(disputed["gender"] & planted_flips),
            "flagged": {m: part["scores"].get("gender", {}).get("flagged_disputed") for m, part in modes.items()},
            "note": "truth/disputed.csv: people drawn between the genders; a flip among them cannot be seen",
        }
    out = ROOT / "benchmarks" / "results" / f"noise-finder-{args.name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    for mode, part in modes.items():
        print(f"{mode}: thresholds {json.dumps(part['thresholds'])}")
        for kind, e in part["scores"].items():
            print(
                f"  {kind}: flagged {e['flagged']}, found {e['found']}/{e['planted']}: precision {e['precision']}, "
                f"recall {e['recall']}; recall in the top {e['top_n']}: {e['recall_top_n']}"
            )
        print(f"  target ({args.target}) met: {part['target_met']}")
    for cap, part in caps.items():
        said = "; ".join(
            f"{k}: flagged {e['flagged']}, found {e['found']}" for k, e in part.items() if k in TARGET_KINDS and e
        )
        print(f"adaptive capped at {cap}: {said}")
    for key, part in without.items():
        said = "; ".join(
            f"{k}: flagged {e['flagged']}, found {e['found']}, top {e['top_n']} {e['recall_top_n']}"
            for k, e in part.items()
            if k in TARGET_KINDS and e
        )
        print(f"{key} without TTA (oof.csv): {said}")
    for mode, part in (neighbours or {}).get("modes", {}).items():
        said = "; ".join(
            f"{k}: flagged {e['flagged']}, found {e['found']}/{e['planted']}, top {e['top_n']} {e['recall_top_n']}"
            for k, e in part["scores"].items()
            if k in (*TARGET_KINDS, "age") and e
        )
        print(f"{mode}, gender and age on the {neighbours['k']} nearest photos' votes: {said}")
        print(f"  target ({args.target}) met: {part['target_met']}")
    within = result["gender_within_age_groups"].get("scores")
    if within:
        print(
            f"gender, confident learning within each age group: flagged {within['flagged']}, found "
            f"{within['found']}/{within['planted']}; recall in the top {within['top_n']}: {within['recall_top_n']}"
        )
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
