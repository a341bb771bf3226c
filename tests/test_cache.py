"""The decode-once uint8 image cache: exact, invalidated by changes, never reused half built."""

from __future__ import annotations

import os
import pickle

import cv2
import numpy as np
import pytest
import torch

from configs.config import AugmentConfig
from core.errors import DataError
from datamodules import cache as cache_mod
from datamodules.cache import build_cache, open_cache
from datamodules.dataset import ImageDataset
from datamodules.decode import read_rgb
from datamodules.transforms import eval_augment, geometry_only, train_augment

AUG = AugmentConfig(resize_height=40, resize_width=30, crop=24)


@pytest.fixture
def images(tmp_path):
    rng = np.random.default_rng(0)
    files = []
    for i in range(70):  # more than two build chunks
        path = tmp_path / "img" / f"{i:03d}.{'jpg' if i % 2 else 'png'}"
        path.parent.mkdir(exist_ok=True)
        cv2.imwrite(str(path), rng.integers(0, 256, (50, 37, 3), dtype=np.uint8))
        files.append(str(path))
    return files


def _items(dataset):
    return [dataset[i][0] for i in range(len(dataset))]


def test_cached_pixels_reproduce_the_uncached_path_exactly(images, tmp_path):
    cache = build_cache(images, AUG, tmp_path / "c", "train", workers=2, progress=False)
    assert cache.array.shape == (len(images), 24, 24, 3)
    geometry = geometry_only(AUG)
    for augment in (lambda: eval_augment(), lambda: eval_augment(hflip=True), lambda: train_augment(AUG, [0.5] * 3)):
        targets = list(range(len(images)))
        cached = ImageDataset(images, targets, augment(), seed=3, cache=cache)
        plain = ImageDataset(images, targets, augment(), seed=3, geometry=geometry)
        for a, b in zip(_items(cached), _items(plain), strict=True):
            assert a.dtype == torch.uint8 and torch.equal(a, b)
    # a subset, in another order, finds its own rows
    subset = images[::-3]
    sub = ImageDataset(subset, [0] * len(subset), eval_augment(), cache=cache)
    for i, f in enumerate(subset):
        assert np.array_equal(sub[i][0].permute(1, 2, 0).numpy(), geometry(image=read_rgb(f))["image"])


def test_a_valid_cache_is_reused_and_one_process_builds_the_same_bytes(images, tmp_path):
    first = build_cache(images, AUG, tmp_path / "a", "train", workers=2, progress=False)
    stamp = os.stat(first.path).st_mtime_ns
    again = build_cache(images, AUG, tmp_path / "a", "train", workers=2, progress=False)
    assert os.stat(again.path).st_mtime_ns == stamp  # not rebuilt
    serial = build_cache(images, AUG, tmp_path / "b", "train", workers=1, progress=False)
    assert first.path.read_bytes() == serial.path.read_bytes()


def test_a_changed_image_or_setting_invalidates_the_cache(images, tmp_path):
    root = tmp_path / "c"
    build_cache(images, AUG, root, "train", progress=False)
    assert open_cache(images, AUG, root, "train") is not None
    other = AugmentConfig(resize_height=40, resize_width=30, crop=20)
    assert open_cache(images, other, root, "train") is None  # another crop: another cache
    assert open_cache(images[:-1], AUG, root, "train") is None  # another file list
    new = np.full((50, 37, 3), 7, np.uint8)
    cv2.imwrite(images[0], new)  # same name, new pixels
    st = os.stat(images[0])
    os.utime(images[0], ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    assert open_cache(images, AUG, root, "train") is None
    rebuilt = build_cache(images, AUG, root, "train", progress=False)
    assert np.array_equal(rebuilt.image(0), geometry_only(AUG)(image=read_rgb(images[0]))["image"])


def test_an_interrupted_build_is_not_reused(images, tmp_path, monkeypatch):
    root = tmp_path / "c"
    build_cache(images, AUG, root, "train", progress=False)
    os.utime(images[5])  # the cache is stale, so the next call rebuilds it
    calls = []
    real_fill = cache_mod._fill

    def dies_midway(task):
        calls.append(task[0])
        if len(calls) == 2:
            raise KeyboardInterrupt  # as if the user pressed Ctrl-C during the build
        return real_fill(task)

    monkeypatch.setattr(cache_mod, "_fill", dies_midway)
    with pytest.raises(KeyboardInterrupt):
        build_cache(images, AUG, root, "train", workers=1, progress=False)
    assert open_cache(images, AUG, root, "train") is None
    assert not list(root.glob("*.tmp")) and not list(root.glob("*.json"))
    # a build killed outright leaves at most a .tmp file, which nothing reads
    monkeypatch.setattr(cache_mod, "_fill", real_fill)
    cache = build_cache(images, AUG, root, "train", workers=1, progress=False)
    assert np.array_equal(cache.image(5), geometry_only(AUG)(image=read_rgb(images[5]))["image"])


def test_undecodable_images_are_all_named(images, tmp_path):
    for f in images[3:5]:
        with open(f, "wb") as fh:
            fh.write(b"not an image")
    with pytest.raises(DataError) as err:
        build_cache(images, AUG, tmp_path / "c", "train", workers=2, progress=False)
    assert images[3] in str(err.value) and images[4] in str(err.value) and "2 problems" in str(err.value)
    assert open_cache(images, AUG, tmp_path / "c", "train") is None


def test_datasets_pickle_without_their_pixels(images, tmp_path):
    cache = build_cache(images, AUG, tmp_path / "c", "train", progress=False)
    dataset = ImageDataset(images, [0] * len(images), eval_augment(), cache=cache)
    _ = dataset[0]  # maps the file in this process
    blob = pickle.dumps(dataset)
    assert len(blob) < cache.array.nbytes  # workers map the file themselves
    clone = pickle.loads(blob)
    assert torch.equal(clone[1][0], dataset[1][0])
    with pytest.raises(DataError, match="not in the image cache"):
        ImageDataset([images[0] + ".missing"], [0], eval_augment(), cache=cache)


def test_a_build_process_that_dies_is_an_error_not_a_wait(images, tmp_path, monkeypatch):
    fill = cache_mod._fill

    def killed_on_the_second_chunk(task):
        if task[0] == cache_mod.CHUNK:
            os.kill(os.getpid(), 9)  # as the out-of-memory killer would
        return fill(task)

    monkeypatch.setattr(cache_mod, "_fill", killed_on_the_second_chunk)
    with pytest.raises(DataError, match="died"):
        build_cache(images, AUG, tmp_path / "c", "train", workers=2, progress=False)
    assert open_cache(images, AUG, tmp_path / "c", "train") is None and not list((tmp_path / "c").glob("*.tmp"))
