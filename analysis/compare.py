"""Paired comparison of experiments (``python -m analysis compare --exp A --exp B``): each one's out-of-fold
18-class macro F1, each task's macro F1 and each class's F1, and every later experiment's difference to the
first (the reference) with a 95% interval from a bootstrap over people. One resample of people serves every
experiment (paired), so the interval measures how much the models differ, not how lucky the data set's people
are: two models that differ on a few images get a narrow interval, however noisy each one's own score is.

An experiment may be a group of replicates (``--exp base-s0,base-s1``: one recipe, several seeds), scored as
the mean of its runs' scores, every resample applying the same people to every run. Every run must hold the
same images, in the same folds, with the same labels; anything else is refused, since the difference would
then measure the data rather than the models.

Scores are at the models' own labels (the ``oof.csv`` label column), the three tasks merged per image as
:func:`analysis.scoring.score_frames` merges them. The bootstrap is one matrix product per chunk of resamples:
each person's counts (per class: right answers, and true plus predicted images, which is all F1 needs) times
the resamples' counts of each person."""

from __future__ import annotations

import argparse
import time
from collections.abc import Iterator, Sequence
from functools import reduce
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.compare_report import format_report, plot_forest
from analysis.scoring import oof_age_cuts, per_image, read_oof
from core.atomic import atomic_path, place_problem
from core.errors import ConfigError, DataError, run_cli
from core.tasks import HEAD_SIZES, NUM_CLASSES, TASK_NAMES, class18, class_name
from lightning_modules.ensemble import combine_heads
from rundir.layout import COMPARE, COMPARE_CSV, COMPARE_PNG, KEY, NAMED_FOLDS, exp_dir, safe_folder

COMMAND = "python -m analysis compare"
LEVEL = 0.95  # the interval's coverage
CHUNK = 500  # resamples per matrix product: bounds the memory (CHUNK x people) whatever --boot is
COLUMNS = ["metric", "experiment", "value", "difference", "low", "high", "verdict"]
SAME = "no detectable difference"
REFERENCE = "reference"
# the families of classes scored: (truth column, prediction column, classes); the 18 classes first
FAMILIES = [("label", "pred", NUM_CLASSES)] + [(t, f"pred_{t}", k) for t, k in zip(TASK_NAMES, HEAD_SIZES, strict=True)]
CLASSES = sum(k for _, _, k in FAMILIES)  # 26: the columns of a person's counts, right answers then seen
METRICS = ["f1", *(f"task_f1/{t}" for t in TASK_NAMES), *(f"class_f1/{class_name(c)}" for c in range(NUM_CLASSES))]
HEADLINE = 1 + len(TASK_NAMES)  # the 18-class and per-task metrics, before the per-class ones


# ------------------------------------------------------------------------------------ groups, folds, names


def parse_groups(values: Sequence[str | Sequence[str]]) -> dict[str, list[str]]:
    """``["A", "b-s0,b-s1"]`` -> ``{"A": ["A"], "b-s0+b-s1": ["b-s0", "b-s1"]}``: each ``--exp`` value is a
    group of runs (a comma list, or a list), named by its runs joined with ``+``; the first is the reference."""
    groups: dict[str, list[str]] = {}
    for value in values:
        runs = [r.strip() for r in (value.split(",") if isinstance(value, str) else value) if r.strip()]
        if not runs:
            raise DataError(f"--exp {value!r} names no experiment")
        if len(set(runs)) < len(runs):
            raise DataError(f"--exp {value!r} names an experiment twice: name each run of a group once")
        name = "+".join(runs)
        if name in groups:
            raise DataError(f"--exp {name} is given twice: name each experiment (or group) once")
        groups[name] = runs
    if len(groups) < 2:
        found = ", ".join(groups) or "none"
        raise DataError(f"a comparison needs at least two experiments (--exp A --exp B), got {len(groups)}: {found}")
    return groups


def parse_folds(text: str | None) -> list[str] | None:
    """``--folds 0,1,full`` -> ``["0", "1", "full"]``; not given -> None (the k-fold runs)."""
    if text is None:
        return None
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names or any(not (name.isdigit() or name in NAMED_FOLDS) for name in names):
        raise ConfigError(
            f"--folds {text!r}: expected comma-separated fold names, each a number (0..k-1), holdout or full, "
            "e.g. --folds 0,1,2"
        )
    return list(dict.fromkeys(names))


def folder_name(names: Sequence[str]) -> str:
    """``A_vs_B``: the groups' names, joined, made safe for a file name (a long one shortened with a hash)."""
    return safe_folder("_vs_".join(names), COMPARE)


