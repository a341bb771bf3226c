"""The data check keeps up with the files: a same-size replacement is re-checked and re-measured, an empty
evaluation list, symlink loops and dangling links are named instead of crashing, and huge images are
reported by size rather than as undecodable."""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

import numpy as np
import pytest
from conftest import tiny_argv, tiny_config
from PIL import Image

import train as train_cli
from core.errors import DataError
from datamodules import prepare as prepare_module
from datamodules.fingerprint import data_fingerprint
from datamodules.prepare import prepare
from datamodules.scan import find_undecodable

PERSON = "000002_male_Asian_25"


def _photo(layout: Path, person: str, stem: str) -> Path:
    return next((layout / "train" / "images" / person).glob(f"{stem}.*"))


def _newer(path: Path) -> None:
    """Give ``path`` a modification time surely different from the one it had (a fast rewrite may not)."""
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))


# ------------------------------------------------------------------ the image check and the statistics


def test_a_same_size_replacement_is_checked_again_and_only_it(layout, tmp_path, monkeypatch):
    cfg = tiny_config(layout, tmp_path / "cache", "data.cache_images=false")
    checked: list[list[str]] = []

    def spy(files, **kwargs):
        checked.append(list(files))
        return find_undecodable(files, **kwargs)

    monkeypatch.setattr(prepare_module, "find_undecodable", spy)
    first = prepare(cfg, progress=False)
    assert len(checked[0]) == 12 * 7 + 6
    photo = _photo(layout, PERSON, "mask2")
    photo.write_bytes(b"\0" * photo.stat().st_size)  # undecodable, same length
    _newer(photo)
    with pytest.raises(DataError, match=re.escape(str(photo))):
        prepare(cfg, progress=False)
    assert data_fingerprint(layout) == first.fingerprint  # same sizes: the same cache folder
    assert checked[1] == [str(photo)]  # the other 89 files are not decoded again
    with pytest.raises(DataError, match=re.escape(str(photo))):  # the bad verdict is kept, not forgotten
        prepare(cfg, progress=False)
    assert checked[2:] == []


def _bmp_person(layout: Path, person: str) -> list[Path]:
    """Rewrite a person's photos as BMPs (same stems), whose size depends only on their dimensions."""
    paths = []
    for i, old in enumerate(sorted((layout / "train" / "images" / person).glob("[!.]*"))):
        pixels = np.random.default_rng(i).integers(0, 256, (32, 24, 3), dtype=np.uint8)
        old.unlink()
        paths.append(old.with_suffix(".bmp"))
        Image.fromarray(pixels).save(paths[-1])
    return paths


@pytest.mark.parametrize("cache_images", ["true", "false"])
def test_statistics_follow_a_same_size_replacement(layout, tmp_path, cache_images):
    bmps = _bmp_person(layout, PERSON)
    settings = [f"data.cache_images={cache_images}", "augment.normalization=dataset"]
    before = prepare(tiny_config(layout, tmp_path / "cache", *settings), progress=False)
    size = bmps[0].stat().st_size
    Image.new("RGB", (24, 32), (255, 255, 255)).save(bmps[0])  # other pixels, same dimensions
    assert bmps[0].stat().st_size == size
    _newer(bmps[0])
    after = prepare(tiny_config(layout, tmp_path / "cache", *settings), progress=False)
    fresh = prepare(tiny_config(layout, tmp_path / "fresh", *settings), progress=False)
    assert after.fingerprint == before.fingerprint
    assert (after.mean, after.std) == (fresh.mean, fresh.std)
    assert after.mean != before.mean


# ------------------------------------------------------------------------------ an empty evaluation list


def test_an_eval_csv_without_rows_stops_the_data_check(layout, tmp_path, capsys):
    info = layout / "eval" / "info.csv"
    info.write_text("ImageID,ans\n")
    with pytest.raises(DataError, match=re.escape(f"{info}: lists no images")):
        prepare(tiny_config(layout, tmp_path / "cache"), progress=False)
    argv = [*tiny_argv(layout, tmp_path, "model.backbone=test_resnet"), "--task", "mask", "--prepare-only"]
    assert train_cli.main(argv) == 2
    err = capsys.readouterr().err
    assert f"error: {info}: lists no images" in err and "Traceback" not in err


