"""The one script a machine with a GPU runs: environment, the CUDA tests, the speed benchmark and a short run of
the seed recipe, into one JSON (``<out>/gpu_check.json``, rewritten after every section).

    python benchmarks/gpu_check.py --out DIR              # on the GPU machine: about 8 minutes on an H100
    python benchmarks/gpu_check.py --out DIR --rehearse   # the same, end to end, on CPU at toy sizes (< 3 min)

Each section runs inside a time box and within the whole check's budget; a section that fails, overruns or finds
no time left records why and the others still run. See docs/gpu-check.md for every key of the JSON.
"""

from __future__ import annotations

import argparse
import copy
import gc
import json
import os
import platform
import shutil
import signal
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import asdict
from importlib import metadata
from pathlib import Path

import cuda_tests
import pytorch_lightning as pl
import timm
import torch
from gpu_check_runs import DEFAULT_VARIANT, VARIANTS, Sizes, e2e, model_only, naive, predict, seed_run
from loader_stages import ratio, stage_rates, targets
from speed import host_gib, measured, project_loader
from speed_baselines import loader_rate, naive_loader

from configs.config import load_config
from datamodules.cache import usable_cpus
from datamodules.datamodule import loader_workers
from datamodules.prepare import prepare
from synthetic import generate

ROOT = Path(__file__).resolve().parents[1]
RESULT = "gpu_check.json"
MIN_BOX_S = 5  # a section with less time than this left in the budget is skipped


class TimeBoxExpired(Exception):
    """A section ran past its time box."""


@contextmanager
def time_box(seconds: float):
    """Raise :class:`TimeBoxExpired` in the main thread once ``seconds`` have passed."""

    def expire(signum, frame):
        raise TimeBoxExpired(f"timed out after {seconds:.0f} s (its time box)")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _boxed(box_s: float, fn, *args, **kwargs):
    """``fn(*args, **kwargs)``, stopped by :class:`TimeBoxExpired` after ``box_s`` seconds."""
    with time_box(box_s):
        return fn(*args, **kwargs)


class Check:
    """The JSON being built: sections stored under their key path, the file rewritten after each."""

    def __init__(self, path: Path, budget_s: float):
        self.path = path
        self.start = time.perf_counter()
        self.budget_s = budget_s
        self.data: dict = {}

    def left(self) -> float:
        return self.budget_s - (time.perf_counter() - self.start)

    def put(self, keys: tuple[str, ...], value) -> None:
        node = self.data
        for key in keys[:-1]:
            node = node.setdefault(key, {})
        node[keys[-1]] = value
        self.save()

    def section(self, keys: tuple[str, ...], box_s: float, fn, *args, **kwargs):
        """Run ``fn`` within ``box_s`` seconds (and the budget left); store its dict, or its error, at ``keys``."""
        name = ".".join(keys)
        box = min(box_s, self.left())
        if box < MIN_BOX_S:
            value = {"skipped": f"no time left in the check's budget of {self.budget_s:.0f} s"}
            self.put(keys, value)
            return value
        print(f"--- {name} (time box {box:.0f} s)", flush=True)
        value = measured(_boxed, box, fn, *args, **kwargs)
        gc.collect()  # a failed section's model and batches: not into the next one's memory
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        self.put(keys, value)
        print(json.dumps(value), flush=True)
        return value

    def save(self) -> None:
        self.data.setdefault("check", {})["elapsed_seconds"] = round(time.perf_counter() - self.start, 1)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=2, default=str))
        tmp.replace(self.path)


def _version(module: str) -> str | None:
    """A package's version (None when it is missing): its own ``__version__``, else its installed metadata."""
    try:
        found = __import__(module)
    except ImportError:
        return None
    try:
        return getattr(found, "__version__", None) or metadata.version(module)
    except metadata.PackageNotFoundError:  # on the path without its metadata (the GPU machine's copies)
        return "unknown"


def _shm_gib() -> float | None:
    try:
        return round(shutil.disk_usage("/dev/shm").total / 2**30, 1)
    except OSError:
        return None