def default_out(runs_dir: str | Path, names: Sequence[str]) -> Path:
    """``<runs_dir>/compare/<A>_vs_<B>[_vs_<C>]``."""
    return Path(runs_dir) / COMPARE / folder_name(names)


# ------------------------------------------------------------------------------------ reading and checking


def merge_tasks(frames: dict[str, pd.DataFrame], where: str = "the experiment") -> pd.DataFrame:
    """The three tasks' OOF rows (``task -> frame``, as :func:`analysis.scoring.read_oof` gives them) merged per
    image as :func:`analysis.scoring.score_frames` merges them: one row per image (index
    person, stem; sorted) with its fold, each task's label (``mask`` ...) and argmax (``pred_mask`` ...), and
    the 18-class label and answer (``label``, ``pred``: ``lightning_modules.ensemble.combine_heads``)."""
    merged = per_image(frames, where)
    out = pd.DataFrame(index=merged.index)
    out["fold"] = merged.folds.astype(str)
    for t in TASK_NAMES:
        out[t] = merged.labels[t]
        out[f"pred_{t}"] = merged.probs[t].argmax(1)
    out["label"] = class18(*(merged.labels[t] for t in TASK_NAMES))
    out["pred"] = combine_heads(*(merged.probs[t] for t in TASK_NAMES))[1]
    return out.sort_index()


def read_run(runs_dir: str | Path, exp: str, folds: list[str] | None = None) -> pd.DataFrame:
    """One experiment's out-of-fold predictions of ``folds`` merged per image (see :func:`merge_tasks`); an
    error when its directory does not exist."""
    where = exp_dir(runs_dir, exp)
    if not where.is_dir():
        there = sorted(d.name for d in Path(runs_dir).glob("*") if d.is_dir() and d.name != COMPARE)
        listing = f"; experiments there: {', '.join(there[:12])}{' ...' if len(there) > 12 else ''}" if there else ""
        raise DataError(f"experiment {exp}: no directory {where} (--runs-dir {runs_dir}){listing}")
    return merge_tasks(read_oof(where, folds), str(where))


def _image(key: tuple) -> str:
    return "/".join(str(k) for k in key)


def _same_images(a: str, ra: pd.DataFrame, b: str, rb: pd.DataFrame) -> None:
    only = {a: ra.index.difference(rb.index), b: rb.index.difference(ra.index)}
    if any(len(keys) for keys in only.values()):
        said = "; ".join(f"{len(k)} only in {who} (e.g. {_image(k[0])})" for who, k in only.items() if len(k))
        raise DataError(
            f"experiments {a} and {b} hold different images (person, stem): {said}. A paired comparison needs the "
            f"same images: compare experiments trained on the same data and folds, or pass --folds naming folds "
            f"both have"
        )


def _same_folds(a: str, ra: pd.DataFrame, b: str, rb: pd.DataFrame) -> None:
    differ = ra["fold"].to_numpy() != rb.loc[ra.index, "fold"].to_numpy()
    if differ.any():
        people = ra.index[differ].get_level_values(KEY[0]).unique()
        first = ra.index[differ][0]
        raise DataError(
            f"experiments {a} and {b} put {len(people)} people in different folds, e.g. person {first[0]} (fold "
            f"{ra.loc[first, 'fold']} in {a}, fold {rb.loc[first, 'fold']} in {b}): their out-of-fold predictions "
            "come from different splits. Train them on the same folds (the same data.n_folds and a fixed "
            "data.fold_seed, which replicates of other seeds need)"
        )


def _same_labels(a: str, ra: pd.DataFrame, b: str, rb: pd.DataFrame, hint: str = "") -> None:
    other = rb.loc[ra.index]
    differ = {t: ra[t].to_numpy() != other[t].to_numpy() for t in TASK_NAMES}
    anywhere = reduce(np.logical_or, differ.values())
    if anywhere.any():
        counts = ", ".join(f"{t} {int(d.sum())}" for t, d in differ.items() if d.any())
        key = ra.index[anywhere][0]
        task = next(t for t, d in differ.items() if d[int(np.flatnonzero(anywhere)[0])])
        raise DataError(
            f"experiments {a} and {b} label {int(anywhere.sum())} images differently ({counts}), e.g. "
            f"{_image(key)}: {task} {ra.loc[key, task]} in {a}, {other.loc[key, task]} in {b}. They were trained "
            f"on different data or corrections (data.relabel, data.age_cuts){hint}; a comparison needs the same "
            "labels"
        )


def _age_cuts_hint(runs_dir: str | Path, a: str, b: str, folds: list[str] | None) -> str:
    try:
        cuts = {e: oof_age_cuts(exp_dir(runs_dir, e), folds) for e in (a, b)}
    except DataError:
        return ""
    return f": age cuts {list(cuts[a])} in {a}, {list(cuts[b])} in {b}" if cuts[a] != cuts[b] else ""


