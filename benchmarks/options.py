"""What helps here: each option past the seed recipe, trained at the seed's budget on the default synthetic set's
folds with 2 seeds, compared with the seed recipe by ``python -m analysis compare`` (a paired bootstrap over
people), and scored on eval/ against truth/; then the prediction-time options on the seed recipe's models.

    python -m synthetic --out data/synthetic-2700-48 --size 48x64
    python benchmarks/options.py                      # everything; finished folds are skipped (--resume)
    python benchmarks/options.py --only base,ema      # some of the options

The settings are ``benchmarks/configs/options-cpu.yaml`` (the seed recipe, CPU-sized). Writes
``benchmarks/results/options-<device>.json`` and prints the table of docs/benchmarks.md's "Options past the seed".
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

import torch

from analysis.compare import compare_experiments
from core.tasks import MULTIHEAD
from rundir.layout import DONE, SUBMISSION, exp_dir, report_path, run_dir, run_dirs

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "benchmarks" / "configs" / "options-cpu.yaml"
RUNS = ROOT / "runs"
SEEDS = (0, 1)
PACKAGES = ("torch", "torchvision", "timm", "albumentations", "opencv-python-headless", "pytorch-lightning", "numpy")
OPTIONS = {  # name -> (what it is, its settings)
    "base": ("the seed recipe", []),
    "mix": (
        "MixUp + CutMix (timm's switch: alphas 0.8 / 1.0)",
        ["augment.mixup_alpha=0.8", "augment.cutmix_alpha=1.0"],
    ),
    "ema": ("EMA of the weights (decay 0.995)", ["trainer.ema_decay=0.995"]),
    "ordinal": ("ordinal age head", ["model.age_head=ordinal"]),
}
AFTER = {  # prediction-time options on the seed recipe's models: name -> (what it is, predict.py options)
    "calibrate": ("macro-F1 calibration (predict.py --calibrate)", ["--calibrate"]),
    "group": ("person-consistent prediction (predict.py --group-people)", ["--group-people"]),
}


def device() -> str:
    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return f"cpu-{os.cpu_count()}core"


def packages() -> dict[str, str | None]:
    """The installed versions the scores move with (the same code gives other scores on other packages)."""
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def run(cmd: list[str]) -> float:
    print("$", " ".join(cmd), flush=True)
    started = time.perf_counter()
    subprocess.run(cmd, cwd=ROOT, check=True)
    return round(time.perf_counter() - started, 1)


def exp_name(option: str, seed: int) -> str:
    return f"options-{option}-s{seed}"


def train(option: str, seed: int) -> dict:
    """Train every fold of one option and seed (finished folds skipped); its training seconds and eval scores."""
    name = exp_name(option, seed)
    sets = [f"seed={seed}", *OPTIONS[option][1]]
    cmd = [sys.executable, "train.py", "--task", "multihead", "--fold", "all", "--config", str(CONFIG)]
    run([*cmd, "--exp", name, "--resume", *(a for s in sets for a in ("--set", s))])
    seconds = sum(json.loads((d / DONE).read_text())["seconds"] for d in run_dirs(exp_dir(RUNS, name)))
    return {"exp": name, "train_seconds": round(seconds, 1), **predict(name, [], SUBMISSION)[0]}


def timing(option: str) -> float:
    """Seconds of one epoch of fold 0 (training, validation and the out-of-fold prediction), alone on the machine:
    the options' cost, measured back to back (the k-fold runs shared the machine with other work)."""
    name = f"options-timing-{option}"
    cmd = [sys.executable, "train.py", "--task", "multihead", "--fold", "0", "--config", str(CONFIG), "--exp", name]
    sets = ["seed=0", "trainer.max_epochs=1", *OPTIONS[option][1]]
    run([*cmd, "--overwrite", *(a for s in sets for a in ("--set", s))])
    return json.loads((run_dir(RUNS, name, MULTIHEAD, 0) / DONE).read_text())["seconds"]


