"""Outlier photos, ranked by the stronger of the mask model's contradiction of the mask label (the only reason
that flags) and how unusual the photo is (its surprises combined: ranks only, its flags were mostly wrong)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from PIL import Image
from scipy.stats import chi2
from tqdm.auto import tqdm

from analysis.noise.suspects import (
    FIXED,
    MIN_CONFIDENCE,
    PROB_FLOOR,
    log_probs,
    ranked,
    scaled_score,
    softmax,
    unit_table,
)
from analysis.noise.thresholds import judge, thresholds_by_name
from core.tasks import TASK_NAMES, TASKS
from rundir.layout import KEY, prob_columns

THUMB_SIZE = (12, 16)  # width, height of the thumbnails compared within a person
MASK_CLASSES = TASKS["mask"].num_classes
FEATURES = ("mask_surprise", "gender_disagreement", "age_disagreement", "looks_unlike")  # a photo's surprises


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
    """Per photo: its thumbnail's distance from the median of the person's others, over the person's typical one."""
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
    """Per photo: the surprises, their Fisher combination and the outlier confidence (1 - p) ** N (Sidak)."""
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
    features = [c for c in FEATURES if c in out]
    pvals = pd.DataFrame({c: _rank_pvalue(out[c]) for c in features}, index=keys)
    stat = (-2 * np.log(pvals)).sum(axis=1, skipna=True).to_numpy()
    dof = 2 * pvals.notna().sum(axis=1).to_numpy()
    p = np.where(dof > 0, chi2.sf(stat, np.maximum(dof, 1)), 1.0)
    out["fisher_p"] = p
    out["outlier_confidence"] = np.exp(len(out) * np.log1p(-np.minimum(p, 1 - 1e-12)))
    return out


def _heads(frames: dict[str, pd.DataFrame], keys: pd.MultiIndex) -> tuple[list[str], list[str]]:
    """Per photo: its given labels and each head's most probable label, "mask, gender, age"."""
    given, best = [], []
    for task in TASK_NAMES:
        if task in frames:
            f = frames[task].set_index(KEY).reindex(keys)
            names = np.array([*TASKS[task].classes, ""])
            known = f["label"].notna().to_numpy()
            label = np.where(known, f["label"].fillna(0).to_numpy(int), -1)
            top = np.where(known, f[prob_columns(TASKS[task].num_classes)].fillna(0).to_numpy().argmax(1), -1)
            given.append(names[label])
            best.append(names[top])
    join = lambda parts: [", ".join(x for x in row if x) for row in zip(*parts, strict=True)]  # noqa: E731
    return join(given), join(best)


def _mask_verdict(mask: pd.DataFrame, keys: pd.MultiIndex, mode: str, cut: float):
    """The mask model against each photo's mask label; the fixed cut's rule is 1 - p(given) >= cut."""
    m = mask.set_index(KEY).reindex(keys)
    present = m["label"].notna().to_numpy()
    p = np.clip(m[prob_columns(MASK_CLASSES)].fillna(1.0).to_numpy(float), PROB_FLOOR, 1.0)
    p = p / p.sum(1, keepdims=True)
    labels = m["label"].fillna(0).to_numpy(int)
    v = judge(p[present], labels[present], mode, cut)
    out = [np.zeros(len(keys), int), np.zeros(len(keys)), np.full(len(keys), cut), np.full(len(keys), -1.0)]
    flag = np.zeros(len(keys), bool)
    if mode == FIXED:  # as the finder always did: the probability against the given state
        conf = 1 - p[present, labels[present]]
        v.confidence, v.score, v.flag = conf, scaled_score(conf, cut), conf >= cut
    for arr, new in zip(out, (v.suggestion, v.confidence, v.threshold, v.score), strict=True):
        arr[present] = new
    flag[present] = v.flag
    return present, *out, flag, v.thresholds


def outlier_suspects(
    frames: dict[str, pd.DataFrame],
    scores: pd.DataFrame,
    explained: set[tuple[str, str]] = frozenset(),
    min_confidence: float = MIN_CONFIDENCE,
    mode: str = FIXED,
) -> pd.DataFrame:
    """Every photo, ranked by the stronger of its two reasons (module doc); a flagged swap's photos are explained."""
    keys = scores.index
    n = len(keys)
    done = np.array([k in explained for k in keys], bool)
    u_conf = scores["outlier_confidence"].to_numpy(float)
    u_score = scaled_score(u_conf, min_confidence)
    u_flag = (u_conf >= min_confidence) & ~done
    features = [c for c in FEATURES if c in scores]
    values = scores[features].to_numpy(float)
    reasons = [
        f"unusual photo, (1-p)^N {c:.3f} ("
        + ", ".join(f"{f.replace('_', ' ')} {v:.2f}" for f, v in zip(features, row, strict=True) if v == v)
        + ")"
        for c, row in zip(u_conf, values, strict=True)
    ]
    thresholds, m_flag = {}, np.zeros(n, bool)
    conf, thr, score, task = u_conf.copy(), np.full(n, float(min_confidence)), u_score.copy(), np.full(n, "all")
    if "mask" in frames:
        names = TASKS["mask"].classes
        present, sugg, m_conf, m_thr, m_score, m_flag, t = _mask_verdict(frames["mask"], keys, mode, min_confidence)
        m_flag &= ~done
        thresholds["mask"] = thresholds_by_name(t, names)
        given = frames["mask"].set_index(KEY)["label"].reindex(keys).fillna(0).to_numpy(int)
        use = present & ((m_flag & ~u_flag) | ((m_flag == u_flag) & (m_score >= u_score)))
        conf, thr, score = np.where(use, m_conf, conf), np.where(use, m_thr, thr), np.where(use, m_score, score)
        task = np.where(use, "mask", task)
        reasons = [
            f"mask model says {names[s]} ({c:.3f}, threshold {h:.3f}), labelled {names[g]}; {r}" if ok else r
            for ok, s, c, h, g, r in zip(present, sugg, m_conf, m_thr, given, reasons, strict=True)
        ]
    thresholds["outlier"] = {"unusual": float(min_confidence)}
    conf, score = np.where(done, 0.0, conf), np.where(done, -1.0, score)
    reasons = [f"explained by the flagged mask swap; {r}" if d else r for d, r in zip(done, reasons, strict=True)]
    given_text, best_text = _heads(frames, keys)
    person, images = keys.get_level_values(0), scores["image"].to_numpy()
    table = unit_table(person, images, "outlier", task, given_text, best_text, conf, thr, score, m_flag, reasons)
    out = ranked(table, thresholds)
    out.attrs["ranked_only"] = {"outlier": int((u_flag & ~m_flag).sum())}
    return out
