"""Shared fixtures: a tiny hand-made competition layout, and configs that run on CPU in seconds."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from configs.config import load_config
from core.tasks import MASK_FILES
from synthetic import generate

PEOPLE = [  # id, gender, age
    ("000001", "female", 19),
    ("000002", "male", 25),
    ("000003", "female", 45),
    ("000004", "male", 33),
    ("000005", "female", 60),
    ("000006", "male", 60),
    ("001498-1", "male", 22),
    ("003397", "female", 19),
    ("003397", "female", 20),
    ("000010", "female", 52),
    ("000011", "male", 58),
    ("000012", "female", 27),
]


def write_image(path: Path, seed: int, size=(24, 32)) -> None:
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(path)


def make_layout(root: Path, people=PEOPLE, eval_images: int = 6) -> Path:
    """A competition layout with its quirks: mixed extensions, ``._`` files, a shared id, a suffixed id."""
    images = root / "train" / "images"
    rows = []
    for i, (pid, gender, age) in enumerate(people):
        path = f"{pid}_{gender}_Asian_{age}"
        folder = images / path
        folder.mkdir(parents=True)
        for j, stem in enumerate(MASK_FILES):
            ext = [".jpg", ".png", ".jpeg"][(i + j) % 3]
            write_image(folder / f"{stem}{ext}", seed=i * 10 + j)
        (folder / "._mask1.jpg").write_bytes(b"\x00\x05\x16\x07 macOS resource fork")
        rows.append((pid, gender, "Asian", age, path))
    pd.DataFrame(rows, columns=["id", "gender", "race", "age", "path"]).to_csv(
        root / "train" / "train.csv", index=False
    )
    eval_dir = root / "eval" / "images"
    eval_dir.mkdir(parents=True)
    ids = []
    for k in range(eval_images):
        name = hashlib.sha1(str(k).encode()).hexdigest() + ".jpg"
        write_image(eval_dir / name, seed=1000 + k)
        ids.append(name)
    (eval_dir / "._x.jpg").write_bytes(b"junk")
    pd.DataFrame({"ImageID": ids, "ans": 0}).to_csv(root / "eval" / "info.csv", index=False)
    return root


@pytest.fixture
def layout(tmp_path) -> Path:
    return make_layout(tmp_path / "data")


QUICK = Path(__file__).resolve().parent.parent / "configs" / "quick.yaml"
TINY = [  # tiny images, no workers: the settings of every tiny run
    "data.n_folds=3",
    "augment.resize_height=32",
    "augment.resize_width=24",
    "augment.crop=24",
    "loader.num_workers=0",
    "loader.batch_size=8",
]


def tiny_config(data_dir: Path, cache: Path, *overrides: str):
    """The quick preset pointed at ``data_dir``, with tiny images, no workers and W&B off."""
    settings = [f"data.dir={data_dir}", f"data.cache_dir={cache}", *TINY, "wandb.mode=disabled", *overrides]
    return load_config(None, [QUICK], settings)


def tiny_argv(data_dir: Path, tmp_path: Path, *overrides: str) -> list[str]:
    """``train.py`` options for the same tiny run, its cache and runs under ``tmp_path``."""
    argv = ["--config", str(QUICK), "--wandb", "disabled", "--data-dir", str(data_dir)]
    for setting in [f"data.cache_dir={tmp_path / 'cache'}", f"runs_dir={tmp_path / 'runs'}", *TINY, *overrides]:
        argv += ["--set", setting]
    return argv


@pytest.fixture(scope="session")
def synthetic(tmp_path_factory) -> Path:
    """A small synthetic data set (300 people, 48x64), generated once per test session."""
    root = tmp_path_factory.mktemp("synthetic")
    generate(root / "data", people=300, eval_people=8, size=(48, 64), seed=1, workers=2, progress=False)
    return root / "data"


def quick_cfg(data_dir: Path, tmp_path: Path, *overrides: str):
    """A CPU training config for the ``synthetic`` fixture: test_resnet, 48x48 crops, 5 epochs, the quick
    preset's light augmentation."""
    return tiny_config(
        data_dir,
        tmp_path / "cache",
        f"runs_dir={tmp_path / 'runs'}",
        "augment.resize_height=64",
        "augment.resize_width=48",
        "augment.crop=48",
        "loader.batch_size=16",
        "trainer.effective_batch=16",
        "trainer.max_epochs=5",
        "trainer.progress_bar=false",
        *overrides,
    )


def offline_wandb_records(run_dir: Path) -> bytes:
    """The records of an offline W&B run (``run-<id>.wandb`` in its folder), read after ``wandb.teardown()``
    has shut W&B's background service down, so that nothing it still holds is missed (a clean-clone CI run
    once read only the file's header right after ``run.finish()``)."""
    import wandb

    wandb.teardown()
    return next(run_dir.glob("run-*.wandb")).read_bytes()


@pytest.fixture(scope="session")
def multihead_experiment(synthetic, tmp_path_factory) -> Path:
    """A multihead experiment ``mhx`` on the ``synthetic`` set, folds 0 and 1 of 2, one short epoch each (a third
    of the training batches): its runs_dir, holding out-of-fold predictions and checkpoints for the tests of the
    prediction options. Trained once per test session."""
    import train  # here, not at the top: most test files never need Lightning's start-up

    tmp = tmp_path_factory.mktemp("mhx")
    for fold in (0, 1):
        cfg = quick_cfg(
            synthetic, tmp, "data.n_folds=2", "trainer.max_epochs=1", "trainer.limit_train_batches=0.34", "exp=mhx"
        )
        train.train(cfg, "multihead", fold)
    return tmp / "runs"
