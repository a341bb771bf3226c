"""Predict the evaluation images with every fold's checkpoint, merge folds, TTA views and the three task
heads into the 18 classes, and write the submission; or score the out-of-fold predictions.

    python predict.py --exp default --ensemble soft --tta flip
    python predict.py --exp default --oof                 # from the oof.csv files (no TTA)
    python predict.py --exp default --oof --tta flip      # re-predicted with the submission's TTA

By default only the k-fold models (``fold0`` .. ``fold<k-1>``) are used; the ``full`` and ``holdout`` runs
overlap them, so they are used only when named with ``--folds``.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from callbacks.wandb_run import log_report
from configs.config import MULTIHEAD, TASK_NAMES, Config, ConfigError, load_config
from datamodules.atomic import atomic_path, write_text_atomic
from datamodules.cache import ImageCache
from datamodules.datamodule import make_loader
from datamodules.dataset import ImageDataset, worker_death
from datamodules.errors import DataError, run_cli
from datamodules.labels import COMPETITION_AGE_CUTS, TASKS
from datamodules.layout import read_eval
from datamodules.prepare import PreparedData, eval_cache, prepare
from datamodules.transforms import eval_augment, geometry_only
from lightning_modules.checkpoint import model_from_checkpoint
from lightning_modules.ensemble import combine_heads, merge
from lightning_modules.multihead import MultiHeadModule
from lightning_modules.scoring import (
    KEY,
    NAMED_FOLDS,
    fold_dirs,
    join_oof,
    no_oof_error,
    oof_age_cuts,
    prob_columns,
    read_oof_file,
    score_frames,
    score_oof,
    score_predictions,
    task_oof_files,
)
from lightning_modules.task_module import TaskModule

log = logging.getLogger("predict")
CHECKPOINT = "best.ckpt"
RERUN = "run the same command again"  # predict.py has no --resume: it writes its results at the end
TTA_VIEWS = {"none": [False], "flip": [False, True]}  # horizontal flip of each view


def parse_folds(text: str | None) -> list[str] | None:
    """``--folds 0,1,full`` -> ``["0", "1", "full"]``; not given -> None (the k-fold runs)."""
    if text is None:
        return None
    names = [name.strip() for name in text.split(",") if name.strip()]
    bad = [name for name in names if not (name.isdigit() or name in NAMED_FOLDS)]
    if bad or not names:
        raise ConfigError(
            f"--folds {text!r}: expected comma-separated fold names, each a number (0..k-1), holdout or full, "
            "e.g. --folds 0,1,2 or --folds full"
        )
    return list(dict.fromkeys(names))


def find_checkpoints(exp_dir: Path, folds: list[str] | None) -> dict[str, list[Path]]:
    """``task -> [fold checkpoints]`` of ``folds`` (default: the k-fold runs, not ``full`` or ``holdout``); an
    error naming each task that has none."""

    def checkpoints(owner: str) -> list[Path]:
        return [d / CHECKPOINT for d in fold_dirs(exp_dir / owner, folds) if (d / CHECKPOINT).is_file()]

    found = {}
    shared = checkpoints(MULTIHEAD)  # a multihead model serves every task
    for task in TASK_NAMES:
        found[task] = checkpoints(task) + shared
    missing = [t for t, c in found.items() if not c]
    if missing:
        wanted = f" for folds {','.join(folds)}" if folds else ""
        raise DataError(
            f"no {CHECKPOINT} for task(s) {', '.join(missing)}{wanted} under {exp_dir}: "
            f"train them first, e.g. python train.py --task {missing[0]} --exp {exp_dir.name}"
        )
    return found


def retrain_hint(path: Path) -> str:
    """What to do about the bad checkpoint ``runs/<exp>/<task>/fold<k>/best.ckpt``."""
    task, fold, exp = path.parent.parent.name, path.parent.name.removeprefix("fold"), path.parent.parent.parent.name
    return (
        f"retrain that fold (python train.py --task {task} --fold {fold} --exp {exp} --overwrite) or leave it out "
        "with --folds"
    )


def folder_tasks(path: Path) -> list[str]:
    """The tasks a checkpoint serves by where it sits: its task folder's, or every task in ``multihead/``."""
    folder = path.parent.parent.name
    return list(TASK_NAMES) if folder == MULTIHEAD else [folder] if folder in TASK_NAMES else []


