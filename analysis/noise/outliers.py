"""Outlier photos: each photo's surprises (its mask label, its disagreement with the person's other photos,
how unlike them it looks), combined into one confidence, and the photos it flags."""

from __future__ import annotations

import numpy as np
import pandas as pd
from PIL import Image
from scipy.stats import chi2
from tqdm.auto import tqdm

from analysis.noise.suspects import MIN_CONFIDENCE, PROB_FLOOR, SUSPECT_COLUMNS, log_probs, softmax
from core.tasks import TASK_NAMES, TASKS
from rundir.layout import KEY, prob_columns

THUMB_SIZE = (12, 16)  # width, height of the thumbnails compared within a person
MASK_CLASSES = TASKS["mask"].num_classes


def _loo_agreement(frame: pd.DataFrame, task: str, keys: pd.MultiIndex) -> pd.Series:
    """Per photo: -log P(the photo and the person's other photos name the same label)."""
    k = TASKS[task].num_classes
    lp = pd.DataFrame(log_probs(frame, k), index=pd.MultiIndex.from_frame(frame[KEY]))
    person = lp.index.get_level_values(0)
    total = lp.groupby(person).transform("sum").to_numpy()
    count = lp.groupby(person)[0].transform("count").to_numpy()[:, None]
    with np.errstate(invalid="ignore", divide="ignore"):
        others = softmax(np.where(count > 1, (total - lp.to_numpy()) / np.maximum(count - 1, 1), 0.0))
    agree = (np.exp(lp.to_numpy()) * others).sum(1)
    s = pd.Series(np.where(count[:, 0] > 1, -np.log(agree), np.nan), index=lp.index)
    return s.reindex(keys)


def _thumbnail(path: str) -> np.ndarray | None:
    try:
        with Image.open(path) as im:
            im.draft("RGB", (THUMB_SIZE[0] * 4, THUMB_SIZE[1] * 4))
            return np.asarray(im.convert("RGB").resize(THUMB_SIZE, Image.BILINEAR), np.float32) / 255
    except (OSError, ValueError):
        return None


def appearance_distance(keys: pd.MultiIndex, files: dict[tuple[str, str], str], progress: bool = True) -> pd.Series:
    """Per photo: how far its thumbnail is from the median of the person's other photos, relative to the
    person's own typical distance (1 = typical); NaN where it cannot be told."""
    wanted = [(p, s) for p, s in keys if (p, s) in files]
    bar = tqdm(wanted, desc="thumbnails", unit="img", disable=not progress, leave=False)
    thumbs = [_thumbnail(files[k]) for k in bar]
    by_person: dict[str, list[tuple[str, np.ndarray]]] = {}
    for (person, stem), t in zip(wanted, thumbs, strict=True):
        if t is not None:
            by_person.setdefault(person, []).append((stem, t))
    out = {}
    for person, items in by_person.items():
        if len(items) < 3:
            continue
        stack = np.stack([t for _, t in items])
        d = np.array([np.abs(stack[i] - np.median(np.delete(stack, i, 0), 0)).mean() for i in range(len(items))])
        typical = max(float(np.median(d)), 1e-6)
        out.update({(person, stem): v / typical for (stem, _), v in zip(items, d, strict=True)})
    return pd.Series(out, dtype=float).reindex(keys)


def _rank_pvalue(x: pd.Series) -> pd.Series:
    """Share of photos at least as extreme (largest values most extreme); NaN stays NaN."""
    n = x.notna().sum()
    return x.rank(ascending=False, method="max") / max(n, 1)


