"""Find likely label errors and outlier photos in an experiment's out-of-fold predictions.

    python -m datamodules.noise --exp NAME [--runs-dir runs] [--data-dir DIR] [--top N] [--out DIR] [--wandb MODE]

Reads ``runs/<exp>/<task>/fold<k>/oof.csv`` of the mask, gender and age models (any subset; the missing
ones are named) and writes into ``runs/<exp>/noise/`` (or ``--out``):

- ``suspects.csv``: person, image, task, given, predicted, confidence, reason, kind (gender, age,
  mask_swap, outlier), most suspicious first;
- ``suspects.png``: a contact sheet of the top ``--top`` suspects, given and predicted labels on each;
- ``corrections-draft.yaml``: the suspects as a corrections file in the format of
  :mod:`datamodules.relabel` (gender flips, age fixes, swap_incorrect_normal, exclude_images for
  outliers). Review and edit it, then train with ``--set 'data.relabel=[path/to/corrections-draft.yaml]'``;
- ``truth-scores.json``, for a synthetic set (its ``truth/noise.csv``): person-level precision and recall
  per planted error kind, also printed.

The images come from the experiment's data directory (its saved ``config.yaml``, or ``--data-dir``);
without it the finder still ranks, but draws no contact sheet and uses the models alone.

Decision rule. Every photo's probability is clipped to [0.01, 0.99] (no single photo counts as surer
than 99%), and each kind of suspect gets a confidence in [0, 1]; a suspect is reported when its
confidence is at least ``MIN_CONFIDENCE`` = 0.9 (``--min-confidence``):

- gender, age (a person): the person's probability of each label is the normalised geometric mean of
  their photos' probabilities (the mean log-probability: the photos of one person are one piece of
  evidence seen several times, so they are averaged, not multiplied). The person is a suspect when the
  best label is not the given one; the confidence is its probability (0.9: the photos favour it 9 to 1
  over the given gender). Age also needs the given age to lie ``AGE_MARGIN_YEARS`` = 5 years or more
  outside the predicted group: models disagree with ages near a cut as a matter of course, and moving a
  person across a cut they sit on changes little. The suggested age is the nearest one in that group.
- mask_swap (an ``incorrect_mask``/``normal`` pair): the two photos are judged jointly, "as labelled"
  against "swapped"; the confidence is P(swapped) from the product of both photos' probabilities, so one
  doubtful photo alone is never a swap.
- outlier (a photo), two reasons: the mask model gives its given mask state less than 10% (confidence
  1 - p(given)); or the photo is unusual on the whole: four surprises (its given mask state, how far its
  gender and its age predictions disagree with the person's other photos, and how unlike those photos it
  looks, from 12x16 thumbnails) each become a rank p-value among all photos, Fisher's method combines
  them (as if independent), and the confidence is 1 - N * p, N the number of photos (Bonferroni: at 0.9,
  about 0.1 photos of the whole set would look this unusual by chance). The photos of a flagged swap are
  explained by the swap and are not outliers.

The confidences of different kinds are alike in meaning, not calibrated against each other: read the
ranking within a kind first.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from PIL import Image, ImageDraw, ImageFont
from tqdm.auto import tqdm

from configs.config import MULTIHEAD, TASK_NAMES
from datamodules.atomic import atomic_path, write_text_atomic
from datamodules.errors import DataError, run_cli
from datamodules.labels import TASKS
from lightning_modules.scoring import oof_age_cuts, prob_columns, read_task_oof

log = logging.getLogger("noise")

SUSPECT_COLUMNS = ["person", "image", "task", "given", "predicted", "confidence", "reason", "kind"]
KINDS = ("gender", "age", "mask_swap", "outlier")  # the kinds of DIR/truth/noise.csv
PROB_FLOOR = 0.01
MIN_CONFIDENCE = 0.9
AGE_MARGIN_YEARS = 5
THUMB_SIZE = (12, 16)  # width, height of the thumbnails compared within a person
DRAFT_NAME = "corrections-draft.yaml"
SHEET_NAME = "suspects.png"
TRUTH_SCORES_NAME = "truth-scores.json"
INCORRECT, NOT_WEAR = 1, 2  # mask labels of the incorrect_mask and normal photos


# --------------------------------------------------------------------------------------------- reading


def read_oof_frames(exp_dir: Path) -> tuple[dict[str, pd.DataFrame], list[str]]:
    """Each task's out-of-fold predictions (one row per person and photo; a photo predicted by several
    folds gets their mean), and the tasks that have none."""
    exp_dir = Path(exp_dir)
    if not exp_dir.is_dir():
        raise DataError(f"experiment {exp_dir.name!r} does not exist: no folder {exp_dir} (check --exp and --runs-dir)")
    frames, missing = {}, []
    for task in TASK_NAMES:
        df = read_task_oof(exp_dir, task)  # its own model's files, else a multihead model's
        if df is None:
            missing.append(task)
            continue
        agg = {"image": "first", "fold": "first", "label": "first"} | dict.fromkeys(
            prob_columns(TASKS[task].num_classes), "mean"
        )
        frames[task] = df.groupby(["person", "stem"], as_index=False, sort=True).agg(agg)
    if not frames:
        raise DataError(
            f"no out-of-fold predictions under {exp_dir}: expected <task>/fold<k>/oof.csv for mask, gender or age "
            "(train.py writes them for every validated fold)"
        )
    return frames, missing


def saved_config(exp_dir: Path) -> tuple[dict, Path | None]:
    """The experiment's saved config (the first ``<task>/fold<k>/config.yaml``, a multihead model's
    included) as plain data."""
    for task in (*TASK_NAMES, MULTIHEAD):
        for path in sorted((Path(exp_dir) / task).glob("fold*/config.yaml")):
            try:
                data = yaml.safe_load(path.read_text()) or {}
            except yaml.YAMLError:
                continue
            if isinstance(data, dict):
                return data, path
    return {}, None


@dataclass
class DataInfo:
    """What the finder takes from the data directory: each photo's file and each person's age."""

    data_dir: Path | None = None
    files: dict[tuple[str, str], str] = field(default_factory=dict)  # (person, stem) -> image path
    ages: dict[str, int] = field(default_factory=dict)  # person -> age in years, after the experiment's relabels
    images: pd.DataFrame | None = None  # read_train's table after the experiment's relabels
    relabel: list[str] = field(default_factory=list)


def load_data_info(data_dir: str | Path | None, relabel: list[str], explicit: bool) -> DataInfo:
    """Read the data layout; a directory the user named must exist, the saved one may have moved."""
    from datamodules.layout import read_train
    from datamodules.relabel import apply_relabels

    if data_dir is None:
        return DataInfo(relabel=relabel)
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        if explicit:
            raise DataError(f"data directory {data_dir} does not exist (--data-dir)")
        log.warning("the experiment's data directory %s is not here: no images (pass --data-dir)", data_dir)
        return DataInfo(relabel=relabel)
    raw = read_train(data_dir)
    try:
        images, _ = apply_relabels(raw, relabel)
    except DataError as exc:
        log.warning("the experiment's corrections %s could not be applied (%s): using the labels as read", relabel, exc)
        images, relabel = raw, []
    files = {(p, s): f for p, s, f in zip(raw["person"], raw["stem"], raw["file"], strict=True)}
    ages = dict(zip(images["person"], images["age"].astype(int), strict=False))
    return DataInfo(data_dir, files, ages, images, list(relabel))


# --------------------------------------------------------------------------------------------- scoring


def _log_probs(frame: pd.DataFrame, num_classes: int) -> np.ndarray:
    p = np.clip(frame[prob_columns(num_classes)].to_numpy(float), PROB_FLOOR, 1.0)
    return np.log(p / p.sum(1, keepdims=True))


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def person_posteriors(frame: pd.DataFrame, task: str) -> pd.DataFrame:
    """Per person: the given label, each label's probability (normalised geometric mean over the photos),
    the best label, and how many photos favour it."""
    k = TASKS[task].num_classes
    lp = pd.DataFrame(_log_probs(frame, k), index=frame["person"].to_numpy())
    grouped = lp.groupby(level=0, sort=True)
    post = _softmax(grouped.mean().to_numpy())
    people = grouped.mean().index
    out = pd.DataFrame(post, index=people, columns=[f"p{c}" for c in range(k)])
    out["given"] = frame.groupby("person", sort=True)["label"].first().reindex(people).to_numpy().astype(int)
    out["pred"] = post.argmax(1)
    out["confidence"] = post.max(1)
    out["photos"] = grouped.size().to_numpy()
    favours = lp.to_numpy().argmax(1) == out["pred"].reindex(lp.index).to_numpy()
    out["agree"] = pd.Series(favours, index=lp.index).groupby(level=0, sort=True).sum().reindex(people).astype(int)
    out.index.name = "person"
    return out


def group_range(group: int, cuts: tuple[int, int]) -> tuple[int, int]:
    """The ages (inclusive) of an age group under ``cuts``."""
    young, old = cuts
    return [(0, young - 1), (young, old - 1), (old, 120)][group]


def gender_suspects(frame: pd.DataFrame, min_confidence: float = MIN_CONFIDENCE) -> pd.DataFrame:
    names = TASKS["gender"].classes
    post = person_posteriors(frame, "gender")
    hits = post[(post["pred"] != post["given"]) & (post["confidence"] >= min_confidence)]
    rows = [
        (
            person,
            "",
            "gender",
            names[r.given],
            names[r.pred],
            r.confidence,
            f"gender model favours {names[r.pred]} on {r.agree}/{r.photos} photos (person-level {r.confidence:.3f})",
            "gender",
        )
        for person, r in zip(hits.index, hits.itertuples(index=False), strict=True)
    ]
    return pd.DataFrame(rows, columns=SUSPECT_COLUMNS)


def age_suspects(
    frame: pd.DataFrame,
    ages: dict[str, int] | None = None,
    cuts: tuple[int, int] = (30, 60),
    min_confidence: float = MIN_CONFIDENCE,
    margin: int = AGE_MARGIN_YEARS,
) -> pd.DataFrame:
    """Age suspects; ``ages`` (person -> years) enables the margin rule and the suggested age."""
    names = TASKS["age"].classes
    post = person_posteriors(frame, "age")
    hits = post[(post["pred"] != post["given"]) & (post["confidence"] >= min_confidence)]
    rows = []
    for person, r in zip(hits.index, hits.itertuples(index=False), strict=True):
        lo, hi = group_range(int(r.pred), cuts)
        pred_text = f"{names[r.pred]} ({lo}-{hi})" if hi < 120 else f"{names[r.pred]} ({lo}+)"
        reason = f"age model favours {names[r.pred]} on {r.agree}/{r.photos} photos (person-level {r.confidence:.3f})"
        age = (ages or {}).get(person)
        if age is not None:
            outside = max(lo - age, age - hi, 0)
            if outside < margin:
                continue
            given = f"{age} ({names[r.given]})"
            reason += f"; given age {age} is {outside} years outside that group"
        else:
            given = names[r.given]
        rows.append((person, "", "age", given, pred_text, r.confidence, reason, "age"))
    return pd.DataFrame(rows, columns=SUSPECT_COLUMNS)


def swap_pairs(mask: pd.DataFrame) -> pd.DataFrame:
    """Per person with one photo labelled incorrect and one labelled not worn: P(the two are swapped)."""
    lp = pd.DataFrame(_log_probs(mask, 3), index=mask.index)
    inc = mask[mask["label"] == INCORRECT].drop_duplicates("person", keep=False).set_index("person")
    nor = mask[mask["label"] == NOT_WEAR].drop_duplicates("person", keep=False).set_index("person")
    people = inc.index.intersection(nor.index)
    a = lp.loc[inc.loc[people, "row"].to_numpy()].to_numpy() if len(people) else np.zeros((0, 3))
    b = lp.loc[nor.loc[people, "row"].to_numpy()].to_numpy() if len(people) else np.zeros((0, 3))
    swapped = a[:, NOT_WEAR] + b[:, INCORRECT]
    as_given = a[:, INCORRECT] + b[:, NOT_WEAR]
    return pd.DataFrame(
        {
            "image_incorrect": inc.loc[people, "image"].to_numpy(),
            "image_normal": nor.loc[people, "image"].to_numpy(),
            "p_inc_looks_normal": np.exp(a[:, NOT_WEAR]),
            "p_normal_looks_inc": np.exp(b[:, INCORRECT]),
            "confidence": 1 / (1 + np.exp(as_given - swapped)),
        },
        index=people,
    )


def mask_swap_suspects(mask: pd.DataFrame, min_confidence: float = MIN_CONFIDENCE) -> pd.DataFrame:
    mask = mask.reset_index(drop=True).assign(row=lambda d: d.index)
    pairs = swap_pairs(mask)
    hits = pairs[pairs["confidence"] >= min_confidence]
    rows = [
        (
            person,
            f"{r.image_incorrect};{r.image_normal}",
            "mask",
            "incorrect/not_wear",
            "not_wear/incorrect",
            r.confidence,
            f"incorrect_mask looks not worn ({r.p_inc_looks_normal:.3f}) and normal looks incorrect "
            f"({r.p_normal_looks_inc:.3f})",
            "mask_swap",
        )
        for person, r in zip(hits.index, hits.itertuples(index=False), strict=True)
    ]
    return pd.DataFrame(rows, columns=SUSPECT_COLUMNS)


def _loo_agreement(frame: pd.DataFrame, task: str, keys: pd.MultiIndex) -> pd.Series:
    """Per photo: -log P(the photo and the person's other photos name the same label)."""
    k = TASKS[task].num_classes
    lp = pd.DataFrame(_log_probs(frame, k), index=pd.MultiIndex.from_frame(frame[["person", "stem"]]))
    person = lp.index.get_level_values(0)
    total = lp.groupby(person).transform("sum").to_numpy()
    count = lp.groupby(person)[0].transform("count").to_numpy()[:, None]
    with np.errstate(invalid="ignore", divide="ignore"):
        others = _softmax(np.where(count > 1, (total - lp.to_numpy()) / np.maximum(count - 1, 1), 0.0))
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
    from scipy.stats import chi2

    base = next(frames[t] for t in TASK_NAMES if t in frames)
    keys = pd.MultiIndex.from_frame(base[["person", "stem"]])
    out = pd.DataFrame(index=keys)
    out["image"] = base["image"].to_numpy()
    if "mask" in frames:
        m = frames["mask"].set_index(["person", "stem"]).reindex(keys)
        lp = np.log(np.clip(m[prob_columns(3)].to_numpy(float), PROB_FLOOR, 1.0))
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
        p = np.clip(mask[prob_columns(3)].to_numpy(float), PROB_FLOOR, 1.0)
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


def find_suspects(
    frames: dict[str, pd.DataFrame],
    ages: dict[str, int] | None = None,
    cuts: tuple[int, int] = (30, 60),
    files: dict | None = None,
    min_confidence: float = MIN_CONFIDENCE,
    progress: bool = True,
) -> pd.DataFrame:
    """Every suspect of every kind, most suspicious first."""
    parts = [pd.DataFrame(columns=SUSPECT_COLUMNS)]
    if "gender" in frames:
        parts.append(gender_suspects(frames["gender"], min_confidence))
    if "age" in frames:
        parts.append(age_suspects(frames["age"], ages, cuts, min_confidence))
    explained: set[tuple[str, str]] = set()
    if "mask" in frames:
        swaps = mask_swap_suspects(frames["mask"], min_confidence)
        parts.append(swaps)
        m = frames["mask"]
        swapped = m["person"].isin(set(swaps["person"])) & m["label"].isin([INCORRECT, NOT_WEAR])
        explained = set(zip(m.loc[swapped, "person"], m.loc[swapped, "stem"], strict=True))
    scores = photo_scores(frames, files, progress)
    parts.append(outlier_suspects(frames, scores, explained, min_confidence))
    out = pd.concat([p for p in parts if len(p)] or parts[:1], ignore_index=True)
    out["confidence"] = out["confidence"].astype(float).round(4)
    out["_kind"] = out["kind"].map({k: i for i, k in enumerate(KINDS)})
    out = out.sort_values(["confidence", "_kind", "person", "image"], ascending=[False, True, True, True])
    return out.drop(columns="_kind").reset_index(drop=True)


# --------------------------------------------------------------------------------------------- outputs


def _stem(image: str) -> str:
    return os.path.splitext(image)[0]


def _nearest_age(given_text: str, predicted_text: str, cuts: tuple[int, int]) -> int | None:
    """The age in the predicted group nearest the given age (None when the given age is unknown)."""
    try:
        age = int(given_text.split(" ")[0])
    except ValueError:
        return None
    group = TASKS["age"].classes.index(predicted_text.split(" ")[0])
    lo, hi = group_range(group, cuts)
    return int(min(max(age, lo), hi))


def draft_corrections(
    suspects: pd.DataFrame, exp: str, cuts: tuple[int, int], relabel: Sequence[str] = (), draft_path: str = ""
) -> str:
    """The suspects as a corrections file (datamodules/relabel.py's format), one comment of evidence each."""
    q = json.dumps  # a JSON string is a valid double-quoted YAML string
    path = draft_path or f"runs/{exp}/noise/{DRAFT_NAME}"
    files = ", ".join([*relabel, path])
    lines = [
        f"# Draft corrections for experiment {exp!r}, from the noise finder (python -m datamodules.noise) on",
        f"# {date.today().isoformat()}: {len(suspects)} suspects with confidence >= the finder's threshold.",
        "# REVIEW BEFORE USE: look at suspects.png and suspects.csv beside this file, delete every entry you",
        "# do not agree with and check each suggested age (the models only tell the age group). Then train with:",
        f"#   python train.py --exp {exp}-clean --set 'data.relabel=[{files}]'",
        "# (keep the corrections files the experiment already used first in the list). Format: datamodules/relabel.py.",
    ]
    sections: dict[str, list[str]] = {"gender": [], "age": [], "swap_incorrect_normal": [], "exclude_images": []}
    for r in suspects.itertuples(index=False):
        note = f"  # {r.confidence:.3f}: {r.reason}"
        if r.kind == "gender":
            sections["gender"].append(f"  {q(r.person)}: {r.predicted}{note}")
        elif r.kind == "age":
            age = _nearest_age(r.given, r.predicted, cuts)
            if age is None:
                sections["age"].append(f"  # {q(r.person)}: AGE  {note.strip()} (given age unknown: fill in)")
            else:
                sections["age"].append(f"  {q(r.person)}: {age}{note}; nearest age in {r.predicted}")
        elif r.kind == "mask_swap":
            sections["swap_incorrect_normal"].append(f"  - {q(r.person)}{note}")
        elif r.kind == "outlier":
            ref = f"{r.person}/{_stem(r.image)}"
            sections["exclude_images"].append(f"  - {q(ref)}{note}")
            if r.task == "mask":
                pred = r.predicted.split(",")[0].strip()
                sections["exclude_images"].append(f"    # or keep it relabelled: mask: {{{q(ref)}: {pred}}}")
    for name, entries in sections.items():
        real = [e for e in entries if not e.lstrip().startswith("#")]
        lines.append("")
        if not real:
            lines.append(f"{name}: {'{}' if name in ('gender', 'age') else '[]'}")
            lines.extend(entries)
        else:
            lines.append(f"{name}:")
            lines.extend(entries)
    return "\n".join(lines) + "\n"


def check_draft(path: Path, images: pd.DataFrame) -> pd.DataFrame:
    """Apply the draft with datamodules.relabel (raises DataError if it does not fit); return the changes."""
    from datamodules.relabel import apply_relabels

    _, changes = apply_relabels(images, [str(path)])
    return changes


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


def _suspect_photos(row, files: dict) -> list[tuple[str, str]]:
    """(label, path) of the photos to show for one suspect."""
    if row.kind in ("gender", "age"):
        stems = ["normal", "mask1", "incorrect_mask"]
    else:  # the suspect photo(s) first; an outlier beside two of the person's other photos
        stems = [_stem(i) for i in str(row.image).split(";") if i]
        if row.kind == "outlier":
            stems += [s for s in ("normal", "mask1", "mask2") if s not in stems][:2]
    return [(s, files[(row.person, s)]) for s in stems if (row.person, s) in files]


def suspect_cell(row, files: dict, thumb_w: int = 96) -> Image.Image:
    """One suspect: its photos side by side (the suspect photo first) and three lines of caption."""
    photos = _suspect_photos(row, files)[:3]
    thumb_h = round(thumb_w * 4 / 3)
    cap_h, font = 46, _font(11)
    cell = Image.new("RGB", (3 * thumb_w, thumb_h + cap_h), "white")
    draw = ImageDraw.Draw(cell)
    for i, (stem, path) in enumerate(photos):
        try:
            with Image.open(path) as im:
                cell.paste(im.convert("RGB").resize((thumb_w - 2, thumb_h - 14)), (i * thumb_w + 1, 13))
        except OSError:
            continue
        suspect = (row.kind == "outlier" and i == 0) or row.kind == "mask_swap"
        colour = "red" if suspect else "black"
        draw.text((i * thumb_w + 2, 0), stem, fill=colour, font=font)
    text = f"{row.kind} {row.confidence:.3f}  {row.person}\ngiven: {row.given}\npredicted: {row.predicted}"
    draw.multiline_text((2, thumb_h + 1), text, fill="black", font=font, spacing=2)
    return cell


def contact_sheet(
    suspects: pd.DataFrame, files: dict, out_png: Path, columns: int = 4, progress: bool = True
) -> Path | None:
    """The suspects' cells in a grid, most suspicious first; None when there is nothing to draw."""
    if suspects.empty or not files:
        return None
    rows = list(suspects.itertuples(index=False))
    cells = [suspect_cell(r, files) for r in tqdm(rows, desc="contact sheet", leave=False, disable=not progress)]
    w, h = cells[0].size
    n_rows = (len(cells) + columns - 1) // columns
    sheet = Image.new("RGB", (min(columns, len(cells)) * (w + 6), n_rows * (h + 6)), (200, 200, 200))
    for i, cell in enumerate(cells):
        sheet.paste(cell, ((i % columns) * (w + 6) + 3, (i // columns) * (h + 6) + 3))
    out_png.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out_png)
    return out_png


def log_wandb(
    cfg, mode: str, suspects: pd.DataFrame, files: dict, sheet: Path | None, summary: dict, progress: bool = True
) -> None:
    """The top suspects as a W&B table with their photos (run group ``<exp>-noise``); never raises."""
    from callbacks.wandb_run import init_run

    try:
        import wandb

        run = init_run(cfg, mode, group=f"{cfg.exp}-noise", name="noise-finder", job_type="noise", config=summary)
        table = wandb.Table(columns=["rank", "photos", *SUSPECT_COLUMNS])
        rows = list(suspects.itertuples(index=False))
        for rank, row in enumerate(tqdm(rows, desc="W&B table", leave=False, disable=not progress), 1):
            image = wandb.Image(suspect_cell(row, files)) if files else None
            table.add_data(rank, image, *[getattr(row, c) for c in SUSPECT_COLUMNS])
        media = {"noise/suspects": table, **{f"noise/{k}": v for k, v in summary.get("counts", {}).items()}}
        if sheet is not None:
            media["noise/contact_sheet"] = wandb.Image(str(sheet))
        run.log(media)
        run.finish()
    except Exception as exc:  # W&B must never stop the report
        log.warning("the suspects were not logged to W&B: %s", exc)


# --------------------------------------------------------------------------------------------- truth


def read_truth(data_dir: str | Path) -> pd.DataFrame:
    path = Path(data_dir) / "truth" / "noise.csv"
    if not path.is_file():
        raise DataError(f"{path} is missing: only a synthetic data set (datamodules.synthetic) has planted truth")
    truth = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = [c for c in ("path", "image", "kind") if c not in truth.columns]
    if missing:
        raise DataError(f"{path}: missing column(s) {', '.join(missing)}")
    return truth


def read_disputed(data_dir: str | Path) -> dict[str, set[str]]:
    """``DIR/truth/disputed.csv`` by kind: the people whose photos leave their label open (a synthetic set's
    people drawn between the genders); empty when the file is absent."""
    path = Path(data_dir) / "truth" / "disputed.csv"
    if not path.is_file():
        return {}
    table = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = [c for c in ("path", "kind") if c not in table.columns]
    if missing:
        raise DataError(f"{path}: missing column(s) {', '.join(missing)}")
    return {kind: set(rows["path"]) for kind, rows in table.groupby("kind")}


def score_against_truth(suspects: pd.DataFrame, data_dir: str | Path) -> dict[str, dict] | None:
    """``score_suspects`` against a synthetic set's planted truth; None for data without ``truth/noise.csv``."""
    if not (Path(data_dir) / "truth" / "noise.csv").is_file():
        return None
    return score_suspects(suspects, read_truth(data_dir), read_disputed(data_dir))


def _ratio(a: int, b: int) -> float | None:
    return round(a / b, 4) if b else None


def score_suspects(
    suspects: pd.DataFrame, truth: pd.DataFrame, disputed: dict[str, set[str]] | None = None
) -> dict[str, dict]:
    """Person-level precision and recall of the suspects for each error kind planted in ``truth``
    (``DIR/truth/noise.csv``: a person is its ``path``). ``disputed[kind]`` names people whose photos
    leave that label open (``DIR/truth/disputed.csv``): how many of them were flagged is reported, and
    ``precision_without_disputed`` leaves them out. Outliers are also scored per photo."""
    report = {}
    for kind in [k for k in KINDS if k in set(truth["kind"])] + sorted(set(truth["kind"]) - set(KINDS)):
        planted = set(truth.loc[truth["kind"] == kind, "path"])
        flagged = set(suspects.loc[suspects["kind"] == kind, "person"])
        found = planted & flagged
        entry = {
            "planted": len(planted),
            "flagged": len(flagged),
            "found": len(found),
            "precision": _ratio(len(found), len(flagged)),
            "recall": _ratio(len(found), len(planted)),
        }
        if disputed and kind in disputed:
            other = (disputed[kind] & flagged) - planted
            entry["flagged_disputed"] = len(other)
            entry["precision_without_disputed"] = _ratio(len(found), len(flagged - other))
        if kind == "outlier":
            rows = truth[truth["kind"] == kind]
            planted_img = set(zip(rows["path"], rows["image"].map(_stem), strict=True))
            s = suspects[suspects["kind"] == kind]
            flagged_img = set(zip(s["person"], s["image"].astype(str).map(_stem), strict=True))
            hit = planted_img & flagged_img
            entry["photos"] = {
                "planted": len(planted_img),
                "flagged": len(flagged_img),
                "found": len(hit),
                "precision": _ratio(len(hit), len(flagged_img)),
                "recall": _ratio(len(hit), len(planted_img)),
            }
        report[kind] = entry
    return report


# --------------------------------------------------------------------------------------------- command


@dataclass
class NoiseReport:
    suspects: pd.DataFrame
    out_dir: Path
    csv: Path
    draft: Path
    sheet: Path | None
    missing: list[str]
    data: DataInfo
    draft_changes: int | None
    truth_scores: dict[str, dict] | None = None  # against DIR/truth/ of a synthetic set
    truth_file: Path | None = None
    frames: dict[str, pd.DataFrame] = field(default_factory=dict)  # the out-of-fold predictions it ranked
    config: dict = field(default_factory=dict)  # the experiment's saved config, as plain data


def _wandb_config(config_path: Path | None, exp: str):
    from configs.config import ConfigError, load_config

    try:
        cfg = load_config(None, [config_path] if config_path else [], [])
    except (ConfigError, DataError):
        cfg = load_config(None, [], [])
    cfg.exp = exp
    return cfg


def run_finder(
    exp: str,
    runs_dir: str | Path = "runs",
    data_dir: str | Path | None = None,
    top: int = 24,
    out: str | Path | None = None,
    wandb_mode: str | None = None,
    min_confidence: float = MIN_CONFIDENCE,
    progress: bool = True,
) -> NoiseReport:
    """Rank the suspects of experiment ``exp`` and write suspects.csv, the contact sheet and the draft."""
    exp_dir = Path(runs_dir) / exp
    frames, missing = read_oof_frames(exp_dir)
    if missing:
        log.warning("no out-of-fold predictions for %s: those checks are skipped", ", ".join(missing))
    config, config_path = saved_config(exp_dir)
    data_cfg = config.get("data") or {}
    relabel = [str(r) for r in data_cfg.get("relabel") or []]
    data = load_data_info(data_dir or data_cfg.get("dir"), relabel, explicit=data_dir is not None)
    cuts = oof_age_cuts(Path(exp_dir))  # the k-fold age models' (or the multihead models')
    suspects = find_suspects(frames, data.ages or None, cuts, data.files, min_confidence, progress)

    out_dir = Path(out) if out else exp_dir / "noise"
    out_dir.mkdir(parents=True, exist_ok=True)
    csv = out_dir / "suspects.csv"
    with atomic_path(csv) as tmp:
        suspects.to_csv(tmp, index=False)
    draft = out_dir / DRAFT_NAME
    write_text_atomic(draft, draft_corrections(suspects, exp, cuts, data.relabel, str(draft)))
    changes = None
    if data.images is not None:
        changes = len(check_draft(draft, data.images))
    sheet = contact_sheet(suspects.head(top), data.files, out_dir / SHEET_NAME, progress=progress)
    scores = score_against_truth(suspects, data.data_dir) if data.data_dir is not None else None
    truth_file = None
    if scores is not None:
        truth_file = out_dir / TRUTH_SCORES_NAME
        write_text_atomic(truth_file, json.dumps({"min_confidence": min_confidence, "scores": scores}, indent=2) + "\n")

    cfg = _wandb_config(config_path, exp)
    if wandb_mode:
        cfg.wandb.mode = wandb_mode
    from callbacks.wandb_run import resolve_mode

    mode = resolve_mode(cfg.wandb.mode)
    if mode != "disabled":
        counts = suspects["kind"].value_counts().reindex(KINDS, fill_value=0).to_dict()
        summary = {"exp": exp, "min_confidence": min_confidence, "missing_tasks": missing, "counts": counts}
        log_wandb(cfg, mode, suspects.head(top), data.files, sheet, summary, progress)
    return NoiseReport(suspects, out_dir, csv, draft, sheet, missing, data, changes, scores, truth_file, frames, config)


def summarize(report: NoiseReport) -> str:
    s = report.suspects
    counts = ", ".join(f"{k} {int((s['kind'] == k).sum())}" for k in KINDS)
    lines = [f"{len(s)} suspects ({counts})"]
    if report.missing:
        lines.append(f"missing out-of-fold predictions: {', '.join(report.missing)} (those checks were skipped)")
    if report.data.data_dir is None:
        lines.append("no data directory: no contact sheet, no photo comparison, ages from the models only")
    lines.append(f"suspects: {report.csv}")
    if report.sheet:
        lines.append(f"contact sheet: {report.sheet}")
    check = f" (applies cleanly: {report.draft_changes} changes)" if report.draft_changes is not None else ""
    lines.append(f"draft corrections{check}: {report.draft}")
    lines.append(f"review it, then: python train.py --set 'data.relabel=[{report.draft}]' ...")
    if report.truth_scores:
        lines.append(f"against the planted errors in {report.data.data_dir / 'truth'} ({report.truth_file}):")
        for kind, e in report.truth_scores.items():
            p, r = (f"{v:.2f}" if v is not None else "-" for v in (e["precision"], e["recall"]))
            extra = f", {e['flagged_disputed']} disputed people flagged" if e.get("flagged_disputed") else ""
            lines.append(
                f"  {kind}: found {e['found']}/{e['planted']}, flagged {e['flagged']}: precision {p}, recall {r}{extra}"
            )
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m datamodules.noise",
        description=__doc__.split("\n")[0],
        epilog="Decision rule: see the module doc.",
    )
    p.add_argument("--exp", required=True, help="experiment name: reads runs/<exp>/<task>/fold<k>/oof.csv")
    p.add_argument("--runs-dir", default="runs", help="where the experiments are (default: runs)")
    p.add_argument("--data-dir", help="the data (default: the experiment's saved data.dir)")
    p.add_argument("--top", type=int, default=24, help="suspects on the contact sheet and in W&B (default 24)")
    p.add_argument("--out", help="output folder (default: runs/<exp>/noise)")
    p.add_argument("--wandb", choices=["auto", "online", "offline", "disabled"], help="default: the experiment's")
    p.add_argument("--min-confidence", type=float, default=MIN_CONFIDENCE, help="report threshold (default 0.9)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--debug", action="store_true", help="show tracebacks for data errors")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if not 0 < args.min_confidence <= 1:
        build_parser().error("--min-confidence must be in (0, 1]")

    def work():
        report = run_finder(
            args.exp,
            args.runs_dir,
            args.data_dir,
            args.top,
            args.out,
            args.wandb,
            args.min_confidence,
            progress=not args.quiet,
        )
        print(summarize(report), flush=True)

    return run_cli(work, args.debug)


if __name__ == "__main__":
    sys.exit(main())