def load_model(path: Path, device: torch.device) -> TaskModule | MultiHeadModule:
    """The model saved at ``path``, safely loaded (its class from its own saved settings), on ``device``; a
    DataError naming the file when it is not a readable checkpoint or has no head for the task(s) of the folder
    it sits in (a gender model in ``age/fold0``). A multihead model in a task's folder serves that task."""
    hint = retrain_hint(path)
    model = model_from_checkpoint(path, hint)
    missing = [t for t in folder_tasks(path) if t not in model.head_slices()]
    if missing:
        raise DataError(f"{path} holds a {model.task.name} model, not a model of {' and '.join(missing)}; {hint}")
    model.to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    return model


def inference_device(cfg: Config) -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() and cfg.trainer.accelerator != "cpu" else "cpu")


def preprocessing_key(model: TaskModule) -> str:
    """Models with the same key are fed the very same tensors (one decode for all of them)."""
    aug = model.cfg.augment
    return json.dumps([aug.resize_height, aug.resize_width, aug.crop, model.hparams.mean, model.hparams.std])


def check_compatible(models: dict[Path, TaskModule], age_paths: list[Path] | None = None) -> tuple[int, int]:
    """The age cuts of the models that serve the age task (``age_paths``; default: every model with an age
    head), which one submission needs them to share; an error listing them otherwise."""
    paths = [p for p, m in models.items() if "age" in m.head_slices()] if age_paths is None else age_paths
    age = {p: tuple(models[p].cfg.data.age_cuts) for p in paths}
    if len(set(age.values())) > 1:
        listing = "; ".join(f"{p}: {list(c)}" for p, c in age.items())
        raise DataError(f"the age checkpoints were trained with different age cuts ({listing}): pass --folds")
    return next(iter(age.values()), COMPETITION_AGE_CUTS)


def age_cuts_note(cuts: tuple[int, int]) -> str | None:
    """The line to log when the age models' groups are not the competition's, which they are submitted as."""
    if tuple(cuts) == COMPETITION_AGE_CUTS:
        return None
    young, old = COMPETITION_AGE_CUTS
    return (
        f"the age models were trained with data.age_cuts={list(cuts)}: their groups <{cuts[0]}, "
        f"{cuts[0]}-{cuts[1] - 1} and {cuts[1]}+ are submitted as the competition's <{young}, {young}-{old - 1} "
        f"and {old}+ (their group 2 as {old}+)"
    )


def predict_group(models: list[TaskModule], frame: pd.DataFrame, views: list[bool], cfg: Config, data_dir: Path):
    """Probabilities of each model over the evaluation images of ``frame`` (eval/info.csv's), one array per
    (model, view), read from the evaluation images' cache (see :func:`predict_images`)."""
    cache = eval_cache(cfg, data_dir, frame["file"].tolist(), models[0].cfg.augment)
    return predict_images(models, frame["file"].tolist(), views, cfg, cache)


@torch.inference_mode()
def predict_images(
    models: list[TaskModule], files: list[str], views: list[bool], cfg: Config, cache: ImageCache | None
) -> list[list[np.ndarray]]:
    """Probabilities of each model over ``files``, one array per (model, view). The models share their
    preprocessing (the first one's), so each batch is read once (from ``cache``, made at that preprocessing,
    or decoded file by file when None) and fed to every model in every view (the flip is done on the device);
    ``cfg.loader`` sets the batch size and workers."""
    first = models[0]
    aug = first.cfg.augment
    dataset = ImageDataset(files, list(range(len(files))), eval_augment(), geometry=geometry_only(aug), cache=cache)
    loader = make_loader(cfg, dataset, persistent=False)
    outputs: list[list[list[torch.Tensor]]] = [[[] for _ in views] for _ in models]
    device = first.device
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")
    desc = f"predicting ({len(models)} models x {len(views)} views)"
    try:
        for images, _ in tqdm(loader, desc=desc, unit="batch", disable=not cfg.trainer.progress_bar):
            images = images.to(device, non_blocking=True)
            with autocast:
                for v, hflip in enumerate(views):
                    view = images.flip(-1) if hflip else images
                    for out, model in zip(outputs, models, strict=True):
                        out[v].append(model.probabilities(view))
    except (RuntimeError, ConnectionError, EOFError) as exc:
        died = worker_death(exc, [dataset])
        if died is None:
            raise
        raise died from None
    return [[torch.cat(o).cpu().numpy() for o in per_view] for per_view in outputs]