# ------------------------------------------------------------------------------------------- symlinks


def test_broken_links_and_loops_in_unneeded_folders_do_not_stop_the_check(layout, tmp_path):
    junk = layout / "train" / "images" / "junk"
    junk.mkdir()
    (junk / "dangling.jpg").symlink_to(tmp_path / "nowhere.jpg")
    (junk / "a").symlink_to("a")  # a file link to itself
    (junk / "loop").symlink_to(".")  # a folder link back up
    (layout / "eval" / "images" / "up").symlink_to("..")
    first = data_fingerprint(layout)
    assert data_fingerprint(layout) == first
    data = prepare(tiny_config(layout, tmp_path / "cache"), progress=False)
    assert len(data.images) == 12 * 7
    (junk / "dangling.jpg").unlink()
    (junk / "dangling.jpg").symlink_to(tmp_path / "elsewhere.jpg")
    assert data_fingerprint(layout) != first  # a dangling link counts by what it points at


def test_a_linked_person_folder_is_part_of_the_fingerprint(layout, tmp_path):
    images = layout / "train" / "images"
    moved = tmp_path / "elsewhere" / PERSON
    moved.parent.mkdir()
    (images / PERSON).rename(moved)
    (images / PERSON).symlink_to(moved, target_is_directory=True)
    data = prepare(tiny_config(layout, tmp_path / "cache"), progress=False)
    assert len(data.images) == 12 * 7
    photo = _photo(layout, PERSON, "mask1")
    photo.write_bytes(photo.read_bytes() + b"\0")  # a JPEG/PNG with a trailing byte is still fine
    assert data_fingerprint(layout) != data.fingerprint


def test_a_needed_photo_that_is_a_dangling_link_is_named(layout, tmp_path):
    photo = _photo(layout, PERSON, "normal")
    photo.unlink()
    photo.symlink_to(tmp_path / "gone.jpg")
    with pytest.raises(DataError, match=re.escape(str(photo))):
        prepare(tiny_config(layout, tmp_path / "cache"), progress=False)
    unchecked = ["data.validate_images=false", "data.cache_images=false"]  # the statistics read it first
    with pytest.raises(DataError, match=re.escape(str(photo))):
        prepare(tiny_config(layout, tmp_path / "cache2", *unchecked), progress=False)


# ------------------------------------------------------------------------------------------ huge images


def _blank_png(path: Path, side: int) -> str:
    Image.new("1", (side, side)).save(path)  # one bit a pixel, one colour: a few KB on disk
    return str(path)


@pytest.mark.filterwarnings("error::PIL.Image.DecompressionBombWarning")
def test_an_image_over_twice_pils_limit_is_too_large_and_not_decoded(tmp_path):
    path = _blank_png(tmp_path / "huge.png", 15000)
    limit = Image.MAX_IMAGE_PIXELS
    [(file, why)] = find_undecodable([path], progress=False)
    assert file == path
    assert "too large" in why and "15000x15000" in why and f"{2 * limit:,}" in why
    assert "decoded" not in why and "DecompressionBomb" not in why
    assert Image.MAX_IMAGE_PIXELS == limit  # PIL's setting is given back


@pytest.mark.filterwarnings("error::PIL.Image.DecompressionBombWarning")
def test_an_image_over_pils_limit_is_used_with_our_warning_naming_it(tmp_path, caplog):
    path = _blank_png(tmp_path / "big.png", 9500)  # 90,250,000 pixels: just over 89,478,485
    broken = tmp_path / "broken.png"
    broken.write_bytes(Path(path).read_bytes()[:200])  # the same header, cut short
    with caplog.at_level(logging.WARNING):
        found = find_undecodable([path, str(broken)], progress=False)
    assert [f for f, _ in found] == [str(broken)]  # a big image is still decoded, so a cut one is found
    assert path in caplog.text and "9500x9500" in caplog.text
    assert Image.MAX_IMAGE_PIXELS == 89_478_485