def predict(name: str, options: list[str], out_name: str) -> tuple[dict, dict]:
    """Predict eval/ with the experiment's fold models (flip TTA), scored against truth/: the scores and seconds,
    and the submission's whole report."""
    out = exp_dir(RUNS, name) / out_name
    seconds = run([sys.executable, "predict.py", "--config", str(CONFIG), "--exp", name, "--out", str(out), *options])
    report = json.loads(report_path(out).read_text())
    scores = {"eval_f1": report["eval"]["f1"], "eval_accuracy": report["eval"]["accuracy"], "predict_seconds": seconds}
    return scores, report


def compared(option: str) -> dict:
    """The option's out-of-fold scores against the seed recipe's, both seeds as replicates."""
    groups = {o: [exp_name(o, s) for s in SEEDS] for o in ("base", option)}
    result = compare_experiments(RUNS, list(groups.values()), boot=2000, seed=0)
    table = result["table"]
    rows = table[table["metric"].isin(["f1", "task_f1/mask", "task_f1/gender", "task_f1/age"])]
    out = {}
    for row in rows.itertuples():
        entry = out.setdefault(row.metric, {})
        key = "base" if row.verdict == "reference" else option
        entry[key] = round(row.value, 4)
        if key == option:
            entry |= {"difference": round(row.difference, 4), "interval": [round(row.low, 4), round(row.high, 4)]}
            entry["verdict"] = row.verdict
    return {"oof": out, "compare_csv": str(result["csv"]), "compare_seconds": result["seconds"]}


def kept(old: dict, new: dict) -> dict:
    """An option's new entry, keeping what this call did not measure again (the epoch time, the comparison)
    when its models are the ones measured before (the same eval scores, seed by seed); otherwise the new entry
    alone, and for the seed recipe a warning naming the comparisons that rest on its earlier models."""
    if [s["eval_f1"] for s in old.get("per_seed", [])] == [s["eval_f1"] for s in new["per_seed"]]:
        return old | new
    if new["what"] == OPTIONS["base"][0] and old:
        print(
            "warning: the seed recipe's models differ from the ones measured before; the other options' "
            "comparisons rest on those: python benchmarks/options.py --only base,"
            + ",".join(o for o in OPTIONS if o != "base"),
            flush=True,
        )
    return new


def reference_f1() -> float:
    """The seed recipe's out-of-fold 18-class F1, its seeds pooled as every comparison's reference takes them
    (compared with its own first seed, which only the reference row is read of)."""
    base = [exp_name("base", s) for s in SEEDS]
    table = compare_experiments(RUNS, [base, base[:1]], boot=1, seed=0, plot=False)["table"]
    return round(float(table[(table["metric"] == "f1") & (table["verdict"] == "reference")]["value"].iloc[0]), 4)


def after(option: str, seed: int) -> dict:
    """A prediction-time option on the seed recipe's models of ``seed``: eval scores with and without it, and
    what its report says (calibration: the out-of-fold F1 before, in-sample and cross-fitted; grouping: purity)."""
    name = exp_name("base", seed)
    out_name = f"{Path(SUBMISSION).stem}_{option}.csv"
    scores, report = predict(name, AFTER[option][1], out_name)
    without = report["eval_uncalibrated" if option == "calibrate" else "eval_ungrouped"]["f1"]
    if option == "calibrate":  # the scores, and the fit's seconds from the calibration file it saved
        saved = json.loads(Path(report["calibration"]["file"]).read_text())
        extra = report["calibration"]["f1"] | {"seconds": saved["seconds"]}
    else:
        extra = report["grouping"]
    return scores | {"eval_f1_without": without, "details": extra}


def interval(entry: dict) -> str:
    low, high = entry["interval"]
    return f"{entry['difference']:+.4f} [{low:+.4f}, {high:+.4f}]: {entry['verdict']}"


