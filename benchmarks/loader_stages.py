"""The training loader's stages timed one by one, and the targets of ``benchmarks/gpu_check.py`` read from them.

A stage's rate is measured in one process (images/s); its ``bound_img_per_s`` is what the loader's workers
could sustain on that stage alone (rate x workers; the host-to-device copy is measured as it runs, in the main
process). The stage with the lowest bound, the model included, is the one that limits training.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from configs.config import Config
from datamodules.cache import ImageCache
from datamodules.decode import read_rgb
from datamodules.transforms import geometry_only, train_augment

E2E_VS_MODEL_ONLY = 0.95  # end-to-end images/s at least this share of the model alone's
E2E_VS_NAIVE = 2.0  # and at least this many times the naive PIL loader's, on the same model


def _rate(fn, items: list, seconds: float) -> float:
    """Images/s of ``fn`` over ``items`` (cycled), for about ``seconds`` or one pass, whichever is longer."""
    fn(items[0])  # warm-up: imports, first allocations
    start, n = time.perf_counter(), 0
    while n < len(items) or time.perf_counter() - start < seconds:
        fn(items[n % len(items)])
        n += 1
    return round(n / (time.perf_counter() - start), 1)


def host_to_device(batch: int, crop: int, batches: int) -> float | None:
    """Images/s of copying pinned uint8 batches to the GPU (None without one)."""
    if not torch.cuda.is_available():
        return None
    pinned = torch.randint(0, 256, (batch, 3, crop, crop), dtype=torch.uint8).pin_memory()
    pinned.to("cuda", non_blocking=True)
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(batches):
        pinned.to("cuda", non_blocking=True)
    torch.cuda.synchronize()
    return round(batches * batch / (time.perf_counter() - start), 1)


def stage_rates(cfg: Config, files: list[str], cache: ImageCache | None, workers: int, seconds: float) -> dict:
    """Each stage's images/s in one process and its bound with ``workers`` workers: decode (read + resize + crop
    a file, what the cache build and the naive loader pay per image), cache read (a row of the memory-mapped
    cache), augment (the seed's random transforms), host-to-device."""
    geometry = geometry_only(cfg.augment)
    rates = {"decode": _rate(lambda f: geometry(image=read_rgb(f)), files, seconds)}
    if cache is not None:
        rows = list(np.random.default_rng(0).permutation(len(cache.files))[: max(64, len(files))])
        rates["cache_read"] = _rate(lambda r: np.array(cache.image(int(r))), rows, seconds)
        sample = [np.array(cache.image(int(r))) for r in rows[:64]]
    else:
        rates["cache_read"] = None
        sample = [geometry(image=read_rgb(f))["image"] for f in files[:64]]
    augment = train_augment(cfg.augment, [0.5, 0.5, 0.5])
    rates["augment"] = _rate(lambda im: augment(image=im), sample, seconds)
    stages = {name: {"img_per_s_one_process": r, "bound_img_per_s": _times(r, workers)} for name, r in rates.items()}
    h2d = host_to_device(cfg.loader.batch_size, cfg.augment.crop, 20)
    stages["host_to_device"] = {"img_per_s_one_process": h2d, "bound_img_per_s": h2d}
    return {"workers": workers, "stages": stages}


def _times(rate: float | None, workers: int) -> float | None:
    return None if rate is None else round(rate * max(1, workers), 1)


def ratio(a: dict | None, b: dict | None) -> float | None:
    """``a``'s images/s over ``b``'s (None when either is missing, failed or skipped)."""
    try:
        return round(a["img_per_s"] / b["img_per_s"], 3)
    except (KeyError, TypeError, ZeroDivisionError):
        return None


def limit(stages: dict, model_img_per_s: float | None, cached: bool) -> str:
    """The slowest stage of the training pipeline by its bound (cache read, augment, host-to-device; decode in
    place of the cache read when the images are not cached), or ``model`` when every one outruns the model."""
    pipeline = ["cache_read" if cached else "decode", "augment", "host_to_device"]
    bounds = {name: stages.get(name, {}).get("bound_img_per_s") for name in pipeline}
    known = {name: b for name, b in bounds.items() if b is not None}
    if not known:
        return "unknown"
    slowest = min(known, key=known.get)
    return "model" if model_img_per_s is not None and known[slowest] >= model_img_per_s else slowest


def targets(train: dict, loader: dict, variant: str, cached: bool) -> dict:
    """The two targets for one training variant: end-to-end against the model alone and against the naive loader
    on the same model; where one is missed, the stage that limits (see :func:`limit`)."""
    row = train.get(variant, {})
    model, e2e, naive = row.get("model_only"), row.get("end_to_end"), row.get("naive")
    stages = (loader or {}).get("stages", {})
    model_rate = model.get("img_per_s") if isinstance(model, dict) else None
    vs_model, vs_naive = ratio(e2e, model), ratio(e2e, naive)
    out = {
        "variant": variant,
        "e2e_vs_model_only": {"value": vs_model, "target": E2E_VS_MODEL_ONLY},
        "e2e_vs_naive": {"value": vs_naive, "target": E2E_VS_NAIVE},
    }
    slowest = limit(stages, model_rate, cached)
    # every loader stage alone outruns the model, yet end to end does not: the loss is in the training loop
    loader_limit = "training loop" if slowest == "model" else slowest
    for key, goal in (("e2e_vs_model_only", E2E_VS_MODEL_ONLY), ("e2e_vs_naive", E2E_VS_NAIVE)):
        value = out[key]["value"]
        out[key]["met"] = None if value is None else value >= goal
    if out["e2e_vs_model_only"]["met"] is False:
        out["e2e_vs_model_only"]["limit"] = loader_limit
    if out["e2e_vs_naive"]["met"] is False:
        # end to end keeps up with the model: no loader could double the naive one's rate on this model
        out["e2e_vs_naive"]["limit"] = "model" if out["e2e_vs_model_only"]["met"] else loader_limit
    return out