def check_same_data(runs: dict[str, pd.DataFrame], runs_dir: str | Path = ".", folds: list[str] | None = None):
    """Every run against the first: the same images (person, stem), each person in the same fold, each image
    with the same labels; a :class:`DataError` naming the two experiments and what differs otherwise."""
    (a, ra), *others = runs.items()
    for b, rb in others:
        _same_images(a, ra, b, rb)
        _same_folds(a, ra, b, rb)
        if not ra[list(TASK_NAMES)].equals(rb.loc[ra.index, list(TASK_NAMES)]):
            _same_labels(a, ra, b, rb, _age_cuts_hint(runs_dir, a, b, folds))


# ------------------------------------------------------------------------------------ counts and the bootstrap


def person_counts(images: pd.DataFrame, people: pd.Index) -> np.ndarray:
    """Each person's counts (rows in ``people``' order) per class of each family (the 18 classes, then each
    task's; see ``FAMILIES``): right answers, then true plus predicted images; ``(people, 2 * CLASSES)``."""
    who = people.get_indexer(images.index.get_level_values(KEY[0]))
    n = len(people)
    right, seen = [], []
    for truth_column, pred_column, k in FAMILIES:
        truth, pred = images[truth_column].to_numpy(), images[pred_column].to_numpy()
        at_truth = who * k + truth
        right.append(np.bincount(at_truth, weights=truth == pred, minlength=n * k).reshape(n, k))
        seen.append(
            (np.bincount(at_truth, minlength=n * k) + np.bincount(who * k + pred, minlength=n * k)).reshape(n, k)
        )
    return np.hstack([*right, *seen]).astype(np.float64)


def scores_from_counts(counts: np.ndarray) -> np.ndarray:
    """The metrics (``METRICS``: 18-class macro F1, each task's macro F1, each class's F1) from summed counts
    ``(..., 2 * CLASSES)``: a class's F1 is 2 right / (true + predicted), 0 when it is neither true nor
    predicted (sklearn's ``zero_division=0``)."""
    right, seen = counts[..., :CLASSES], counts[..., CLASSES:]
    f1 = np.divide(2 * right, seen, out=np.zeros_like(right), where=seen > 0)
    parts, start = [], 0
    for _, _, k in FAMILIES:
        parts.append(f1[..., start : start + k])
        start += k
    return np.concatenate([np.stack([p.mean(-1) for p in parts], -1), parts[0]], -1)


def resample_people(n_people: int, boot: int, seed: int) -> Iterator[np.ndarray]:
    """The bootstrap's resamples of people, ``CHUNK`` at a time: ``(resamples, people)`` counts of how often
    each person is drawn (``n_people`` draws with replacement per resample), from one stream seeded by
    ``seed``, so that a rerun draws the same resamples."""
    rng = np.random.default_rng(seed)
    for start in range(0, boot, CHUNK):
        b = min(CHUNK, boot - start)
        draws = rng.integers(n_people, size=(b, n_people)) + np.arange(b)[:, None] * n_people
        yield np.bincount(draws.ravel(), minlength=b * n_people).reshape(b, n_people).astype(np.float64)


def bootstrap_scores(counts: Sequence[np.ndarray], boot: int, seed: int) -> np.ndarray:
    """Every run's metrics in each resample of people, ``(boot, runs, metrics)``, from the runs' per-person
    counts (:func:`person_counts`, the same people in the same order): each resample applies the same people
    to every run (paired), all runs in one matrix product."""
    stacked = np.stack(counts, 1)  # (people, runs, 2 * CLASSES)
    people, runs, width = stacked.shape
    flat = stacked.reshape(people, runs * width)
    out = [scores_from_counts((w @ flat).reshape(-1, runs, width)) for w in resample_people(people, boot, seed)]
    return np.concatenate(out) if out else np.zeros((0, runs, len(METRICS)))


def verdict(low: float, high: float, name: str, reference: str) -> str:
    """``no detectable difference`` when the interval holds 0, else which of the two is better."""
    if low <= 0 <= high:
        return SAME
    return f"{name} better" if low > 0 else f"{reference} better"


