"""What the noise finder writes besides suspects.csv: the draft corrections file (an edited one is never
overwritten), the contact sheet of the top of the ranking, and the W&B table."""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
from collections.abc import Sequence
from datetime import date
from pathlib import Path

import pandas as pd
from PIL import Image, ImageDraw, ImageFont
from tqdm.auto import tqdm

from analysis.noise.rules import group_range
from analysis.noise.suspects import KINDS, SUSPECT_COLUMNS, image_stem
from callbacks.wandb_run import init_run
from core.atomic import write_text_atomic
from core.tasks import TASKS
from datamodules.relabel import apply_relabels
from rundir.layout import noise_dir

log = logging.getLogger("noise")

SUSPECTS_NAME = "suspects.csv"
DRAFT_NAME = "corrections-draft.yaml"
SHEET_NAME = "suspects.png"
DRAFT_HASHES = ".drafts.sha256.json"  # beside the drafts: the hash of each as the finder wrote it
COMMAND = "python -m analysis.noise"
RANKED_ONLY_WHY = {"age": "age suggestions", "outlier": "unusual photos"}  # the rules that rank without flagging


def _nearest_age(given_text: str, suggested_text: str, cuts: tuple[int, int]) -> int | None:
    """The age in the suggested group nearest the given age (None when the given age is unknown)."""
    try:
        age = int(given_text.split(" ")[0])
    except ValueError:
        return None
    group = TASKS["age"].classes.index(suggested_text.split(" ")[0])
    lo, hi = group_range(group, cuts)
    return int(min(max(age, lo), hi))


def draft_corrections(
    suspects: pd.DataFrame,
    exp: str,
    cuts: tuple[int, int],
    relabel: Sequence[str] = (),
    draft_path: str = "",
    averaged_with: Sequence[str] = (),
    ranked_only: dict[str, int] | None = None,
) -> str:
    """The flagged units as a corrections file (datamodules/relabel.py's format), one comment of evidence each;
    ``averaged_with``: an ensemble's other experiments; ``ranked_only``: by kind, the units said as left out."""
    if "flag" in suspects:
        suspects = suspects[suspects["flag"].astype(bool)]
    q = json.dumps  # a JSON string is a valid double-quoted YAML string
    path = draft_path or str(noise_dir("runs", [exp, *averaged_with]) / DRAFT_NAME)
    files = ", ".join([*relabel, path])
    averaged = f" (averaged with {', '.join(map(repr, averaged_with))})" if averaged_with else ""
    lines = [
        f"# Draft corrections for experiment {exp!r}{averaged}, from the noise finder ({COMMAND}) on",
        f"# {date.today().isoformat()}: the {len(suspects)} units it flagged (suspects.csv ranks every unit).",
        "# REVIEW BEFORE USE: look at suspects.png and suspects.csv beside this file, delete every entry you",
        "# do not agree with and check each suggested age (the models only tell the age group). Then train with:",
        f"#   python train.py --exp {exp}-clean --set 'data.relabel=[{files}]'",
        "# (keep the corrections files the experiment already used first in the list). Format: datamodules/relabel.py.",
    ]
    left = [f"{n} {RANKED_ONLY_WHY[k]}" for k, n in (ranked_only or {}).items() if n and k in RANKED_ONLY_WHY]
    if left:
        lines += [
            f"# Left out: {' and '.join(left)} past their rules' thresholds. Those rules' flags were mostly",
            "# wrong in every measurement (docs/noise-finder.md), so they are only ranked: see suspects.csv.",
        ]
    sections: dict[str, list[str]] = {"gender": [], "age": [], "swap_incorrect_normal": [], "exclude_images": []}
    for r in suspects.itertuples(index=False):
        note = f"  # {r.confidence:.3f}: {r.reason}"
        if r.kind == "gender":
            sections["gender"].append(f"  {q(r.person)}: {r.suggested}{note}")
        elif r.kind == "age":
            age = _nearest_age(r.given, r.suggested, cuts)
            if age is None:
                sections["age"].append(f"  # {q(r.person)}: AGE  {note.strip()} (given age unknown: fill in)")
            else:
                sections["age"].append(f"  {q(r.person)}: {age}{note}; nearest age in {r.suggested}")
        elif r.kind == "mask_swap":
            sections["swap_incorrect_normal"].append(f"  - {q(r.person)}{note}")
        elif r.kind == "outlier":
            ref = f"{r.person}/{image_stem(r.image)}"
            sections["exclude_images"].append(f"  - {q(ref)}{note}")
            if r.task == "mask":
                pred = r.suggested.split(",")[0].strip()
                sections["exclude_images"].append(f"    # or keep it relabelled: mask: {{{q(ref)}: {pred}}}")
    for name, entries in sections.items():
        empty = "{}" if name in ("gender", "age") else "[]"
        lines += ["", f"{name}: {empty}" if all(e.lstrip().startswith("#") for e in entries) else f"{name}:", *entries]
    lines += [
        "",
        "# Looked at an entry and keep the label as given? List it here instead (a person; for outlier, the",
        '# photo "<person>/<stem>"): the noise finder ranks it last and does not flag it again.',
        "reviewed:",
        *(f"  {kind}: []" for kind in KINDS),
    ]
    return "\n".join(lines) + "\n"


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _hashes(out_dir: Path) -> dict[str, str]:
    record = out_dir / DRAFT_HASHES
    return json.loads(record.read_text()) if record.is_file() else {}