def predict_eval(
    cfg: Config, exp_dir: Path, data_dir: str | None, ensemble: str, tta: str, folds: list[str] | None
) -> tuple[pd.DataFrame, Path]:
    """Per-head merged probabilities and the 18-class answer for every image of eval/info.csv, and the data
    directory used (``data_dir``, else the one the checkpoints were trained on)."""
    checkpoints = find_checkpoints(exp_dir, folds)
    if ensemble == "none":
        several = {t: len(c) for t, c in checkpoints.items() if len(c) > 1}
        if several:
            raise ConfigError(f"--ensemble none needs one checkpoint per task; found {several}: pass --folds")
    device = inference_device(cfg)
    models = {p: load_model(p, device) for paths in checkpoints.values() for p in paths}
    note = age_cuts_note(check_compatible(models, checkpoints["age"]))
    if note:
        log.info(note)
    data_dir = Path(data_dir or next(iter(models.values())).cfg.data.dir)
    frame = read_eval(data_dir)
    groups: dict[str, list[Path]] = defaultdict(list)
    for path, model in models.items():
        groups[preprocessing_key(model)].append(path)
    views = TTA_VIEWS[tta]
    per_model: dict[Path, list[np.ndarray]] = {}
    for paths in groups.values():
        probs = predict_group([models[p] for p in paths], frame, views, cfg, data_dir)
        per_model.update(zip(paths, probs, strict=True))
    out = pd.DataFrame({"ImageID": frame["ImageID"].tolist()})
    merged = {}
    for task, paths in checkpoints.items():
        # TTA views averaged per model; a multihead model's columns of this task
        stacked = np.stack([np.mean(per_model[p], axis=0)[:, models[p].head_slices()[task]] for p in paths])
        merged[task] = merge(stacked, ensemble)
        for k in range(merged[task].shape[1]):
            out[f"{task}_{k}"] = merged[task][:, k]
        log.info("%s: %d checkpoint(s) x %d view(s), %s ensemble", task, len(paths), len(views), ensemble)
    _, out["ans"] = combine_heads(merged["mask"], merged["gender"], merged["age"])
    return out, data_dir


def write_csv(frame: pd.DataFrame, path: Path) -> None:
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False, float_format="%.6f")


def data_config(model_cfg: Config, data_dir: str | Path | None) -> Config:
    """A checkpoint's own config (its data, corrections and preprocessing), pointed at ``data_dir`` if given."""
    cfg = copy.deepcopy(model_cfg)
    if data_dir is not None:
        cfg.data.dir = str(data_dir)
    return cfg


def predict_fold(
    cfg: Config,
    sources: dict[str, Path],
    rows: dict[str, pd.DataFrame],
    views: list[bool],
    data_dir: str | None,
    prepared: dict[str, PreparedData],
) -> dict[str, np.ndarray]:
    """``task -> probabilities`` over ``rows[task]`` (one fold's OOF rows, from ``sources[task]``), predicted
    anew by the ``best.ckpt`` beside each source and averaged over ``views``. The fold's models share its
    validation images, so each batch is read once (from the training images' cache, at the models' own
    preprocessing) and fed to all of them. ``prepared`` keeps each data set read, across folds."""
    device = inference_device(cfg)
    ckpts = {task: source.parent / CHECKPOINT for task, source in sources.items()}
    models = {p: load_model(p, device) for p in dict.fromkeys(ckpts.values())}
    keys = pd.concat([r[KEY] for r in rows.values()]).drop_duplicates().reset_index(drop=True)
    groups: dict[str, list[Path]] = defaultdict(list)
    for path, model in models.items():
        groups[preprocessing_key(model)].append(path)
    per_model: dict[Path, np.ndarray] = {}
    for key, paths in groups.items():
        data_cfg = data_config(models[paths[0]].cfg, data_dir)
        data_key = json.dumps([key, data_cfg.to_dict()["data"]], sort_keys=True)
        if data_key not in prepared:
            prepared[data_key] = prepare(data_cfg, progress=cfg.trainer.progress_bar)
        data = prepared[data_key]
        table = keys.merge(data.images[[*KEY, "file"]], on=KEY, how="left")
        if table["file"].isna().any():
            person, stem = table.loc[table["file"].isna(), KEY].iloc[0]
            raise DataError(
                f"{next(iter(sources.values())).parent}: {int(table['file'].isna().sum())} out-of-fold image(s), e.g. "
                f"{person}/{stem}, are not in the data at {data.data_dir}: pass the data the models were trained on "
                "with --data-dir"
            )
        probs = predict_images([models[p] for p in paths], table["file"].tolist(), views, cfg, data.train_cache)
        per_model.update({p: np.mean(v, axis=0) for p, v in zip(paths, probs, strict=True)})
    index = pd.MultiIndex.from_frame(keys)
    return {
        task: per_model[ckpts[task]][index.get_indexer(pd.MultiIndex.from_frame(r[KEY]))][
            :, models[ckpts[task]].head_slices()[task]
        ]
        for task, r in rows.items()
    }


