"""Multihead against three separate models on the quick preset: same data, folds and epochs.

    python benchmarks/multihead_vs_separate.py [--folds 0] [--epochs 6]

Trains mask, gender and age separately and then ``--task multihead`` (one backbone, three heads), each on
the quick synthetic set with ``configs/quick.yaml``, and writes the out-of-fold 18-class macro F1, accuracy,
per-task F1 and training wall time of each to ``benchmarks/results/multihead-vs-separate-<device>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

import train
from analysis.scoring import score_oof
from rundir.layout import exp_dir

ROOT = Path(__file__).resolve().parent.parent


def device_name() -> str:
    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"cpu-{os.cpu_count()}core"


def run(work: Path, exp: str, task: str, folds: str, epochs: int) -> float:
    argv = ["--config", str(ROOT / "configs" / "quick.yaml"), "--exp", exp, "--task", task, "--fold", folds,
            "--wandb", "disabled", "--set", f"runs_dir={work}", "--set", f"trainer.max_epochs={epochs}",
            "--set", "trainer.progress_bar=false"]  # fmt: skip
    start = time.perf_counter()
    if train.main(argv) != 0:
        raise SystemExit(f"training failed: {argv}")
    return time.perf_counter() - start


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--fold", default="0", help="a fold index or all")
    ap.add_argument("--epochs", type=int, default=6)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="mh-bench-"))
    results = {"device": device_name(), "torch": torch.__version__, "preset": "configs/quick.yaml",
               "fold": args.fold, "epochs": args.epochs}  # fmt: skip
    run(work, "warmup", "mask", args.fold, 1)  # data generation, checks and caches: not in either timing
    for name, task in (("separate", "all"), ("multihead", "multihead")):
        seconds = run(work, name, task, args.fold, args.epochs)
        report = score_oof(exp_dir(work, name))
        results[name] = {
            "train_seconds": round(seconds, 1),
            "oof_images": report["images"],
            "f1_18": round(report["f1"], 4),
            "accuracy_18": round(report["accuracy"], 4),
            "task_f1": report["task_f1"],
        }
        print(name, results[name], flush=True)
    out = ROOT / "benchmarks" / "results" / f"multihead-vs-separate-{results['device'].lower().replace(' ', '-')}.json"
    out.write_text(json.dumps(results, indent=2))
    print(f"written {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