def table(results: dict) -> str:
    """The markdown table of docs/benchmarks.md's "Options past the seed"."""
    lines = [
        "| option | OOF 18-class F1 (2 seeds) | difference to the seed recipe [95% interval] | eval F1 | train time |",
        "|---|---|---|---|---|",
    ]
    trained = results["trained"]
    base = trained["base"]
    for option, entry in trained.items():
        oof = entry["oof"]["f1"][option] if option != "base" else base["oof_f1"]
        diff = "reference" if option == "base" else interval(entry["oof"]["f1"])
        if "epoch_seconds" in entry and "epoch_seconds" in base:
            cost = entry["epoch_seconds"] / base["epoch_seconds"]
            seconds = f"{entry['epoch_seconds']:.0f} s an epoch ({cost:.2f}x)"
        else:
            seconds = "not timed (python benchmarks/options.py --timing)"
        lines.append(f"| {OPTIONS[option][0]} | {oof:.4f} | {diff} | {entry['eval_f1']:.4f} | {seconds} |")
    for option, entry in results.get("after", {}).items():
        seeds = entry["per_seed"]
        if option == "calibrate":
            before = sum(s["details"]["before"] for s in seeds) / len(seeds)
            crossed = sum(s["details"]["cross_fitted"] for s in seeds) / len(seeds)
            oof = f"{crossed:.4f} cross-fitted ({crossed - before:+.4f})"
        else:
            purity = sum(s["details"]["purity"] for s in seeds) / len(seeds)
            oof = f"- (groups {purity:.3f} pure)"
        gain = entry["eval_f1"] - entry["eval_f1_without"]
        eval_f1 = f"{entry['eval_f1']:.4f} ({gain:+.4f})"
        lines.append(f"| {AFTER[option][0]} | {oof} | - | {eval_f1} | {entry['predict_seconds']:.0f} s to predict |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", help="comma-separated options (default: all), e.g. base,ema,calibrate")
    p.add_argument("--timing", action="store_true", help="only time one epoch of each option, back to back")
    args = p.parse_args(argv)
    wanted = set(args.only.split(",")) if args.only else set(OPTIONS) | set(AFTER)
    out = ROOT / "benchmarks" / "results" / f"options-{device().replace(' ', '_')}.json"
    results = json.loads(out.read_text()) if out.is_file() else {}
    now = packages()
    changed = {k: (v, now.get(k)) for k, v in results.get("packages", {}).items() if now.get(k) != v}
    if changed:  # the figures kept from the earlier calls were measured on other packages
        print(f"warning: other packages than the results file's {changed}: measure every option again", flush=True)
    results |= {"device": device(), "config": str(CONFIG.relative_to(ROOT)), "seeds": list(SEEDS), "packages": now}
    trained = results.setdefault("trained", {})
    if args.timing:
        for option in [o for o in OPTIONS if o in wanted]:
            trained[option]["epoch_seconds"] = timing(option)
            out.write_text(json.dumps(results, indent=2))
        print(table(results))
        return 0
    options = [o for o in OPTIONS if o in wanted]
    runs = {(o, s): train(o, s) for s in SEEDS for o in options}  # every option's first seed, then the second
    for option in options:
        per_seed = [runs[option, s] for s in SEEDS]
        entry = {
            "what": OPTIONS[option][0],
            "settings": OPTIONS[option][1],
            "per_seed": per_seed,
            "train_seconds": round(sum(s["train_seconds"] for s in per_seed) / len(SEEDS), 1),
            "eval_f1": sum(s["eval_f1"] for s in per_seed) / len(SEEDS),
        }
        trained[option] = kept(trained.get(option, {}), entry)
        out.write_text(json.dumps(results, indent=2))
    for option in [o for o in OPTIONS if o in wanted and o != "base"]:
        trained[option] |= compared(option)
        trained["base"]["oof_f1"] = trained[option]["oof"]["f1"]["base"]
        out.write_text(json.dumps(results, indent=2))
    if "base" in options and not any(o in options for o in OPTIONS if o != "base"):
        trained["base"]["oof_f1"] = reference_f1()  # no comparison made it this time
        out.write_text(json.dumps(results, indent=2))
    done_after = results.setdefault("after", {})
    for option in [o for o in AFTER if o in wanted]:
        per_seed = [after(option, s) for s in SEEDS]
        done_after[option] = {
            "what": AFTER[option][0],
            "per_seed": per_seed,
            "eval_f1": sum(s["eval_f1"] for s in per_seed) / len(SEEDS),
            "eval_f1_without": sum(s["eval_f1_without"] for s in per_seed) / len(SEEDS),
            "predict_seconds": sum(s["predict_seconds"] for s in per_seed) / len(SEEDS),
        }
        out.write_text(json.dumps(results, indent=2))
    print(table(results))
    print(f"results: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
