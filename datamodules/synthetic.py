"""Synthetic stand-in for the private mask-status data, in exactly the competition layout.

Drawn people (consistent identity across their 7 photos) with visible mask state, overlapping gender
cues and gradual age cues, plus the real data's quirks: mixed extensions, macOS `._` files, a duplicated
id, suffixed ids and ~1% planted label noise recorded in `truth/noise.csv`. Like the real data's disputed
gender labels, a few people look neither male nor female; `truth/disputed.csv` lists them.

    python -m datamodules.synthetic --out data/synthetic --people 300 --eval-people 100 --size 96x128
"""

from __future__ import annotations

import argparse
import hashlib
import io
import math
import os
import shutil
import sys
import time
from collections.abc import Sequence
from multiprocessing import Pool
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageChops, ImageDraw, ImageFont
from tqdm import tqdm

# --- difficulty knobs -------------------------------------------------------------------------------
AGE_CUE_STRENGTH = 1.0  # scales greying, wrinkles, eye bags and skin desaturation
AGE_PERSON_NOISE = 3.0  # sd in years between a person's true age and the age their face shows
GENDER_AMBIGUOUS_P = 14 / 2700  # share of people drawn midway between the genders: the real data's 14 disputed
GENDER_AMBIGUITY = (0.45, 0.55)  # their femaleness (0 male cues, 1 female cues) is uniform in this range
GENDER_AMBIGUOUS_SPREAD = 0.25  # and their cues vary this much less than other people's: they look alike
PIXEL_NOISE = 5.0  # sd of per-pixel luminance noise (0..255 scale)
JPEG_QUALITY = 90

# --- layout -----------------------------------------------------------------------------------------
MASK_STEMS = ("mask1", "mask2", "mask3", "mask4", "mask5", "incorrect_mask", "normal")
MASK_LABEL = {stem: (0 if stem.startswith("mask") else 1 if stem == "incorrect_mask" else 2) for stem in MASK_STEMS}
TRAIN_EXT_P = {".png": 0.027, ".jpeg": 0.019}  # the rest are .jpg
HIDDEN_FOLDER_P = 0.03
DUPLICATED_ID = 3397
MAX_ID = 6959

# --- label priors (DATA-FACTS.md, by person out of 2,700) -------------------------------------------
FEMALE_P = 1658 / 2700
AGES = np.arange(18, 61)


def _age_prior() -> np.ndarray:
    counts = np.zeros(len(AGES))
    fixed = {18: 192, 19: 407, 20: 267, 57: 106, 58: 159, 59: 85, 60: 192}
    for age, n in fixed.items():
        counts[age - 18] = n
    counts[21 - 18 : 30 - 18] = (1281 - 192 - 407 - 267) / 9
    counts[30 - 18 : 57 - 18] = (1227 - 106 - 159 - 85) / 27
    return counts / counts.sum()


AGE_P = _age_prior()

# --- planted noise rates ----------------------------------------------------------------------------
NOISE_P = {"gender": 0.005, "mask_swap": 0.002, "age": 0.003}  # per person
OUTLIER_P = 0.002  # per train image
SUFFIXED_P = 0.015

MASK_STYLES = (  # name, colour, pattern
    ("white", (238, 238, 234), "plain"),
    ("surgical", (150, 198, 228), "pleats"),
    ("black", (32, 32, 36), "plain"),
    ("kf94", (222, 224, 230), "seam"),
    ("dots", (62, 82, 150), "dots"),
    ("stripes", (196, 64, 66), "stripes"),
    ("pink", (234, 170, 186), "pleats"),
    ("grey", (136, 138, 144), "seam"),
)


def age_group(age: int | np.ndarray) -> int | np.ndarray:
    """0: under 30, 1: 30 to 59, 2: 60 and over."""
    return (np.asarray(age) >= 30).astype(int) + (np.asarray(age) >= 60).astype(int)


def _folder(pid: str, gender: str, age: int) -> str:
    return f"{pid}_{gender}_Asian_{age}"


