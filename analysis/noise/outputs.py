"""What a run reports and writes: suspects.csv, the draft corrections file (an edited one is never overwritten),
the contact sheet of the top of the ranking, the truth scores and the W&B table."""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import pandas as pd
from PIL import Image, ImageDraw, ImageFont
from tqdm.auto import tqdm

from analysis.noise.reading import DataInfo, Reviewed
from analysis.noise.rules import group_range
from analysis.noise.suspects import FIXED, KINDS, MIN_CONFIDENCE, SUSPECT_COLUMNS, image_stem
from analysis.noise.truth import TRUTH_SCORES_NAME, score_suspects
from callbacks.wandb_run import init_run, resolve_mode
from configs.config import load_config
from core.atomic import atomic_path, write_text_atomic
from core.errors import ConfigError, DataError
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


@dataclass
class NoiseReport:
    """What a run ranked, wrote and measured (the command prints it: :func:`analysis.noise.command.summarize`)."""

    suspects: pd.DataFrame  # every unit ranked, with its flag
    out_dir: Path
    missing: list[str]
    data: DataInfo
    csv: Path | None = None
    draft: Path | None = None
    sheet: Path | None = None
    draft_changes: int | None = None
    truth_scores: dict[str, dict] | None = None  # against DIR/truth/ of a synthetic set
    truth_file: Path | None = None
    frames: dict[str, pd.DataFrame] = field(default_factory=dict)  # the out-of-fold predictions it ranked
    mode: str = FIXED
    min_confidence: float = MIN_CONFIDENCE
    thresholds: dict = field(default_factory=dict)  # the thresholds used, by kind (or task) and class
    seconds: float = 0.0  # reading and ranking, outputs not included
    experiments: list[str] = field(default_factory=list)  # the experiments averaged (the first's config and data)
    reviewed: Reviewed = field(default_factory=Reviewed)  # the units kept as labelled, never flagged
    held_back: dict[str, int] = field(default_factory=dict)  # kind -> reviewed units the rules would have flagged
    tta: str = "none"  # the out-of-fold predictions ranked: flip (oof_flip.csv) or none (oof.csv)
    lacking: dict[str, list[Path]] = field(default_factory=dict)  # exp -> its oof.csv files without oof_flip.csv
    neighbours: list[str] = field(default_factory=list)  # the tasks ranked on the nearest training photos' votes
    ranked_only: dict[str, int] = field(default_factory=dict)  # kind -> units a rank-only rule would flag
    draft_kept: Path | None = None  # an edited draft left as it was (the new one went beside it)


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
    photos, thumb_w, thumb_h, cap_h = _suspect_photos(row, files)[:3], 96, 128, 58
    try:
        font = ImageFont.load_default(size=11)
    except TypeError:  # Pillow < 10.1
        font = ImageFont.load_default()
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
        draw.text((i * thumb_w + 2, 0), stem, fill="red" if suspect else "black", font=font)
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


def write_outputs(report: NoiseReport, top: int, cuts: tuple[int, int], truth, progress: bool) -> None:
    """suspects.csv, the draft, the contact sheet and, on a synthetic set, the truth scores."""
    suspects, names, out_dir = report.suspects, report.experiments, report.out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    report.csv = out_dir / SUSPECTS_NAME
    with atomic_path(report.csv) as tmp:
        suspects.to_csv(tmp, index=False, float_format="%.4f")
    report.draft, report.draft_kept = draft_place(out_dir)
    draft = (suspects, names[0], cuts, report.data.relabel, str(report.draft), names[1:], report.ranked_only)
    write_draft(report.draft, draft_corrections(*draft))
    if report.data.images is not None:
        report.draft_changes = len(check_draft(report.draft, report.data.images))
    report.sheet = contact_sheet(suspects.head(top), report.data.files, out_dir / SHEET_NAME, progress=progress)
    people = set().union(*(f["person"] for f in report.frames.values()))  # fewer than the data's: folds missing
    total = None if report.data.images is None else int(report.data.images["person"].nunique())
    if total is not None and len(people) < total:
        log.warning("ranked %d of the %d people: the others' folds are not trained or not finished", len(people), total)
    else:
        log.info("ranked %d of the %s people", len(people), total or "data's (not read)")
    if truth is not None:
        report.truth_scores = score_suspects(suspects, *truth, people)
        report.truth_file = out_dir / TRUTH_SCORES_NAME
        rule = {"thresholds": report.mode, "min_confidence": report.min_confidence, "used": report.thresholds}
        rule |= {"tta": report.tta, "neighbours": report.neighbours, "reviewed": _reviewed_said(report)}
        rule["ranked_only"] = report.ranked_only
        rule["people_ranked"], rule["people"] = len(people), total  # the truth is scored over the ranked only
        write_text_atomic(report.truth_file, json.dumps({**rule, "scores": report.truth_scores}, indent=2) + "\n")


def _reviewed_said(report: NoiseReport) -> dict:
    return {"files": report.reviewed.files, "units": report.reviewed.counts(), "held_back": report.held_back}


def log_report(report: NoiseReport, config_path: Path | None, wandb_mode: str | None, top: int, progress: bool) -> None:
    """The top of the ranking to W&B, when the experiment's config (or ``wandb_mode``) has it on."""
    try:
        cfg = load_config(None, [config_path] if config_path else [], [])
    except (ConfigError, DataError):
        cfg = load_config(None, [], [])
    cfg.exp = report.experiments[0]
    if wandb_mode:
        cfg.wandb.mode = wandb_mode
    mode = resolve_mode(cfg.wandb.mode)
    if mode == "disabled":
        return
    s = report.suspects
    counts = s.loc[s["flag"], "kind"].value_counts().reindex(KINDS, fill_value=0).to_dict()
    summary = {"exp": report.experiments[0], "ensemble": report.experiments, "thresholds": report.mode}
    summary["min_confidence"] = report.min_confidence
    summary |= {"tta": report.tta, "neighbours": report.neighbours, "reviewed": _reviewed_said(report)}
    summary |= {"missing_tasks": report.missing, "counts": counts, "thresholds_used": report.thresholds}
    log_wandb(cfg, mode, s.head(top), report.data.files, report.sheet, summary, progress)