def repredict_oof(
    cfg: Config, exp_dir: Path, folds: list[str] | None, views: list[bool], data_dir: str | None = None
) -> dict[str, pd.DataFrame]:
    """Each task's out-of-fold rows of ``folds`` (default: the k-fold runs), their probabilities predicted anew
    by each fold's ``best.ckpt`` in ``views``, averaged, as the submission predicts eval/: so that the OOF
    score estimates the submission's. Labels and ages stay those of the oof.csv files."""
    sources = {task: task_oof_files(exp_dir, task, folds) for task in TASK_NAMES}
    by_fold: dict[str, dict[str, Path]] = defaultdict(dict)  # fold folder -> task -> its oof.csv
    for task, (files, _) in sources.items():
        if not files:
            raise no_oof_error(exp_dir, task, folds)
        for f in files:
            by_fold[f.parent.name][task] = f
    parts: dict[str, dict[Path, pd.DataFrame]] = {task: {} for task in TASK_NAMES}
    prepared: dict[str, PreparedData] = {}
    for fold, files in by_fold.items():
        rows = {task: read_oof_file(f, task, sources[task][1]) for task, f in files.items()}
        probs = predict_fold(cfg, files, rows, views, data_dir, prepared)
        for task, frame in rows.items():
            frame[prob_columns(TASKS[task].num_classes)] = probs[task]
            parts[task][files[task]] = frame
        log.info("re-predicted %s: %s, %d view(s)", fold, ", ".join(files), len(views))
    return {task: join_oof(p, task) for task, p in parts.items()}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--exp", help="experiment name (runs/<exp>/); default: the config's exp")
    p.add_argument("--ensemble", default="soft", choices=["soft", "hard", "none"])
    p.add_argument(
        "--tta",
        choices=list(TTA_VIEWS),
        help="test-time augmentation (default: flip for the submission; none for --oof, which then reads the "
        "oof.csv files, while flip re-predicts the validation images as the submission predicts eval/)",
    )
    p.add_argument(
        "--folds",
        help="comma-separated fold names, e.g. 0,1,2, full, holdout or 0,1,2,3,4,full (default: the k-fold runs "
        "0..k-1; full and holdout only when named)",
    )
    p.add_argument(
        "--data-dir", help="data holding eval/ (and train/ for --oof --tta flip; default: the checkpoints' data.dir)"
    )
    p.add_argument("--out", help="submission file (default: runs/<exp>/submission.csv)")
    p.add_argument("--oof", action="store_true", help="score the out-of-fold predictions instead")
    p.add_argument("--batch-size", type=int, help="images per batch, at least 1 (default: loader.batch_size)")
    p.add_argument(
        "--workers",
        type=int,
        help="DataLoader workers: 0 or more, or -1 for every usable core but one (default: loader.num_workers)",
    )
    p.add_argument("--wandb", choices=["auto", "online", "offline", "disabled"], help="log the OOF report")
    p.add_argument("--config", action="append", default=[], metavar="FILE")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--debug", action="store_true", help="show tracebacks for data and config errors")
    return p


def print_oof(report: dict) -> None:
    """The OOF scores, and the competition-cut ones too when the age models' cuts are not the competition's."""
    print(
        f"out-of-fold (TTA {report['tta']}): 18-class macro F1 {report['f1']:.4f}, accuracy {report['accuracy']:.4f} "
        f"over {report['images']} images; per-task F1 {report['task_f1']}"
    )
    competition = report["competition"]
    if report["age_cuts"] == competition["age_cuts"]:
        return
    cuts = "/".join(str(c) for c in competition["age_cuts"])
    own = "/".join(str(c) for c in report["age_cuts"])
    if competition["f1"] is None:
        print(f"at the competition's age cuts {cuts} (the models': {own}): no score, {competition['note']}")
        return
    print(
        f"at the competition's age cuts {cuts} (the models': {own}; what the leaderboard measures): 18-class "
        f"macro F1 {competition['f1']:.4f}, accuracy {competition['accuracy']:.4f}; per-task F1 "
        f"{competition['task_f1']}"
    )


