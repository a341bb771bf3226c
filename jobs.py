"""Run (task, fold) training jobs side by side, one per GPU.

    python jobs.py --gpus 0,1,2,3 -- --task all --fold all --config configs/my.yaml

Each job is ``python train.py --task T --fold F <the other train.py options>`` in its own process, seeing
only its GPU (``CUDA_VISIBLE_DEVICES``); the next job starts as soon as a GPU frees. The jobs side by side share
the machine's cores: each is told how many run at once (``--set trainer.parallel_jobs=N``), so that its automatic
loader workers (``loader.num_workers=-1``) are its share of the cores, not all of them. Each job's output goes
to ``<log dir>/<task>-fold<F>.log`` (default ``runs/<exp>/logs/``). Ctrl-C or SIGTERM stops the running
jobs with SIGTERM (they save ``last.ckpt``; ``--resume`` continues them) and exits non-zero.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from core.errors import ConfigError, RunError
from rundir.layout import job_name

ROOT = Path(__file__).resolve().parent
TRAIN = ROOT / "train.py"
# train.py options that choose the jobs or act once for all of them: not passed on to each job
JOB_OPTIONS = ("--task", "--fold", "--gpus")  # with a value
JOB_FLAGS = ("--predict", "--prepare-only")
GRACE_S = 120.0  # how long stopped jobs get to save a checkpoint before they are killed
POLL_S = 0.1


@dataclass
class JobResult:
    """One finished (or stopped) job: where it ran, how long, its exit code and its log."""

    task: str
    fold: str
    gpu: str
    seconds: float
    returncode: int
    log: Path

    @property
    def name(self) -> str:
        return job_name(self.task, self.fold)

    @property
    def ok(self) -> bool:
        return self.returncode == 0


@dataclass
class _Running:
    task: str
    fold: str
    gpu: str
    proc: subprocess.Popen
    log: Path
    start: float


def strip_job_args(argv: list[str]) -> list[str]:
    """``argv`` of train.py without the options that pick jobs or act once (--task, --fold, --gpus with their
    values, as ``--fold 2`` or ``--fold=2``; --predict, --prepare-only): the options every job shares."""
    out: list[str] = []
    skip_value = False
    for item in argv:
        if skip_value:
            skip_value = False
            continue
        if item in JOB_OPTIONS:
            skip_value = True
        elif item in JOB_FLAGS or item.partition("=")[0] in JOB_OPTIONS:
            continue
        else:
            out.append(item)
    return out


def parallel_jobs_args(parallel: int) -> list[str]:
    """The train.py options that tell a job how many run side by side (none for one: it has the machine)."""
    return ["--set", f"trainer.parallel_jobs={parallel}"] if parallel > 1 else []


def parse_gpus(text: str) -> list[str]:
    """``--gpus 0,1`` -> ``["0", "1"]``, checked before any work: a ConfigError naming the GPUs asked for when
    this machine has no CUDA GPU (the jobs would train on the CPU, one per "GPU"), or fewer than asked for."""
    import torch  # only here: the runner itself needs no torch

    gpus = [g.strip() for g in text.split(",") if g.strip()]
    if not gpus:
        raise ConfigError(f"--gpus: expected GPU ids like 0,1, got {text!r}")
    count = torch.cuda.device_count()
    if count == 0:
        raise ConfigError(
            f"--gpus {text}: asked for GPU(s) {', '.join(gpus)}, but no CUDA GPU is visible on this machine "
            "(torch.cuda.device_count() is 0): leave out --gpus to train the jobs one after another"
        )
    missing = [g for g in gpus if g.isdigit() and int(g) >= count and "CUDA_VISIBLE_DEVICES" not in os.environ]
    if missing:
        raise ConfigError(
            f"--gpus {text}: GPU(s) {', '.join(missing)} do not exist; this machine has {count} (0..{count - 1})"
        )
    return gpus


class _Signals:
    """SIGINT and SIGTERM counted instead of raised while jobs run (so no child is left untracked)."""

    def __init__(self) -> None:
        self.received: list[int] = []
        self._old: dict[int, object] = {}

    def __enter__(self) -> _Signals:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, lambda signum, frame: self.received.append(signum))
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._old.items():
            signal.signal(sig, handler)


def _last_line(path: Path) -> str:
    """The log's last non-empty line, on a line of its own, to show what went wrong."""
    try:
        lines = [line.strip() for line in path.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return ""
    return f"\n    {lines[-1][:200]}" if lines else ""


def summary_table(results: list[JobResult]) -> str:
    """The jobs as a table: job, gpu, seconds, exit code, log file."""
    rows = [("job", "gpu", "seconds", "exit code", "log")]
    rows += [(r.name, r.gpu, f"{r.seconds:.0f}", str(r.returncode), str(r.log)) for r in results]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows)