def environment() -> dict:
    """The device, the versions that matter for speed and correctness, and the cores."""
    cuda = torch.cuda.is_available()
    return {
        "device": torch.cuda.get_device_name(0) if cuda else "cpu",
        "python": platform.python_version(),
        "torch": torch.__version__,
        "pytorch_lightning": pl.__version__,
        "timm": timm.__version__,
        "cuda": torch.version.cuda if cuda else None,
        "cudnn": torch.backends.cudnn.version() if cuda else None,
        # what fp32 means on the card: TF32 matrix products and convolutions, or true fp32
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
        "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
        "albumentations": _version("albumentations"),
        "madgrad": _version("madgrad"),
        "cpu_count": os.cpu_count(),
        "usable_cpus": usable_cpus(),
        "shm_gib": _shm_gib(),  # DataLoader workers hand batches over in /dev/shm: a small one breaks them
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help=f"folder for {RESULT} and the CUDA tests' logs")
    p.add_argument("--rehearse", action="store_true", help="toy sizes on CPU: the same sections and keys")
    p.add_argument("--tiny", action="store_true", help=argparse.SUPPRESS)  # still smaller: the test's run
    p.add_argument("--work", help="data, caches and runs of the check, kept (default: a temporary folder, removed)")
    p.add_argument("--budget-s", type=float, help="the whole check's time budget (default: the sizes')")
    p.add_argument("--cuda-tests", nargs="*", default=["tests"], help="test paths for pytest -m cuda")
    p.add_argument("--skip", default="", help="comma-separated sections to leave out")
    return p.parse_args(argv)


def configure(sizes: Sizes, work: Path):
    """The benchmark's config: the seed recipe at ``sizes``, from scratch, no W&B, runs and caches in ``work``."""
    settings = [f"data.dir={work / 'data'}", f"data.cache_dir={work / 'cache'}", *sizes.settings()]
    cfg = load_config("age", [], settings)
    cfg.data.default_dir = cfg.data.dir
    cfg.runs_dir = str(work / "runs")
    cfg.wandb.mode = "disabled"
    cfg.trainer.progress_bar = False
    cfg.trainer.max_epochs = 1
    return cfg


def make_data(cfg, sizes: Sizes, prepared: list) -> dict:
    """The synthetic set (``python -m synthetic``'s generator), then the check of its images, the folds and the
    training cache (``prepare``), appended to ``prepared``."""
    start = time.perf_counter()
    generate(
        Path(cfg.data.dir),
        people=sizes.people,
        eval_people=sizes.eval_people,
        size=sizes.image,
        seed=0,
        workers=usable_cpus(),
        progress=False,
        overwrite=True,
    )
    generated = time.perf_counter() - start
    data = prepare(cfg, progress=False)
    prepared.append(data)
    return {
        "generation_seconds": round(generated, 1),
        "prepare_with_train_cache_seconds": round(time.perf_counter() - start - generated, 1),
        "train_images": len(data.images),
        "people": sizes.people,
        "eval_people": sizes.eval_people,
        "image_size": list(sizes.image),
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ["WANDB_MODE"] = "disabled"  # no network on the GPU machine
    mode = "tiny" if args.tiny else "rehearse" if args.rehearse else "gpu"
    sizes = Sizes.preset(mode)
    if args.budget_s:
        sizes.with_budget(args.budget_s)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="gpu-check-"))
    try:
        return run_check(args, mode, sizes, out, work)
    finally:
        if not args.work:  # gigabytes of data, caches and checkpoints
            shutil.rmtree(work, ignore_errors=True)


def run_check(args: argparse.Namespace, mode: str, sizes: Sizes, out: Path, work: Path) -> int:
    """Every section, into ``<out>/gpu_check.json``."""
    skip = set(filter(None, args.skip.split(",")))
    check = Check(out / RESULT, sizes.budget_s)
    cuda = torch.cuda.is_available()
    check.put(("check",), {"mode": mode, "budget_seconds": check.budget_s, "finished": False})
    check.put(("environment",), environment())
    torch.backends.cudnn.benchmark = True
    if mode != "gpu":  # toy models: one thread is the fastest, the more so on a busy machine
        torch.set_num_threads(1)
    cfg = configure(sizes, work)
    check.put(("settings",), {**asdict(sizes), "workers": loader_workers(cfg), "variants": list(VARIANTS)})

    tests_started = time.perf_counter()
    junit, log = out / "cuda_tests.xml", out / "cuda_tests.log"
    tests = None if "cuda_tests" in skip else cuda_tests.start(args.cuda_tests, junit, log, ROOT)

    def join_tests() -> None:
        if tests is not None and "cuda_tests" not in check.data:
            box_left = sizes.box("cuda_tests") - (time.perf_counter() - tests_started)
            wait = max(1.0, min(box_left, check.left()))
            check.put(("cuda_tests",), cuda_tests.finish(tests, junit, log, tests_started, wait))

    made = []
    check.section(("data",), sizes.box("data"), make_data, cfg, sizes, made)
    prepared = made[0] if made else None
    if cuda:  # no timing while the tests use the GPU; on CPU (rehearsal) they run alongside, to save time
        join_tests()
    if prepared is not None:
        run_sections(check, cfg, sizes, prepared, work, skip)
    join_tests()
    fill_missing(check, "no data to run on: see data" if prepared is None else "left out by --skip")
    cached = prepared is not None and prepared.train_cache is not None
    loader = check.data.get("loader_stages")
    trained = check.data.get("train", {})
    by_variant = {v: targets(trained, loader, v, cached) for v in VARIANTS}
    seed_way = ratio(trained.get(DEFAULT_VARIANT, {}).get("end_to_end"), trained.get("fp32", {}).get("naive"))
    check.put(("targets",), {"default_variant": DEFAULT_VARIANT, "e2e_vs_seed_pipeline": seed_way, **by_variant})
    check.data["check"].update(finished=True, **host_gib())
    check.save()
    print(json.dumps({"targets": by_variant[DEFAULT_VARIANT], "file": str(check.path)}, indent=1))
    return 0


