"""Time the README's main job (quick preset: generate, train mask/gender/age on fold 0, predict) in a
fresh folder and record wall time and scores in ``benchmarks/results/quick-demo-<device>.json``.

    python benchmarks/quick_demo.py [--device-name NAME]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from rundir.layout import OOF_SCORES, SUBMISSION, exp_dir, report_path

ROOT = Path(__file__).resolve().parent.parent
COMMAND = [sys.executable, str(ROOT / "train.py"), "--config", str(ROOT / "configs" / "quick.yaml"), "--fold", "0"]


def device_name() -> str:
    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return f"cpu-{os.cpu_count()}core"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--device-name", default=device_name())
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="quick-demo-"))
    try:
        start = time.perf_counter()
        subprocess.run([*COMMAND, "--predict"], cwd=work, check=True)  # exactly the README command
        wall = time.perf_counter() - start
        exp = exp_dir(work / "runs", "quick")
        oof = json.loads((exp / OOF_SCORES).read_text())
        report = report_path(exp / SUBMISSION)
        result = {
            "what": "README main job: python train.py --config configs/quick.yaml --fold 0 --predict",
            "device": args.device_name,
            "cpu_count": os.cpu_count(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "wall_seconds": round(wall, 1),
            "oof": {k: oof.get(k) for k in ("tta", "images", "f1", "accuracy", "task_f1", "competition")},
            "eval_truth": json.loads(report.read_text()).get("eval") if report.is_file() else None,
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)
    out = ROOT / "benchmarks" / "results" / f"quick-demo-{args.device_name.replace(' ', '_')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