def _sample_labels(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    gender = np.where(rng.random(n) < FEMALE_P, "female", "male")
    age = rng.choice(AGES, size=n, p=AGE_P)
    return gender, age


def _sample_ids(n: int, rng: np.random.Generator) -> list[str]:
    """Unique 6-digit ids, one duplicated id (003397) and a few suffixed ids when n >= 20."""
    nums = rng.choice(np.arange(1, max(MAX_ID, 2 * n) + 1), size=n, replace=False)
    nums.sort()
    ids = [f"{x:06d}" for x in nums]
    if n < 20:
        return ids
    if DUPLICATED_ID not in nums:
        ids[int(rng.integers(n))] = f"{DUPLICATED_ID:06d}"
    dup = ids.index(f"{DUPLICATED_ID:06d}")
    others = [i for i in rng.permutation(n) if i != dup]
    ids[others[0]] = ids[dup]
    n_suffixed = max(1, round(SUFFIXED_P * n))
    base = ""
    for k, i in enumerate(others[1 : 1 + n_suffixed]):
        base = base if k % 2 == 1 else ids[i]  # pairs share a base: 001774-1, 001774-2
        ids[i] = f"{base}-{k % 2 + 1}"
    return ids


def sample_people(n: int, seed: int = 0) -> pd.DataFrame:
    """Train people with TRUE labels: id, gender, age from the real data's priors (the people that
    `generate(people=n, seed=seed)` draws, before noise and sorting)."""
    rng = np.random.default_rng([seed, 21])
    return _sample_train(n, rng)


def _sample_train(n: int, rng: np.random.Generator) -> pd.DataFrame:
    ids = _sample_ids(n, rng)
    gender, age = _sample_labels(n, rng)
    df = pd.DataFrame({"id": ids, "gender": gender, "age": age.astype(int)})
    dup = df.index[df["id"] == f"{DUPLICATED_ID:06d}"]
    if len(dup) == 2:  # like 003397_female_Asian_19 / _20: same gender, next age, different folder
        a, b = dup
        df.loc[b, "gender"] = df.loc[a, "gender"]
        df.loc[b, "age"] = df.loc[a, "age"] + (1 if df.loc[a, "age"] < 60 else -1)
    return df


def _count(rate: float, n: int, at_least_one: bool) -> int:
    return max(int(at_least_one), round(rate * n))


def _wrong_age(age: int, rng: np.random.Generator) -> int:
    if age < 30:
        return int(rng.integers(31, 49))
    if age >= 60:
        return int(rng.integers(45, 60))
    return 60 if age >= 55 else int(rng.integers(20, 29))


def _plant_noise(people: pd.DataFrame, rng: np.random.Generator) -> tuple[pd.DataFrame, list[dict]]:
    """Add given_gender/given_age/swap columns and pick outlier photos; returns (people, noise rows)."""
    n = len(people)
    df = people.copy()
    df["given_gender"] = df["gender"]
    df["given_age"] = df["age"]
    df["swap"] = False
    many = n >= 100
    counts = {kind: _count(p, n, many) for kind, p in NOISE_P.items()}
    duplicated = df["id"].duplicated(keep=False).to_numpy()
    pool = [i for i in rng.permutation(n) if not duplicated[i]]
    picks: dict[str, list[int]] = {}
    for kind, k in counts.items():
        picks[kind], pool = pool[:k], pool[k:]
    for i in picks["gender"]:
        df.loc[i, "given_gender"] = "male" if df.loc[i, "gender"] == "female" else "female"
    for i in picks["age"]:
        df.loc[i, "given_age"] = _wrong_age(int(df.loc[i, "age"]), rng)
    df.loc[picks["mask_swap"], "swap"] = True
    n_out = min(_count(OUTLIER_P, 7 * n, many), len(pool))
    outliers = {int(i): MASK_STEMS[int(rng.integers(7))] for i in pool[:n_out]}
    df["outlier"] = [outliers.get(i, "") for i in range(n)]
    df["path"] = [_folder(*r) for r in zip(df["id"], df["given_gender"], df["given_age"], strict=True)]
    kinds = {i: kind for kind, rows in picks.items() for i in rows}
    kinds.update(dict.fromkeys(outliers, "outlier"))
    return df, [{"person": i, "kind": kind} for i, kind in kinds.items()]


def _noise_rows(df: pd.DataFrame, marks: list[dict]) -> pd.DataFrame:
    rows = []
    for mark in marks:
        r = df.loc[mark["person"]]
        kind = mark["kind"]
        if kind == "gender":
            row = ("", r["given_gender"], r["gender"])
        elif kind == "age":
            row = ("", str(r["given_age"]), str(r["age"]))
        elif kind == "mask_swap":  # file stems as given, and what each file really shows
            row = ("", "incorrect_mask/normal", "normal/incorrect_mask")
        else:
            stem = r["outlier"]
            row = (stem + r["exts"][MASK_STEMS.index(stem)], stem, "outlier")
        rows.append((r["path"], *row, kind))
    noise = pd.DataFrame(rows, columns=["path", "image", "given", "true", "kind"])
    return noise[["path", "image", "kind", "given", "true"]].sort_values(["path", "kind"], ignore_index=True)


# --- drawing ----------------------------------------------------------------------------------------


def _lerp(a, b, t: float) -> np.ndarray:
    return np.asarray(a, float) * (1 - t) + np.asarray(b, float) * t


def _rgb(c) -> tuple[int, int, int]:
    return tuple(min(255, max(0, round(float(v)))) for v in c)


def _ramp(x: float, lo: float, hi: float) -> float:
    return float(np.clip((x - lo) / (hi - lo), 0.0, 1.0))


def femaleness(rng: np.random.Generator, female: np.ndarray) -> np.ndarray:
    """How female each person's gender cues look: 1 or 0 for most, uniform in GENDER_AMBIGUITY for the
    GENDER_AMBIGUOUS_P share (rounded to whole people, as in the real data: 14 of 2,700) whose gender no photo
    settles (listed in truth/disputed.csv)."""
    female = np.asarray(female, bool)
    ambiguous = np.zeros(len(female), bool)
    ambiguous[rng.choice(len(female), round(GENDER_AMBIGUOUS_P * len(female)), replace=False)] = True
    middle = rng.uniform(*GENDER_AMBIGUITY, size=len(female))
    return np.where(ambiguous, middle, female.astype(float))


def _identity(rng: np.random.Generator, f: float, age: int) -> dict:
    """Everything that stays fixed across one person's 7 photos. Each gender cue's centre moves from the
    male to the female one with the person's femaleness f (see `femaleness`); the disputed people's cues
    also vary less, so that they look alike, midway, and a model learns that such a look settles nothing."""
    spread = 1.0 if f in (0.0, 1.0) else GENDER_AMBIGUOUS_SPREAD
    shown_age = age + rng.normal(0, AGE_PERSON_NOISE)
    s = AGE_CUE_STRENGTH
    grey = float(np.clip(_ramp(shown_age, 26, 64) ** 1.2 * s + rng.normal(0, 0.04), 0, 0.95))
    desat = _ramp(shown_age, 18, 62) * 0.4 * s
    skin = _lerp((250, 218, 192), (178, 126, 94), rng.uniform()) + rng.normal(0, 6, 3)
    skin = _lerp(skin, [skin.mean()] * 3, desat) * (1 - 0.08 * desat)
    hair = _lerp((22, 18, 16), (120, 82, 50), rng.uniform() ** 2)
    hair = _lerp(hair, (205, 205, 200), grey)
    lip_red = 0.225 + 0.475 * f + (rng.uniform() - 0.5) * (0.45 + 0.15 * f) * spread  # U(0, .45) to U(.4, 1)
    bg_top, bg_bottom = rng.uniform(40, 235, 3), rng.uniform(40, 235, 3)
    return {
        "skin": skin,
        "hair": hair,
        "hair_len": float(np.clip(0.12 + 0.63 * f + rng.normal() * (0.08 + 0.04 * f) * spread, 0, 1)),  # long > .35
        "bangs": bool(rng.random() < 0.45),
        "face_w": float(0.97 - 0.12 * f + rng.normal() * 0.045 * spread),
        "head": float(rng.uniform(0.9, 1.08)),
        "brow": float(np.clip(1.25 - 0.55 * f + rng.normal() * 0.22 * spread, 0.35, 2.0)),
        "beard": float(rng.uniform(0.2, 0.65)) if f == 0 and rng.random() < 0.5 else 0.0,
        "lips": _lerp(skin * 0.82, (200, 45, 70), lip_red),
        "wrinkles": _ramp(shown_age, 24, 62) * s * rng.uniform(0.75, 1.25),
        "eyebags": _ramp(shown_age, 28, 64) * s * rng.uniform(0.7, 1.3),
        "eye_gap": float(rng.uniform(0.28, 0.38)),
        "eye_size": float(rng.uniform(0.8, 1.2)),
        "clothes": rng.uniform(20, 235, 3),
        "collar": int(rng.integers(3)),
        "bg": (bg_top, bg_bottom),
        "bg_box": (rng.uniform(0, 0.8, 2), rng.uniform(0.1, 0.4, 2), rng.uniform(30, 240, 3)),
        "styles": [int(i) for i in rng.permutation(len(MASK_STYLES))[:5]],
        "low_mask": "chin" if rng.random() < 0.5 else "nose",
    }


def _background(ident: dict, w: int, h: int) -> Image.Image:
    top, bottom = ident["bg"]
    t = np.linspace(0, 1, h, dtype=np.float32)[:, None, None]
    arr = np.broadcast_to(top * (1 - t) + bottom * t, (h, w, 3)).astype(np.uint8)
    img = Image.fromarray(arr)
    (x, y), (bw, bh), colour = ident["bg_box"]
    ImageDraw.Draw(img).rectangle([x * w, y * h, (x + bw) * w, (y + bh) * h], fill=_rgb(colour))
    return img


class _Head:
    """Draws in head units: origin at the face centre, r = half the face height, turned by `angle`
    degrees about the neck (shapes are polygons, so turning costs nothing)."""

    def __init__(self, draw: ImageDraw.ImageDraw, cx: float, cy: float, r: float, angle: float = 0.0):
        self.d, self.cx, self.cy, self.r = draw, cx, cy, r
        self.cos, self.sin = math.cos(math.radians(angle)), math.sin(math.radians(angle))
        self.n = int(np.clip(r / 2, 12, 48))  # polygon points per ellipse

    def p(self, x: float, y: float) -> tuple[float, float]:
        ((px, py),) = self._xy([(x, y)])
        return px, py

    def _xy(self, pts) -> np.ndarray:
        """Head units -> pixel coordinates, shape (n, 2)."""
        xy = np.asarray(list(pts) if not isinstance(pts, np.ndarray) else pts, dtype=float).reshape(-1, 2)
        x, y = xy[:, 0], xy[:, 1] - 1.3  # pivot at the neck
        turned = np.stack([x * self.cos - y * self.sin, x * self.sin + y * self.cos + 1.3], axis=1)
        return turned * self.r + (self.cx, self.cy)

    def width(self, w: float) -> int:
        return max(1, round(w * self.r))

    def poly(self, pts, fill) -> None:
        self.d.polygon(self._xy(pts).ravel().tolist(), fill=_rgb(fill))

    def line(self, pts, fill, w: float) -> None:
        self.d.line(self._xy(pts).ravel().tolist(), fill=_rgb(fill), width=self.width(w))

    def chord(self, x0: float, y0: float, x1: float, y1: float, start: float, end: float, fill) -> None:
        """Part of the ellipse in the box between two angles (degrees, clockwise from 3 o'clock)."""
        t = np.radians(np.linspace(start, end, max(4, round(self.n * (end - start) / 360))))
        mx, my, ax, ay = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2, (y1 - y0) / 2
        self.poly(np.stack([mx + ax * np.cos(t), my + ay * np.sin(t)], axis=1), fill)

    def ellipse(self, x0: float, y0: float, x1: float, y1: float, fill) -> None:
        self.chord(x0, y0, x1, y1, 0, 360, fill)

    def rect(self, x0: float, y0: float, x1: float, y1: float, fill) -> None:
        self.poly([(x0, y0), (x1, y0), (x1, y1), (x0, y1)], fill)


def _draw_face(hd: _Head, idt: dict) -> None:
    fw, skin, hair = 0.82 * idt["face_w"], idt["skin"], idt["hair"]
    if idt["hair_len"] > 0.35:  # hair behind the head, longer with hair_len
        bottom = 0.7 + 2.6 * (idt["hair_len"] - 0.35)
        hd.chord(-fw * 1.25, -1.2, fw * 1.25, 0.2, 180, 360, hair * 0.9)
        hd.rect(-fw * 1.25, -0.5, fw * 1.25, bottom - 0.3, hair * 0.9)
        hd.chord(-fw * 1.25, bottom - 0.6, fw * 1.25, bottom, 0, 180, hair * 0.9)
    for sx in (-1, 1):
        hd.ellipse(sx * fw - 0.12, -0.2, sx * fw + 0.12, 0.25, skin * 0.95)
    hd.ellipse(-fw, -1.12, fw, 1.2, skin)
    wr = idt["wrinkles"]
    line_col = skin * (1 - 0.4 * min(wr, 1.2))
    for k in range(round(5 * wr)):  # forehead lines
        y = -0.72 + 0.11 * k
        hd.line([(-0.38, y), (0, y - 0.03), (0.38, y)], line_col, 0.022)
    if idt["beard"]:
        beard = _lerp(skin, hair * 0.6, idt["beard"])
        hd.chord(-fw, -1.12, fw, 1.2, 25, 155, beard)
        hd.ellipse(-0.3, 0.42, 0.3, 0.85, beard)
    gap, es = idt["eye_gap"], idt["eye_size"]
    for sx in (-1, 1):
        ex = sx * gap
        if idt["eyebags"] > 0:
            bag = skin * (1 - 0.3 * min(idt["eyebags"], 1.3))
            hd.ellipse(ex - 0.17, -0.12, ex + 0.17, 0.06, bag)
        hd.ellipse(ex - 0.15 * es, -0.22, ex + 0.15 * es, -0.1, (245, 245, 240))
        hd.ellipse(ex - 0.065, -0.225, ex + 0.065, -0.095, (40, 30, 25))
        hd.line([(ex - sx * 0.15, -0.36), (ex + sx * 0.2, -0.38)], hair * 0.8, 0.045 * idt["brow"])
        if wr > 0.35:  # crow's feet and smile lines
            hd.line([(sx * (gap + 0.22), -0.2), (sx * (gap + 0.3), -0.12)], line_col, 0.018)
            hd.line([(sx * 0.2, 0.28), (sx * 0.33, 0.62)], line_col, 0.022)
    hd.poly([(0, -0.15), (-0.11, 0.3), (0.11, 0.3)], skin * 0.88)
    hd.ellipse(-0.24, 0.52, 0.24, 0.72, idt["lips"])
    hd.line([(-0.2, 0.62), (0.2, 0.62)], idt["lips"] * 0.6, 0.02)
    top = -0.45 if idt["bangs"] and idt["hair_len"] > 0.25 else -0.72
    hd.chord(-fw * 1.08, -1.35, fw * 1.08, 2 * top + 1.35, 180, 360, hair)
    if idt["hair_len"] > 0.35:
        for sx in (-1, 1):
            hd.rect(sx * fw, -0.8, sx * fw * 1.1, 0.3, hair)


def _draw_mask(hd: _Head, idt: dict, style: int, where: str) -> None:
    """where: 'wear' over nose and mouth, 'nose' below the nose, 'chin' down on the chin."""
    fw = 0.82 * idt["face_w"]
    _, colour, pattern = MASK_STYLES[style]
    top, bottom = {"wear": (-0.06, 1.2), "nose": (0.36, 1.24), "chin": (0.8, 1.3)}[where]
    span = bottom - top
    pts = [
        (-0.95 * fw, top + 0.1 * span),
        (-0.3, top + 0.02),
        (0, top),
        (0.3, top + 0.02),
        (0.95 * fw, top + 0.1 * span),
        (0.92 * fw, bottom - 0.35 * span),
        (0.4, bottom - 0.06 * span),
        (0, bottom),
        (-0.4, bottom - 0.06 * span),
        (-0.92 * fw, bottom - 0.35 * span),
    ]
    hd.poly(pts, colour)
    dark = np.asarray(colour, float) * 0.7
    for sx in (-1, 1):  # ear loops
        hd.line([(sx * 0.95 * fw, top + 0.1 * span), (sx * (fw + 0.05), -0.05)], dark, 0.025)
        hd.line([(sx * 0.92 * fw, bottom - 0.35 * span), (sx * (fw + 0.05), 0.15)], dark, 0.025)
    if pattern == "pleats":
        for f in (0.3, 0.5, 0.7):
            y = top + f * span
            hd.line([(-0.8 * fw, y), (0.8 * fw, y)], dark, 0.02)
    elif pattern == "seam":
        hd.line([(0, top), (0, bottom)], dark, 0.025)
    elif pattern == "dots":
        for x in np.arange(-0.6, 0.61, 0.2):
            for y in np.arange(top + 0.12 * span, bottom - 0.1 * span, 0.2):
                hd.ellipse(x - 0.035, y - 0.035, x + 0.035, y + 0.035, (235, 225, 120))
    elif pattern == "stripes":
        for x in np.arange(-0.6, 0.61, 0.24):
            hd.line([(x, top + 0.05 * span), (x, bottom - 0.08 * span)], (240, 236, 230), 0.05)


def _supersample(w: int) -> int:
    return max(1, math.ceil(192 / w))


def _draw_photo(idt: dict, state: str, style: int, bg: Image.Image, rng: np.random.Generator) -> Image.Image:
    """One photo before light and noise: body, head (turned), mask by state (wear, incorrect, normal)."""
    W, H = bg.size
    dx, dy = rng.normal(0, 0.025) * W, rng.normal(0, 0.02) * H
    scale, angle = rng.normal(1, 0.035), rng.normal(0, 5)
    img = bg.copy()
    draw = ImageDraw.Draw(img)
    r = 0.19 * min(W, 0.75 * H) * idt["head"] * scale
    cx, cy = W / 2 + dx, 0.42 * H + dy
    body = _Head(draw, cx, cy, r)
    body.rect(-0.3, 0.8, 0.3, 1.8, idt["skin"] * 0.9)
    body.ellipse(-2.0, 1.65, 2.0, 4.5, idt["clothes"])
    if idt["collar"]:
        body.poly([(-0.45, 1.68), (0, 2.05 + 0.25 * idt["collar"]), (0.45, 1.68)], idt["skin"] * 0.9)
    hd = _Head(draw, cx, cy, r, angle)
    _draw_face(hd, idt)
    if state != "normal":
        _draw_mask(hd, idt, style, "wear" if state == "wear" else idt["low_mask"])
    return img


def _noise_bank(rng: np.random.Generator, w: int, h: int) -> Image.Image:
    """Luminance noise around 128, a quarter larger than a photo; each photo takes a random crop."""
    noise = rng.standard_normal((h + h // 4 + 1, w + w // 4 + 1), dtype=np.float32) * PIXEL_NOISE + 128
    grey = Image.fromarray(np.clip(np.rint(noise), 0, 255).astype(np.uint8))
    return Image.merge("RGB", (grey, grey, grey))


def _light(img: Image.Image, bank: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Brightness, contrast and tint of this photo, then pixel noise."""
    gain = rng.normal(1, 0.08) * (1 + rng.normal(0, 0.035, 3))
    contrast = rng.normal(1, 0.08)
    x = np.arange(256, dtype=np.float32)
    lut = np.concatenate([np.clip(((x - 128) * contrast + 128) * g, 0, 255) for g in gain]).astype(np.uint8)
    img = img.point(lut.tolist())
    w, h = img.size
    ox, oy = int(rng.integers(bank.width - w + 1)), int(rng.integers(bank.height - h + 1))
    return ImageChops.add(img, bank.crop((ox, oy, ox + w, oy + h)), scale=1.0, offset=-128)


def _outlier(photo: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Not a proper photo of the person: blank, heavily corrupted or random content."""
    w, h = photo.size
    kind = int(rng.integers(3))
    if kind == 0:
        arr = np.full((h, w, 3), rng.uniform(0, 255, 3), np.float32) + rng.normal(0, 4, (h, w, 1))
    elif kind == 1:
        arr = np.asarray(photo, np.float32).copy()
        bh, bw = max(1, h // 8), max(1, w // 6)
        for _ in range(30):
            y, x = int(rng.integers(0, h - bh + 1)), int(rng.integers(0, w - bw + 1))
            arr[y : y + bh, x : x + bw] = rng.uniform(0, 255, 3)
    else:
        arr = rng.uniform(0, 255, (max(1, h // 8), max(1, w // 8), 3))
        arr = np.asarray(Image.fromarray(arr.astype(np.uint8)).resize((w, h), Image.NEAREST), np.float32)
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


# --- writing ----------------------------------------------------------------------------------------


def _save(img: Image.Image, path: Path) -> None:
    """Encode, write to a hidden temporary name, then move into place."""
    buf = io.BytesIO()
    if path.suffix == ".png":
        img.save(buf, format="PNG", compress_level=3)
    else:
        img.save(buf, format="JPEG", quality=JPEG_QUALITY)
    _write_bytes(buf.getvalue(), path)


def _write_bytes(data: bytes, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.part")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _apple_double(rng: np.random.Generator) -> bytes:
    """A macOS resource-fork file: an AppleDouble header and a few hundred bytes of junk."""
    header = b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        "
    return header + rng.integers(0, 256, int(rng.integers(150, 500)), dtype=np.uint8).tobytes()


def _render_person(job: dict) -> int:
    """Draw and write one person's 7 photos; job['names'] are the file paths in MASK_STEMS order."""
    rng = np.random.default_rng(job["rng"])
    size = tuple(job["size"])
    idt = _identity(rng, job["femaleness"], job["age"])
    ss = _supersample(size[0])
    bg = _background(idt, size[0] * ss, size[1] * ss)
    mask_style = list(idt["styles"])
    low_style = idt["styles"][int(rng.integers(5))]
    states = {stem: ("wear" if MASK_LABEL[stem] == 0 else stem) for stem in MASK_STEMS}
    states["incorrect_mask"] = "incorrect"
    if job.get("swap"):
        states["incorrect_mask"], states["normal"] = states["normal"], states["incorrect_mask"]
    bank = _noise_bank(rng, *size)
    for stem, name in zip(MASK_STEMS, job["names"], strict=True):
        style = mask_style.pop(0) if stem.startswith("mask") else low_style
        photo = _draw_photo(idt, states[stem], style, bg, rng)
        if ss > 1:
            photo = photo.resize(size, Image.BOX)
        photo = _light(photo, bank, rng)
        if stem == job.get("outlier"):
            photo = _outlier(photo, rng)
        _save(photo, Path(name))
    if job.get("hidden"):
        target = Path(job["names"][int(rng.integers(7))])
        _write_bytes(_apple_double(rng), target.with_name("._" + target.name))
    return len(job["names"])


def _run_jobs(jobs: list[dict], workers: int, progress: bool) -> None:
    bar = tqdm(total=sum(len(j["names"]) for j in jobs), unit="img", disable=not progress, desc="synthetic")
    if workers <= 1:
        for job in jobs:
            bar.update(_render_person(job))
    else:
        chunk = max(1, min(16, len(jobs) // (workers * 8)))
        with Pool(workers) as pool:
            for n in pool.imap_unordered(_render_person, jobs, chunksize=chunk):
                bar.update(n)
    bar.close()


def _eval_name(seed: int, idx: int, stem: str) -> str:
    return hashlib.sha1(f"synthetic-eval:{seed}:{idx}:{stem}".encode()).hexdigest() + ".jpg"


def _check_args(out: Path, people: int, eval_people: int, size: Sequence[int], seed: int, overwrite: bool):
    if people < 1:
        raise ValueError(f"people must be >= 1, got {people}")
    if eval_people < 0:
        raise ValueError(f"eval_people must be >= 0, got {eval_people}")
    if len(size) != 2 or min(size) < 1:
        raise ValueError(f"size must be two positive numbers (width, height), got {tuple(size)}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    existing = [d for d in ("train", "eval") if (out / d).exists()]
    if existing and not overwrite:
        raise ValueError(f"out {out} already contains {'/ and '.join(existing)}/; pass overwrite=True (--overwrite)")


def generate(
    out: Path | str,
    people: int = 2700,
    eval_people: int = 1800,
    size: tuple[int, int] = (384, 512),
    seed: int = 0,
    workers: int | None = None,
    progress: bool = True,
    overwrite: bool = False,
) -> Path:
    """Write a synthetic data set (train/, eval/, truth/) under `out`; size is (width, height)."""
    out = Path(out)
    size = (int(size[0]), int(size[1]))
    _check_args(out, people, eval_people, size, seed, overwrite)
    for d in ("train", "eval", "truth"):
        shutil.rmtree(out / d, ignore_errors=True)
    train_dir, eval_dir, truth_dir = out / "train" / "images", out / "eval" / "images", out / "truth"
    for d in (train_dir, eval_dir, truth_dir):
        d.mkdir(parents=True, exist_ok=True)

    rng = np.random.default_rng([seed, 21])
    train, marks = _plant_noise(_sample_train(people, rng), rng)
    ext_draw = rng.random((people, 7))
    ext = np.where(ext_draw < TRAIN_EXT_P[".png"], ".png", ".jpg").astype(object)  # room for ".jpeg"
    ext[(ext_draw >= TRAIN_EXT_P[".png"]) & (ext_draw < TRAIN_EXT_P[".png"] + TRAIN_EXT_P[".jpeg"])] = ".jpeg"
    train["exts"] = list(ext)
    hidden = rng.random(people) < HIDDEN_FOLDER_P
    if people >= 20 and not hidden.any():
        hidden[int(rng.integers(people))] = True
    train["hidden"] = hidden
    noise = _noise_rows(train, marks)
    train["femaleness"] = femaleness(np.random.default_rng([seed, 23]), train["gender"] == "female")
    order = train.sort_values("path", kind="stable").index
    jobs = []
    for idx, i in enumerate(order):
        r = train.loc[i]
        (train_dir / r["path"]).mkdir(exist_ok=True)
        names = [str(train_dir / r["path"] / (s + e)) for s, e in zip(MASK_STEMS, r["exts"], strict=True)]
        job = {
            "rng": [seed, 11, idx],
            "size": size,
            "femaleness": r["femaleness"],
            "age": int(r["age"]),
            "names": names,
        }
        jobs.append(job | {"swap": bool(r["swap"]), "outlier": r["outlier"], "hidden": bool(r["hidden"])})

    erng = np.random.default_rng([seed, 22])
    e_gender, e_age = _sample_labels(eval_people, erng)
    e_female = femaleness(np.random.default_rng([seed, 24]), e_gender == "female")
    answers = []
    for idx in range(eval_people):
        names = [_eval_name(seed, idx, stem) for stem in MASK_STEMS]
        jobs.append(
            {"rng": [seed, 12, idx], "size": size, "femaleness": e_female[idx], "age": int(e_age[idx])}
            | {"names": [str(eval_dir / n) for n in names]}
        )
        g, a = int(e_gender[idx] == "female"), int(age_group(e_age[idx]))
        answers += [
            (n, MASK_LABEL[s] * 6 + g * 3 + a, MASK_LABEL[s], g, a) for s, n in zip(MASK_STEMS, names, strict=True)
        ]
    answers = pd.DataFrame(answers, columns=["ImageID", "ans", "mask", "gender", "age_group"])
    answers = answers.iloc[erng.permutation(len(answers))].reset_index(drop=True)
    n_hidden_eval = max(1, round(0.001 * len(answers))) if len(answers) else 0
    hidden_eval = [answers["ImageID"].iloc[int(i)] for i in erng.choice(len(answers), n_hidden_eval, False)]

    _run_jobs(jobs, (os.cpu_count() or 1) if workers is None else workers, progress)

    for name in hidden_eval:
        _write_bytes(_apple_double(erng), eval_dir / ("._" + name))
    csv = train.loc[order, ["id", "given_gender", "given_age", "path"]]
    csv = csv.rename(columns={"given_gender": "gender", "given_age": "age"}).assign(race="Asian")
    _write_csv(csv[["id", "gender", "race", "age", "path"]], out / "train" / "train.csv")
    _write_csv(answers[["ImageID"]].assign(ans=0), out / "eval" / "info.csv")
    _write_csv(answers, truth_dir / "eval_answers.csv")
    _write_csv(noise, truth_dir / "noise.csv")
    _write_csv(_disputed_rows(train.loc[order]), truth_dir / "disputed.csv")
    return out


def _disputed_rows(train: pd.DataFrame) -> pd.DataFrame:
    """truth/disputed.csv: the train people whose photos sit between the genders (path, kind, given, true,
    femaleness). Their labels may be right; no image model can confirm or refute them."""
    ambiguous = train[(train["femaleness"] > 0) & (train["femaleness"] < 1)]
    return pd.DataFrame(
        {
            "path": ambiguous["path"],
            "kind": "gender",
            "given": ambiguous["given_gender"],
            "true": ambiguous["gender"],
            "femaleness": ambiguous["femaleness"].round(3),
        }
    )


def _write_csv(df: pd.DataFrame, path: Path) -> None:
    _write_bytes(df.to_csv(index=False, lineterminator="\n").encode(), path)


# --- preview ----------------------------------------------------------------------------------------


def write_preview(data_dir: Path | str, out_png: Path | str, people: int = 6) -> Path:
    """Contact sheet of a generated set: `people` train folders x their 7 photos, captioned."""
    data_dir, out_png = Path(data_dir), Path(out_png)
    table = pd.read_csv(data_dir / "train" / "train.csv", dtype={"id": str})
    rows = table.iloc[np.linspace(0, len(table) - 1, min(people, len(table))).round().astype(int)]
    thumb_w, font = 150, ImageFont.load_default()
    cells = []
    for folder in rows["path"]:
        files = {p.stem: p for p in (data_dir / "train" / "images" / folder).iterdir() if not p.name.startswith(".")}
        cells.append([(folder, files[stem]) for stem in MASK_STEMS])
    with Image.open(cells[0][0][1]) as first:
        thumb_h = round(thumb_w * first.height / first.width)
    cap_h = 42
    sheet = Image.new("RGB", (7 * thumb_w, len(cells) * (thumb_h + cap_h)), "white")
    draw = ImageDraw.Draw(sheet)
    for r, row in enumerate(cells):
        for c, (folder, path) in enumerate(row):
            x, y = c * thumb_w, r * (thumb_h + cap_h)
            with Image.open(path) as im:
                sheet.paste(im.convert("RGB").resize((thumb_w - 4, thumb_h - 4)), (x + 2, y + 2))
            text = f"{folder}\n{path.name}\nmask label {MASK_LABEL[path.stem]}"
            draw.multiline_text((x + 3, y + thumb_h), text, fill="black", font=font, spacing=2)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out_png)
    return out_png


# --- command line -----------------------------------------------------------------------------------


def _parse_size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--size must look like 384x512 (WIDTHxHEIGHT), got {text!r}") from None
    return w, h


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m datamodules.synthetic", description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True, type=Path, help="folder to create train/, eval/ and truth/ in")
    ap.add_argument("--people", type=int, help="train people (folders), default 2700")
    ap.add_argument("--eval-people", type=int, help="eval people (7 photos each), default 1800")
    ap.add_argument("--size", type=_parse_size, help="WIDTHxHEIGHT, default 384x512")
    ap.add_argument("--seed", type=int, help="default 0")
    ap.add_argument("--workers", type=int, default=None, help="processes, default all cores")
    ap.add_argument("--overwrite", action="store_true", help="replace an existing train/ and eval/")
    ap.add_argument(
        "--preview", type=Path, help="also write a contact sheet PNG; alone with an existing --out, only that"
    )
    ap.add_argument("--quiet", action="store_true", help="no progress bar")
    args = ap.parse_args(argv)

    gen_args = (args.people, args.eval_people, args.size, args.seed)
    exists = (args.out / "train" / "train.csv").exists()
    preview_only = args.preview and exists and not args.overwrite and all(a is None for a in gen_args)
    if not preview_only:
        start = time.perf_counter()
        try:
            generate(
                args.out,
                people=2700 if args.people is None else args.people,
                eval_people=1800 if args.eval_people is None else args.eval_people,
                size=args.size or (384, 512),
                seed=args.seed or 0,
                workers=args.workers,
                progress=not args.quiet,
                overwrite=args.overwrite,
            )
        except ValueError as err:
            ap.error(str(err))
        print(f"wrote {args.out} in {time.perf_counter() - start:.1f}s", file=sys.stderr)
    if args.preview:
        print(f"wrote {write_preview(args.out, args.preview)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