def compare_table(groups: dict[str, list[int]], observed: np.ndarray, resampled: np.ndarray) -> pd.DataFrame:
    """One row per metric x group (``COLUMNS``) from the runs' observed metrics ``(runs, metrics)`` and
    resampled ones ``(boot, runs, metrics)``, ``groups`` naming each group's runs by position; a group's score
    is its runs' mean, the first group is the reference."""
    value = {g: observed[idx].mean(0) for g, idx in groups.items()}
    sampled = {g: resampled[:, idx].mean(1) for g, idx in groups.items()}
    (reference, _), *others = groups.items()
    tail = (1 - LEVEL) / 2
    bounds = {g: np.quantile(sampled[g] - sampled[reference], [tail, 1 - tail], axis=0) for g, _ in others}
    rows = []
    for m, metric in enumerate(METRICS):
        rows.append((metric, reference, value[reference][m], np.nan, np.nan, np.nan, REFERENCE))
        for g, _ in others:
            low, high = (float(v) for v in bounds[g][:, m])
            diff = value[g][m] - value[reference][m]
            rows.append((metric, g, value[g][m], diff, low, high, verdict(low, high, g, reference)))
    return pd.DataFrame(rows, columns=COLUMNS)


# ------------------------------------------------------------------------------------ the comparison


def compare_experiments(
    runs_dir: str | Path,
    groups: Sequence[str | Sequence[str]],
    out: str | Path | None = None,
    boot: int = 2000,
    seed: int = 0,
    folds: list[str] | None = None,
    plot: bool = True,
) -> dict:
    """Compare the experiments ``groups`` (each a name, a comma list of replicates or a list; the first is the
    reference) on their out-of-fold predictions of ``folds`` (default: the k-fold runs) under ``runs_dir``;
    write ``compare.csv`` (``COLUMNS``) and, with ``plot``, ``compare.png`` into ``out`` (default
    :func:`default_out`). Returns the table and what it was made from: reference, groups, images, people,
    folds, boot, seed, the interval's level, seconds and the paths written (the report and the plot:
    :mod:`analysis.compare_report`)."""
    if boot < 1:
        raise ConfigError(f"--boot {boot}: the number of resamples must be at least 1 (e.g. 2000)")
    start = time.perf_counter()
    problem = place_problem(out, folder=True) if out is not None else None
    if problem:  # before the runs are read: not after
        raise ConfigError(f"--out {out} {problem}")
    named = parse_groups(groups)
    names = list(dict.fromkeys(r for runs in named.values() for r in runs))
    runs = {name: read_run(runs_dir, name, folds) for name in names}
    check_same_data(runs, runs_dir, folds)
    first = runs[names[0]]
    people = first.index.get_level_values(KEY[0]).unique().sort_values()
    counts = [person_counts(runs[name].loc[first.index], people) for name in names]
    observed = scores_from_counts(np.stack([c.sum(0) for c in counts]))
    resampled = bootstrap_scores(counts, boot, seed)
    table = compare_table({g: [names.index(r) for r in rs] for g, rs in named.items()}, observed, resampled)
    out = Path(out) if out is not None else default_out(runs_dir, list(named))
    result = {
        "reference": next(iter(named)),
        "groups": named,
        "images": len(first),
        "people": len(people),
        "folds": sorted(first["fold"].unique(), key=lambda f: (not f.isdigit(), int(f) if f.isdigit() else 0, f)),
        "boot": boot,
        "seed": seed,
        "level": LEVEL,
        "table": table,
        "csv": out / COMPARE_CSV,
        "png": out / COMPARE_PNG if plot else None,
    }
    with atomic_path(result["csv"]) as tmp:
        table.to_csv(tmp, index=False, float_format="%.6f")
    if plot:
        plot_forest(table, result["png"], result["reference"], boot, LEVEL)
    result["seconds"] = round(time.perf_counter() - start, 2)
    return result


# ------------------------------------------------------------------------------------ the command


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=COMMAND,
        description=__doc__.split("\n\n")[0].replace("``", ""),
        epilog="The verdict is 'no detectable difference' when the interval holds 0, else which one is better.",
    )
    p.add_argument(
        "--exp",
        action="append",
        required=True,
        metavar="EXP[,EXP...]",
        help="an experiment (runs/<exp>/), or a comma list of replicates scored as their mean; give it twice or "
        "more: the first is the reference",
    )
    p.add_argument("--runs-dir", default="runs", help="where the experiments are (default: runs)")
    p.add_argument("--out", help="output folder (default: <runs-dir>/compare/<A>_vs_<B>)")
    p.add_argument("--boot", type=int, default=2000, help="bootstrap resamples of people (default 2000)")
    p.add_argument("--seed", type=int, default=0, help="the bootstrap's seed (default 0)")
    p.add_argument(
        "--folds", help="comma-separated fold names, e.g. 0,1,2 or holdout (default: the k-fold runs 0..k-1)"
    )
    p.add_argument("--debug", action="store_true", help="show tracebacks for data errors")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def work():
        result = compare_experiments(args.runs_dir, args.exp, args.out, args.boot, args.seed, parse_folds(args.folds))
        print(format_report(result), flush=True)

    return run_cli(work, args.debug, rerun="run the same command again")