def photo_scores(frames: dict[str, pd.DataFrame], files: dict | None = None, progress: bool = True) -> pd.DataFrame:
    """Per photo: the surprises, their Fisher combination and the outlier confidence (1 - N * p)."""
    base = next(frames[t] for t in TASK_NAMES if t in frames)
    keys = pd.MultiIndex.from_frame(base[KEY])
    out = pd.DataFrame(index=keys)
    out["image"] = base["image"].to_numpy()
    if "mask" in frames:
        m = frames["mask"].set_index(KEY).reindex(keys)
        lp = np.log(np.clip(m[prob_columns(MASK_CLASSES)].to_numpy(float), PROB_FLOOR, 1.0))
        label = m["label"].fillna(0).astype(int).to_numpy()
        out["mask_surprise"] = np.where(m["label"].notna(), -lp[np.arange(len(m)), label], np.nan)
    for task in ("gender", "age"):
        if task in frames:
            out[f"{task}_disagreement"] = _loo_agreement(frames[task], task, keys).to_numpy()
    if files:
        out["looks_unlike"] = appearance_distance(keys, files, progress).to_numpy()
    features = [c for c in ("mask_surprise", "gender_disagreement", "age_disagreement", "looks_unlike") if c in out]
    pvals = pd.DataFrame({c: _rank_pvalue(out[c]) for c in features}, index=keys)
    stat = (-2 * np.log(pvals)).sum(axis=1, skipna=True).to_numpy()
    dof = 2 * pvals.notna().sum(axis=1).to_numpy()
    p = np.where(dof > 0, chi2.sf(stat, np.maximum(dof, 1)), 1.0)
    out["fisher_p"] = p
    out["outlier_confidence"] = np.clip(1 - len(out) * p, 0, 1)
    return out


def _heads_text(frames: dict[str, pd.DataFrame], key: tuple[str, str], which: str) -> str:
    parts = []
    for task in TASK_NAMES:
        if task in frames:
            f = frames[task]
            row = f[(f["person"] == key[0]) & (f["stem"] == key[1])]
            if len(row):
                k = TASKS[task].num_classes
                c = int(row["label"].iloc[0]) if which == "given" else int(row[prob_columns(k)].to_numpy().argmax())
                parts.append(TASKS[task].classes[c])
    return ", ".join(parts)


def outlier_suspects(
    frames: dict[str, pd.DataFrame],
    scores: pd.DataFrame,
    explained: set[tuple[str, str]] = frozenset(),
    min_confidence: float = MIN_CONFIDENCE,
) -> pd.DataFrame:
    """Photos whose given mask state the mask model contradicts, and photos unusual on the whole."""
    rows = []
    mask = frames.get("mask")
    contradicted = {}
    if mask is not None:
        p = np.clip(mask[prob_columns(MASK_CLASSES)].to_numpy(float), PROB_FLOOR, 1.0)
        p = p / p.sum(1, keepdims=True)
        conf = 1 - p[np.arange(len(mask)), mask["label"].to_numpy()]
        for i in np.flatnonzero(conf >= min_confidence):
            contradicted[(mask["person"].iat[i], mask["stem"].iat[i])] = (conf[i], int(p[i].argmax()))
    unusual = scores.index[scores["outlier_confidence"] >= min_confidence]
    names = TASKS["mask"].classes
    for key in sorted(set(contradicted) | set(unusual)):
        if key in explained:
            continue
        reasons, confidence, task = [], 0.0, "all"
        if key in contradicted:
            c, pred = contradicted[key]
            given = names[int(mask.loc[(mask["person"] == key[0]) & (mask["stem"] == key[1]), "label"].iloc[0])]
            reasons.append(f"mask model says {names[pred]} ({c:.3f}), labelled {given}")
            confidence, task = c, "mask"
        if key in unusual:
            s = scores.loc[key]
            detail = [
                f"{c.replace('_', ' ')} {s[c]:.2f}"
                for c in scores.columns
                if c.endswith(("surprise", "agreement", "unlike")) and pd.notna(s[c])
            ]
            reasons.append(f"unusual photo, 1 - N*p {s['outlier_confidence']:.3f} ({', '.join(detail)})")
            if s["outlier_confidence"] > confidence:
                confidence, task = float(s["outlier_confidence"]), "all"
        image = scores.loc[key, "image"] if key in scores.index else key[1]
        rows.append(
            (
                key[0],
                image,
                task,
                _heads_text(frames, key, "given"),
                _heads_text(frames, key, "predicted"),
                confidence,
                "; ".join(reasons),
                "outlier",
            )
        )
    return pd.DataFrame(rows, columns=SUSPECT_COLUMNS)