def draft_place(out_dir: Path) -> tuple[Path, Path | None]:
    """Where the draft goes: the first ``corrections-draft[-<n>].yaml`` free or as the finder wrote it; and the
    edited draft left alone."""
    hashes, (stem, suffix) = _hashes(out_dir), DRAFT_NAME.rsplit(".", 1)
    kept = None
    for n in itertools.count(1):
        path = out_dir / (DRAFT_NAME if n == 1 else f"{stem}-{n}.{suffix}")
        if not path.is_file() or hashes.get(path.name) == _sha256(path.read_text()):
            return path, kept
        kept = kept or path
    raise AssertionError("unreachable")


def write_draft(path: Path, text: str) -> None:
    """Write the draft and record its hash beside it (:func:`draft_place` then knows an edited one)."""
    write_text_atomic(path, text)
    hashes = _hashes(path.parent) | {path.name: _sha256(text)}
    write_text_atomic(path.parent / DRAFT_HASHES, json.dumps(hashes, indent=1) + "\n")


def check_draft(path: Path, images: pd.DataFrame) -> pd.DataFrame:
    """Apply the draft with datamodules.relabel (raises DataError if it does not fit); return the changes."""
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
        stems = [image_stem(i) for i in str(row.image).split(";") if i]
        if row.kind == "outlier":
            stems += [s for s in ("normal", "mask1", "mask2") if s not in stems][:2]
    return [(s, files[(row.person, s)]) for s in stems if (row.person, s) in files]


def suspect_cell(row, files: dict) -> Image.Image:
    """One ranked unit: its photos side by side (the suspect first) and four lines of caption, red when flagged."""
    photos, thumb_w, thumb_h = _suspect_photos(row, files)[:3], 96, 128
    cap_h, font = 58, _font(11)
    flagged = bool(getattr(row, "flag", True))
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
    verdict = "FLAGGED" if flagged else "reviewed" if bool(getattr(row, "reviewed", False)) else "not flagged"
    text = (
        f"{row.kind} {verdict}, score {row.score:.2f}\n{row.person}\ngiven: {row.given}\n"
        f"suggested: {row.suggested} ({row.confidence:.3f}, cut {row.threshold:.3f})"
    )
    draw.multiline_text((2, thumb_h + 1), text, fill="red" if flagged else "black", font=font, spacing=2)
    if flagged:
        draw.rectangle([0, 0, cell.width - 1, cell.height - 1], outline="red", width=2)
    return cell


def contact_sheet(suspects: pd.DataFrame, files: dict, out_png: Path, progress: bool = True) -> Path | None:
    """The units' cells in a grid, in ranking order; None when there is nothing to draw."""
    if suspects.empty or not files:
        return None
    rows = list(suspects.itertuples(index=False))
    cells = [suspect_cell(r, files) for r in tqdm(rows, desc="contact sheet", leave=False, disable=not progress)]
    (w, h), columns = cells[0].size, 4
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
    """The top of the ranking as a W&B table with their photos (run group ``<exp>-noise``); never raises."""
    try:
        import wandb  # here, not at the top: slow to import, and only needed when W&B is on

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
