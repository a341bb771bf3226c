"""Drawing one synthetic photo: a person's fixed look, their face and mask (by mask state and style), the
background, per-photo light and pixel noise, and the outlier photos that are no proper photo at all."""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
from PIL import Image, ImageChops, ImageDraw

from core.tasks import MASK_FILES
from synthetic.people import MASK_STEMS

# --- difficulty knobs -------------------------------------------------------------------------------
AGE_CUE_STRENGTH = 1.0  # scales greying, wrinkles, eye bags and skin desaturation
AGE_PERSON_NOISE = 3.0  # sd in years between a person's true age and the age their face shows
GENDER_AMBIGUOUS_SPREAD = 0.25  # disputed people's cues vary this much less than other people's: they look alike
PIXEL_NOISE = 5.0  # sd of per-pixel luminance noise (0..255 scale)

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


def _lerp(a, b, t: float) -> np.ndarray:
    return np.asarray(a, float) * (1 - t) + np.asarray(b, float) * t


def _rgb(c) -> tuple[int, int, int]:
    return tuple(min(255, max(0, round(float(v)))) for v in c)


def _ramp(x: float, lo: float, hi: float) -> float:
    return float(np.clip((x - lo) / (hi - lo), 0.0, 1.0))


def _identity(rng: np.random.Generator, f: float, age: int) -> dict:
    """Everything that stays fixed across one person's 7 photos. Each gender cue's centre moves from the
    male to the female one with the person's femaleness f (see `synthetic.people.femaleness`); the disputed
    people's cues also vary less, so that they look alike, midway, and a model learns that such a look settles
    nothing."""
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


def draw_person(
    rng: np.random.Generator, size: tuple[int, int], femaleness: float, age: int, swap: bool = False, outlier: str = ""
) -> Iterator[Image.Image]:
    """One person's 7 photos (size is (width, height)), in MASK_STEMS order, each drawn from `rng` when it is
    asked for. `swap`: the incorrect_mask and normal photos show each other's state; `outlier`: the stem whose
    photo is replaced by an outlier."""
    idt = _identity(rng, femaleness, age)
    ss = _supersample(size[0])
    bg = _background(idt, size[0] * ss, size[1] * ss)
    mask_style = list(idt["styles"])
    low_style = idt["styles"][int(rng.integers(5))]
    states = {stem: ("wear" if MASK_FILES[stem] == 0 else stem) for stem in MASK_STEMS}
    states["incorrect_mask"] = "incorrect"
    if swap:
        states["incorrect_mask"], states["normal"] = states["normal"], states["incorrect_mask"]
    bank = _noise_bank(rng, *size)
    for stem in MASK_STEMS:
        style = mask_style.pop(0) if stem.startswith("mask") else low_style
        photo = _draw_photo(idt, states[stem], style, bg, rng)
        if ss > 1:
            photo = photo.resize(size, Image.BOX)
        photo = _light(photo, bank, rng)
        if stem == outlier:
            photo = _outlier(photo, rng)
        yield photo
