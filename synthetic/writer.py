"""Writing a synthetic data set in the competition layout: the people's render jobs, the image, CSV and macOS
`._` files, `generate()` (train/, eval/, truth/) and `write_preview()` (a contact sheet of a generated set)."""

from __future__ import annotations

import hashlib
import io
import os
import shutil
from collections.abc import Sequence
from multiprocessing import Pool
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw, ImageFont
from tqdm import tqdm

from configs.config import SyntheticConfig
from core.tasks import COMPETITION_AGE_CUTS, GENDERS, MASK_FILES, age_group, class18
from synthetic.drawing import draw_person
from synthetic.people import MASK_STEMS, femaleness, noise_rows, plant_noise, sample_labels, sample_train

DEFAULTS = SyntheticConfig()  # people, eval_people, width, height and seed when not given

# --- difficulty knobs -------------------------------------------------------------------------------
JPEG_QUALITY = 90

# --- layout -----------------------------------------------------------------------------------------
TRAIN_EXT_P = {".png": 0.027, ".jpeg": 0.019}  # the rest are .jpg
HIDDEN_FOLDER_P = 0.03

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
    photos = draw_person(
        rng, tuple(job["size"]), job["femaleness"], job["age"], bool(job.get("swap")), job.get("outlier", "")
    )
    for photo, name in zip(photos, job["names"], strict=True):
        _save(photo, Path(name))
    if job.get("hidden"):  # after the photos: their draws come first from the same rng
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
    people: int = DEFAULTS.people,
    eval_people: int = DEFAULTS.eval_people,
    size: tuple[int, int] = (DEFAULTS.width, DEFAULTS.height),
    seed: int = DEFAULTS.seed,
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
    train, marks = plant_noise(sample_train(people, rng), rng)
    ext_draw = rng.random((people, 7))
    ext = np.where(ext_draw < TRAIN_EXT_P[".png"], ".png", ".jpg").astype(object)  # room for ".jpeg"
    ext[(ext_draw >= TRAIN_EXT_P[".png"]) & (ext_draw < TRAIN_EXT_P[".png"] + TRAIN_EXT_P[".jpeg"])] = ".jpeg"
    train["exts"] = list(ext)
    hidden = rng.random(people) < HIDDEN_FOLDER_P
    if people >= 20 and not hidden.any():
        hidden[int(rng.integers(people))] = True
    train["hidden"] = hidden
    noise = noise_rows(train, marks)
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
    e_gender, e_age = sample_labels(eval_people, erng)
    e_female = femaleness(np.random.default_rng([seed, 24]), e_gender == "female")
    answers = []
    for idx in range(eval_people):
        names = [_eval_name(seed, idx, stem) for stem in MASK_STEMS]
        jobs.append(
            {"rng": [seed, 12, idx], "size": size, "femaleness": e_female[idx], "age": int(e_age[idx])}
            | {"names": [str(eval_dir / n) for n in names]}
        )
        g, a = GENDERS[e_gender[idx]], int(age_group(e_age[idx], COMPETITION_AGE_CUTS))
        answers += [
            (n, int(class18(MASK_FILES[s], g, a)), MASK_FILES[s], g, a, idx)
            for s, n in zip(MASK_STEMS, names, strict=True)
        ]
    # person: which of the eval people the photo shows (the competition does not say; scoring person grouping does)
    answers = pd.DataFrame(answers, columns=["ImageID", "ans", "mask", "gender", "age_group", "person"])
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
            text = f"{folder}\n{path.name}\nmask label {MASK_FILES[path.stem]}"
            draw.multiline_text((x + 3, y + thumb_h), text, fill="black", font=font, spacing=2)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out_png)
    return out_png