def run_jobs(
    jobs: list[tuple[str, str]],
    gpus: list[str],
    passthrough: list[str],
    log_dir: Path,
    python: str = sys.executable,
    *,
    program: str | Path = TRAIN,
    progress: bool = True,
    grace_s: float = GRACE_S,
) -> dict[tuple[str, str], JobResult]:
    """Run each ``(task, fold)`` job as ``python program --task T --fold F *passthrough``, at most one per GPU
    at a time, the next one starting as soon as a GPU frees. Return the results by job; print a summary
    table; raise :class:`RunError` naming the failed jobs and their logs once all have ended. Ctrl-C or
    SIGTERM sends SIGTERM to the running jobs, waits up to ``grace_s`` (a second signal: no wait) for them
    to save a checkpoint, kills what is left, and exits with 128 + the signal's number."""
    from tqdm import tqdm

    jobs = [(str(task), str(fold)) for task, fold in jobs]
    gpus = [str(g).strip() for g in gpus]
    if not gpus or any(not g for g in gpus):
        raise ConfigError(f"--gpus: expected GPU ids like 0,1, got {','.join(gpus)!r}")
    for items, what in ((gpus, "GPU"), ([job_name(*j) for j in jobs], "job")):
        twice = sorted({x for x in items if items.count(x) > 1})
        if twice:
            raise ConfigError(f"{what} listed more than once: {', '.join(twice)}")
    log_dir = Path(log_dir)
    log_dir.mkdir(parents=True, exist_ok=True)

    pending = deque(jobs)
    free = list(gpus)
    running: list[_Running] = []
    results: dict[tuple[str, str], JobResult] = {}
    bar = tqdm(total=len(jobs), desc="jobs", unit="job", dynamic_ncols=True, disable=not progress, file=sys.stderr)

    def note(text: str) -> None:
        bar.write(text, file=sys.stderr)

    def show() -> None:
        failed = sum(not r.ok for r in results.values())
        now = ", ".join(f"{job_name(r.task, r.fold)}@{r.gpu}" for r in running)
        bar.set_postfix_str(f"failed {failed}" + (f"; running {now}" if now else ""), refresh=True)

    share = parallel_jobs_args(min(len(gpus), len(jobs)))

    def start(task: str, fold: str, gpu: str) -> None:
        log = log_dir / f"{job_name(task, fold)}.log"
        cmd = [python, str(program), "--task", task, "--fold", fold, *passthrough, *share]
        env = {**os.environ, "CUDA_VISIBLE_DEVICES": gpu, "PYTHONUNBUFFERED": "1"}
        with open(log, "wb") as out:
            out.write(f"# CUDA_VISIBLE_DEVICES={gpu} {subprocess.list2cmdline(cmd)}\n".encode())
            out.flush()
            # own session: a terminal's Ctrl-C reaches only this runner, which stops the jobs with SIGTERM
            proc = subprocess.Popen(
                cmd, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        running.append(_Running(task, fold, gpu, proc, log, time.monotonic()))
        note(f"{job_name(task, fold)}: started on GPU {gpu}, log {log}")

    def reap() -> None:
        for job in [j for j in running if j.proc.poll() is not None]:
            running.remove(job)
            free.append(job.gpu)
            result = JobResult(job.task, job.fold, job.gpu, time.monotonic() - job.start, job.proc.returncode, job.log)
            results[(job.task, job.fold)] = result
            bar.update(1)
            state = "done" if result.ok else f"FAILED (exit code {result.returncode})"
            note(f"{result.name}: {state} on GPU {result.gpu} after {result.seconds:.0f} s")

    def stop(signals: _Signals) -> None:
        """Send SIGTERM to every running job; kill those still running after the grace period."""
        note(f"stopping {len(running)} running job(s) (SIGTERM); they save a checkpoint for --resume")
        for job in running:
            _signal(job.proc, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        while running and time.monotonic() < deadline and len(signals.received) < 2:
            reap()
            time.sleep(POLL_S)
        for job in running:
            note(f"{job_name(job.task, job.fold)}: killed")
            _signal(job.proc, signal.SIGKILL, group=True)
        for job in running:
            job.proc.wait()
        reap()

    with _Signals() as signals:
        try:
            show()
            while pending or running:
                while pending and free and not signals.received:
                    start(*pending.popleft(), free.pop(0))
                    show()
                if signals.received:
                    stop(signals)
                    break
                time.sleep(POLL_S)
                before = len(results)
                reap()
                if len(results) != before:
                    show()
        except BaseException:
            for job in running:  # never leave a job behind
                _signal(job.proc, signal.SIGKILL, group=True)
            raise
        finally:
            bar.close()

    ordered = [results[job] for job in jobs if job in results]
    if ordered:
        print(summary_table(ordered), flush=True)
    if signals.received:
        sig = signals.received[0]
        not_started = [job_name(*job) for job in jobs if job not in results]
        print(f"interrupted by {signal.Signals(sig).name}", file=sys.stderr)
        if not_started:
            print(f"not started: {', '.join(not_started)}", file=sys.stderr)
        raise SystemExit(128 + sig)
    failed = [r for r in ordered if not r.ok]
    if failed:
        lines = [f"{r.name} (exit code {r.returncode}): {r.log}{_last_line(r.log)}" for r in failed]
        raise RunError(f"{len(failed)} of {len(ordered)} jobs failed; see their logs:\n  " + "\n  ".join(lines))
    return results


def _signal(proc: subprocess.Popen, sig: int, group: bool = False) -> None:
    """Send ``sig`` to the job (``group``: to its whole process group: data loader workers too)."""
    if proc.poll() is not None:
        return
    try:
        if group and hasattr(os, "killpg"):
            os.killpg(proc.pid, sig)
        else:
            proc.send_signal(sig)
    except ProcessLookupError:
        pass


def main(argv: list[str] | None = None) -> int:
    """``python jobs.py --gpus 0,1 -- <train.py options>``: the same as ``train.py <options> --gpus 0,1``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    own, train_argv = (argv[: argv.index("--")], argv[argv.index("--") + 1 :]) if "--" in argv else (argv, [])
    parser = argparse.ArgumentParser(description=__doc__, usage="python jobs.py --gpus 0,1 -- [train.py options]")
    parser.add_argument("--gpus", required=True, help="GPU ids, comma-separated: one job at a time on each")
    opts = parser.parse_args(own)
    # train.py itself, in this process's place: it imports this runner, so this module must not import it
    os.execv(sys.executable, [sys.executable, str(TRAIN), *train_argv, "--gpus", opts.gpus])


if __name__ == "__main__":
    sys.exit(main())
