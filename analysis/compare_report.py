"""The paired comparison's outputs for a reader (:mod:`analysis.compare` makes the table): the printed report
and ``compare.png``, a forest plot of each experiment's differences to the reference with their intervals.
Both read only the comparison's table (one row per metric x experiment, metrics in their order: the 18-class
and per-task ones, then the per-class ones ``class_f1/<class>``) and what it was made from."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from core.atomic import atomic_path

PER_CLASS = "class_f1/"  # the per-class metrics' prefix: printed and plotted below the headline ones


def metrics_of(table: pd.DataFrame) -> tuple[list[str], list[str]]:
    """The table's metrics in order, split into the headline ones (18-class, per task) and the per-class ones."""
    metrics = list(dict.fromkeys(table["metric"]))
    return [m for m in metrics if not m.startswith(PER_CLASS)], [m for m in metrics if m.startswith(PER_CLASS)]


def _signed(v: float) -> str:
    return f"{v:+.4f}"


def format_report(result: dict) -> str:
    """The comparison as text: what was compared, then a table (the 18-class and per-task rows, then the
    per-class rows) with each experiment's value, and each later one's difference, interval and verdict."""
    table, reference, level = result["table"], result["reference"], result["level"]
    headline, per_class = metrics_of(table)
    metrics = headline + per_class
    groups = list(result["groups"])
    others = groups[1:]
    replicated = [f"{g} = mean of {', '.join(r)}" for g, r in result["groups"].items() if len(r) > 1]
    lines = [
        f"reference: {reference}; {result['people']:,} people, {result['images']:,} images, folds "
        f"{','.join(result['folds'])}; {result['boot']} resamples of people (seed {result['seed']}), "
        f"{level:.0%} intervals",
        *(f"  {r}" for r in replicated),
    ]
    wide = {m: table[table["metric"] == m].set_index("experiment") for m in metrics}
    metric_w = max(len(m) for m in metrics)
    value_w = {g: max(6, len(g)) for g in groups}
    diff_head = {g: f"{g} - {reference}" for g in others}
    diff_w = {g: max(7, len(diff_head[g])) for g in others}
    verdict_w = {g: max(len(v) for v in table.loc[table["experiment"] == g, "verdict"]) for g in others}
    interval_w = len("[+0.0000, +0.0000]")

    def row(cells: list[tuple[str, int]]) -> str:
        return "  ".join(c.ljust(w) for c, w in cells).rstrip()

    head = [("metric", metric_w), *((g, value_w[g]) for g in groups)]
    for g in others:
        head += [(diff_head[g], diff_w[g]), (f"{level:.0%} interval", interval_w), ("verdict", verdict_w[g])]
    lines += ["", row(head)]
    for m, metric in enumerate(metrics):
        if m == len(headline):
            lines.append("")
        rows = wide[metric]
        cells = [(metric, metric_w), *((f"{rows.loc[g, 'value']:.4f}", value_w[g]) for g in groups)]
        for g in others:
            r = rows.loc[g]
            interval = f"[{_signed(r['low'])}, {_signed(r['high'])}]"
            cells += [(_signed(r["difference"]), diff_w[g]), (interval, interval_w), (r["verdict"], verdict_w[g])]
        lines.append(row(cells))
    lines.append("")
    lines.append(f"table: {result['csv']}")
    if result.get("png") is not None:
        lines.append(f"plot: {result['png']}")
    return "\n".join(lines)


def plot_forest(table: pd.DataFrame, path: Path, reference: str, boot: int, level: float) -> None:
    """A forest plot of ``table``: each metric's difference to ``reference`` with its interval, per later
    experiment (filled when the interval excludes 0), a line at 0; the 18-class and per-task metrics on top,
    the per-class ones below."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    others = [g for g in dict.fromkeys(table["experiment"]) if g != reference]
    panels = metrics_of(table)
    fig, axes = plt.subplots(
        2,
        1,
        figsize=(8, 2.5 + 0.3 * sum(map(len, panels)) * max(1, len(others) / 2)),
        gridspec_kw={"height_ratios": [len(p) for p in panels]},
    )
    offsets = np.linspace(-0.25, 0.25, len(others)) if len(others) > 1 else np.zeros(1)
    for ax, metrics in zip(axes, panels, strict=True):
        for j, g in enumerate(others):
            rows = table[table["experiment"] == g].set_index("metric").loc[metrics]
            y = np.arange(len(metrics)) + offsets[j]
            diff = rows["difference"].to_numpy()
            err = np.vstack([diff - rows["low"].to_numpy(), rows["high"].to_numpy() - diff]).clip(min=0)
            ax.errorbar(diff, y, xerr=err, fmt="none", ecolor=f"C{j}", capsize=3, lw=1.2, label=g)
            clear = ((rows["low"] > 0) | (rows["high"] < 0)).to_numpy()
            ax.scatter(diff[clear], y[clear], color=f"C{j}", zorder=3)
            ax.scatter(diff[~clear], y[~clear], facecolor="white", edgecolor=f"C{j}", zorder=3)
        ax.axvline(0, color="grey", lw=1, ls="--")
        ax.set_yticks(range(len(metrics)), [m.split("/")[-1] if "/" in m else "18 classes" for m in metrics])
        ax.set_ylim(len(metrics) - 0.5, -0.5)
        ax.grid(axis="x", alpha=0.3)
    axes[0].set_title(f"F1 difference to {reference}\n({level:.0%} interval, bootstrap over people, {boot} resamples)")
    axes[0].set_ylabel("macro F1")
    axes[1].set_ylabel("class F1")
    axes[1].set_xlabel(f"F1 of the experiment - F1 of {reference} (filled: the interval excludes 0)")
    axes[0].legend(loc="best", fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