def write_oof_report(
    cfg: Config, exp_dir: Path, folds: list[str] | None = None, tta: str = "none", data_dir: str | None = None
) -> dict:
    """Score the out-of-fold predictions of ``folds`` (default: the k-fold runs); write oof_scores.json (which
    says the TTA used) and oof_confusion.png, and log them to W&B when it is on. ``tta="none"`` reads the
    oof.csv files; ``"flip"`` re-predicts each fold's validation images with its best.ckpt in both views (from
    the data at ``data_dir``, default the checkpoints' data.dir), as the submission predicts eval/."""
    if folds and "full" in folds:
        raise ConfigError(
            "--oof with --folds naming full: the full run trains on every image and has no out-of-fold predictions; "
            "leave full out of --folds"
        )
    png = exp_dir / "oof_confusion.png"
    if tta == "none":
        report = score_oof(exp_dir, png, folds)
    else:
        frames = repredict_oof(cfg, exp_dir, folds, TTA_VIEWS[tta], data_dir)
        report = score_frames(frames, oof_age_cuts(exp_dir, folds), png, str(exp_dir))
    report = {"tta": tta, **report}
    write_text_atomic(exp_dir / "oof_scores.json", json.dumps(report, indent=2))
    competition = {f"competition/{k}": report["competition"].get(k) for k in ("f1", "accuracy")}
    logged = {**report, **{k: v for k, v in competition.items() if v is not None}}
    log_report(cfg, "oof", logged, {"oof/confusion_matrix": png})
    print_oof(report)
    print(f"scores: {exp_dir / 'oof_scores.json'}; confusion matrix: {png}")
    return report


def report_path(out: Path) -> Path:
    """Where the report of the submission ``out`` goes: beside it, ``<stem>_report.json``."""
    return out.with_name(out.stem + "_report.json")


def check_output(out: Path) -> None:
    """Stop before any prediction work when the submission cannot be written where asked."""
    for path in (out, out.with_name(out.stem + "_probs.csv"), report_path(out)):
        if path.is_dir():
            raise DataError(f"--out {out}: {path} is a directory; name a file, e.g. --out {out / 'submission.csv'}")


def write_submission(
    cfg: Config,
    exp_dir: Path,
    ensemble: str = "soft",
    tta: str = "flip",
    folds: list[str] | None = None,
    data_dir: str | None = None,
    out: Path | None = None,
) -> dict:
    """Predict eval/ with the checkpoints of ``folds`` (default: the k-fold runs); write the submission, the
    per-head probabilities (``<stem>_probs.csv``) and the report (``<stem>_report.json``) beside it, scoring
    the answers when the data has truth/."""
    out = Path(out) if out is not None else exp_dir / "submission.csv"
    check_output(out)
    probs, data_dir = predict_eval(cfg, exp_dir, data_dir, ensemble, tta, folds)
    probs_out = out.with_name(out.stem + "_probs.csv")
    write_csv(probs[["ImageID", "ans"]], out)
    write_csv(probs, probs_out)
    print(f"submission: {out} ({len(probs)} images); per-head probabilities: {probs_out}")
    report = {"submission": str(out), "images": len(probs)}
    truth = data_dir / "truth" / "eval_answers.csv"
    if truth.is_file():
        report["eval"] = score_predictions(probs, pd.read_csv(truth))
        print(f"eval vs {truth}: macro F1 {report['eval']['f1']:.4f}, accuracy {report['eval']['accuracy']:.4f}")
    write_text_atomic(report_path(out), json.dumps(report, indent=2))
    return report


def check_loader_options(args: argparse.Namespace) -> None:
    """``--batch-size`` and ``--workers`` must make sense before anything is loaded."""
    if args.batch_size is not None and args.batch_size < 1:
        raise ConfigError(f"--batch-size {args.batch_size}: must be at least 1")
    if args.workers is not None and args.workers < -1:
        raise ConfigError(
            f"--workers {args.workers}: must be 0 (read in the main process) or more, or -1 (every usable core but one)"
        )


def run(args: argparse.Namespace) -> dict:
    check_loader_options(args)
    folds = parse_folds(args.folds)
    cfg = load_config(None, args.config, args.set)
    if args.wandb:
        cfg.wandb.mode = args.wandb
    exp = args.exp or cfg.exp
    exp_dir = Path(cfg.runs_dir) / exp
    if not exp_dir.is_dir():
        raise DataError(f"experiment {exp_dir} does not exist: train first (python train.py --exp {exp})")
    if args.batch_size is not None:
        cfg.loader.batch_size = args.batch_size
    if args.workers is not None:
        cfg.loader.num_workers = args.workers
    if args.oof:
        return write_oof_report(cfg, exp_dir, folds, args.tta or "none", args.data_dir)
    out = Path(args.out) if args.out else None
    return write_submission(cfg, exp_dir, args.ensemble, args.tta or "flip", folds, args.data_dir, out)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    return run_cli(lambda: run(args), args.debug, rerun=RERUN)


if __name__ == "__main__":
    sys.exit(main())
