"""A readable summary of the prepared data: people and images per class, per task and per fold, and what
the corrections files changed. Printed before training; on its own with
``python train.py --prepare-only [--config FILE] [--set key=value] [--data-dir DIR]``."""

from __future__ import annotations

import pandas as pd

from core.tasks import TASKS
from datamodules.prepare import PreparedData


def class_table(images: pd.DataFrame) -> pd.DataFrame:
    """Rows: each task's classes; columns: people and images overall and images per fold."""
    rows = []
    for task in TASKS.values():
        for k, name in enumerate(task.classes):
            sel = images[images[task.column] == k]
            row = {"task": task.name, "class": f"{k} {name}", "people": sel["person"].nunique(), "images": len(sel)}
            for fold, n in sel.groupby("fold").size().items():
                row[f"fold{fold}"] = n
            rows.append(row)
    return pd.DataFrame(rows).fillna(0).set_index(["task", "class"]).astype(int)


def summarize(data: PreparedData) -> str:
    images = data.images
    lines = [
        f"data: {data.data_dir} (fingerprint {data.fingerprint})",
        f"{images['person'].nunique()} people, {len(images)} images, "
        f"{int(images['fold'].max()) + 1} folds by person; holdout "
        f"{images.loc[images['holdout'].astype(bool), 'person'].nunique()} people",
        "",
        class_table(images).to_string(),
        "",
        "18-class images: " + " ".join(f"{c}:{n}" for c, n in images["label"].value_counts().sort_index().items()),
    ]
    if data.changes.empty:
        lines.append("corrections: none")
    else:
        counts = data.changes.groupby(["source", "field"]).size()
        lines.append("corrections: " + ", ".join(f"{src} {field}: {n}" for (src, field), n in counts.items()))
    lines.append(f"normalisation: mean {data.mean} std {data.std}")
    return "\n".join(lines)
