"""The CUDA tests' outcome for ``benchmarks/gpu_check.py``: ``python -m pytest -m cuda`` in a subprocess, its
junit XML read back into counts (passed, failed, errors, skipped), the skip reasons and the failed tests' names.

On a machine without CUDA the tests are collected and skipped, each with its reason; pytest's exit code 5
("no tests collected") is reported as the outcome ``none collected``, not as a failure.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

NONE_COLLECTED = 5  # pytest's exit code when no test matched


def start(paths: list[str], junit: Path, log: Path, cwd: Path) -> subprocess.Popen:
    """Start ``python -m pytest -m cuda -q`` on ``paths``, writing ``junit`` and the console to ``log``."""
    command = [sys.executable, "-m", "pytest", "-m", "cuda", "-q", "-rs", "-p", "no:cacheprovider"]
    command += [f"--junitxml={junit}", *paths]
    env = {**os.environ, "WANDB_MODE": "disabled"}
    with log.open("w") as out:
        return subprocess.Popen(command, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, env=env)


def finish(process: subprocess.Popen, junit: Path, log: Path, started: float, timeout: float) -> dict:
    """Wait up to ``timeout`` seconds for ``process`` (killed after that), then its summary."""
    try:
        code = process.wait(timeout=max(1.0, timeout))
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        code = None
    waited = round(time.perf_counter() - started, 1)
    summary = {"command": "python " + " ".join(process.args[1:]), "exit_code": code, "seconds": waited}
    summary.update(read_junit(junit))  # its "seconds": pytest's own time, when it wrote one
    if code is None:
        summary["outcome"] = f"timed out after {timeout:.0f} s"
    elif code == NONE_COLLECTED:
        summary["outcome"] = "none collected"
    elif code == 0:
        summary["outcome"] = "passed" if summary.get("passed") else "all skipped"
    else:
        summary["outcome"] = "failed"
    if code not in (0, NONE_COLLECTED):
        summary["log_tail"] = log.read_text(errors="replace")[-3000:]
    return summary


def read_junit(path: Path) -> dict:
    """Counts, skip reasons and failed test names from a pytest junit XML (zeros when there is none)."""
    counts = {"collected": 0, "passed": 0, "failed": 0, "errors": 0, "skipped": 0}
    if not path.is_file():
        return {**counts, "skip_reasons": {}, "failures": []}
    reasons: Counter[str] = Counter()
    failures = []
    root = ET.parse(path).getroot()
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    timed = {"seconds": round(float(suite.get("time", 0)), 1)} if suite is not None else {}
    for case in root.iter("testcase"):
        name = f"{case.get('classname', '')}::{case.get('name', '')}"
        counts["collected"] += 1
        if (skipped := case.find("skipped")) is not None:
            counts["skipped"] += 1
            reasons[skipped.get("message", "")] += 1
        elif case.find("failure") is not None:
            counts["failed"] += 1
            failures.append(name)
        elif case.find("error") is not None:
            counts["errors"] += 1
            failures.append(name)
        else:
            counts["passed"] += 1
    return {**counts, **timed, "skip_reasons": dict(reasons), "failures": failures}