def run_sections(check: Check, cfg, sizes: Sizes, prepared, work: Path, skip: set[str]) -> None:
    """The timed sections, the most wanted first, so that a short budget drops the least wanted."""
    mean, std = prepared.mean, prepared.std
    files = [str(f) for f in prepared.images["file"]]
    workers = loader_workers(cfg)
    box = sizes.box
    compiled = [v for v in VARIANTS if VARIANTS[v].compile]
    plain = [v for v in VARIANTS if not VARIANTS[v].compile]
    if "model_only" not in skip:
        for v in plain:
            check.section(("train", v, "model_only"), box("model_only"), model_only, cfg, mean, std, VARIANTS[v], sizes)
    if "loader" not in skip:
        check.section(("loader_stages",), box("loader"), loader_section, cfg, files, prepared, workers, sizes)
    if "e2e" not in skip:
        check.section(("train", DEFAULT_VARIANT, "end_to_end"), box("e2e"), e2e, cfg, VARIANTS[DEFAULT_VARIANT], sizes)
    if "naive" not in skip:
        for v in plain:
            check.section(("train", v, "naive"), box("naive"), naive, files, cfg, mean, std, VARIANTS[v], sizes)
    if "predict" not in skip:
        check.section(("predict",), box("predict"), predict, cfg, mean, std, VARIANTS[DEFAULT_VARIANT], sizes)
    if "e2e" not in skip:
        for v in plain:
            if v != DEFAULT_VARIANT:
                check.section(("train", v, "end_to_end"), box("e2e"), e2e, cfg, VARIANTS[v], sizes)
    if "seed_run" not in skip:
        check.section(("seed_run",), box("seed_run"), seed_run, cfg, sizes, work)
    for v in compiled:  # last: compiling costs a minute or more
        not_run = "not measured: compiling costs a minute or more; the naive loader's rate is the uncompiled rows'"
        check.put(("train", v, "naive"), {"skipped": not_run})
        if "model_only" not in skip:
            check.section(("train", v, "model_only"), box("compile"), model_only, cfg, mean, std, VARIANTS[v], sizes)
        if "e2e" not in skip:
            check.section(("train", v, "end_to_end"), box("compile"), e2e, cfg, VARIANTS[v], sizes)


def fill_missing(check: Check, why: str) -> None:
    """Every section's key, also of the sections that did not run: the JSON's keys are the same in every run."""
    keys = [("train", v, kind) for v in VARIANTS for kind in ("model_only", "end_to_end", "naive")]
    keys += [("loader_stages",), ("predict",), ("seed_run",), ("cuda_tests",)]
    for path in keys:
        node = check.data
        for key in path:
            node = node.get(key) if isinstance(node, dict) else None
        if node is None:
            check.put(path, {"skipped": why})


def loader_section(cfg, files: list[str], prepared, workers: int, sizes: Sizes) -> dict:
    """Each stage of the training loader timed alone, then the project's whole loader (with the copy to the
    device) as it feeds training, and the naive PIL loader alone."""
    result = stage_rates(cfg, files[: sizes.stage_images], prepared.train_cache, workers, sizes.stage_seconds)
    result["project_loader"] = project_loader(copy.deepcopy(cfg), sizes.loader_warmup, sizes.loader_batches)
    loader = naive_loader(files, cfg, prepared.mean, prepared.std, max(1, workers))
    rate = loader_rate(loader, sizes.loader_warmup, sizes.loader_batches)
    result["naive_loader"] = {"img_per_s": rate, "workers": max(1, workers)}
    return result


if __name__ == "__main__":
    sys.exit(main())
