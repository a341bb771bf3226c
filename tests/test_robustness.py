"""Bad input and faults that must cost minutes, never a result: image modes, --skip-bad, reruns, --resume
of finished folds, unwritable and full disks, a DataLoader worker that dies."""

from __future__ import annotations

import errno
import logging
import os
import signal

import numpy as np
import pytest
import torch
from conftest import tiny_argv, tiny_config
from PIL import Image

import inference.models
import inference.predictor
import train as train_cli
from core import atomic
from core.errors import DataError
from datamodules.dataset import ImageDataset
from datamodules.decode import read_rgb
from datamodules.layout import read_eval
from datamodules.prepare import prepare

SETTINGS = ["model.backbone=test_resnet", "trainer.max_epochs=1", "trainer.progress_bar=false"]


def _cli(layout, tmp_path, *extra):
    return train_cli.main([*tiny_argv(layout, tmp_path, *SETTINGS), "--exp", "r", "--task", "mask", *extra])


def test_grayscale_rgba_and_palette_pngs_are_read_as_rgb(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, (10, 8, 3), dtype=np.uint8)
    gray = rgb[..., 0]
    modes = {
        "L": Image.fromarray(gray, "L"),
        "RGBA": Image.fromarray(np.dstack([rgb, np.full((10, 8), 128, np.uint8)]), "RGBA"),
        "P": Image.fromarray(rgb, "RGB").quantize(16),
        "LA": Image.fromarray(np.dstack([gray, gray]), "LA"),
    }
    for mode, img in modes.items():
        path = tmp_path / f"{mode}.png"
        img.save(path)
        out = read_rgb(str(path))
        assert out.shape == (10, 8, 3) and out.dtype == np.uint8, mode
        expected = np.asarray(img.convert("RGB"))
        assert np.abs(out.astype(int) - expected.astype(int)).max() <= 1, mode  # colour, not a grey cast


def test_skip_bad_leaves_undecodable_training_images_out_with_a_warning(layout, tmp_path, caplog):
    bad = sorted((layout / "train" / "images").glob("000002_*/mask1.*"))[0]
    bad.write_bytes(b"")  # zero bytes
    cfg = tiny_config(layout, tmp_path / "cache", *SETTINGS)
    with pytest.raises(DataError, match="--skip-bad") as err:
        prepare(cfg, progress=False)
    assert str(bad) in str(err.value)
    cfg.data.skip_bad = True
    data = prepare(cfg, progress=False)
    assert str(bad) not in set(data.images["file"]) and len(data.images) == 12 * 7 - 1
    assert str(bad) in caplog.text and "leaving out 1" in caplog.text
    # an evaluation image cannot be skipped: the submission needs an answer for it
    first_eval = sorted((layout / "eval" / "images").glob("[!.]*"))[0]
    first_eval.write_bytes(b"GIF89a broken")
    with pytest.raises(DataError, match="evaluation images") as err:
        prepare(tiny_config(layout, tmp_path / "cache2", *SETTINGS, "data.skip_bad=true"), progress=False)
    assert str(first_eval) in str(err.value)


def test_skip_bad_flag_reaches_training(layout, tmp_path, capsys):
    sorted((layout / "train" / "images").glob("000003_*/normal.*"))[0].write_bytes(b"not an image")
    assert _cli(layout, tmp_path, "--fold", "0") == 2
    assert "--skip-bad" in capsys.readouterr().err
    assert _cli(layout, tmp_path, "--fold", "0", "--skip-bad") == 0


def test_a_rerun_never_overwrites_unless_asked_and_resume_skips_finished_folds(layout, tmp_path, capsys, caplog):
    assert _cli(layout, tmp_path, "--fold", "0") == 0
    out = tmp_path / "runs" / "r" / "mask" / "fold0"
    best = (out / "best.ckpt").read_bytes()
    assert _cli(layout, tmp_path, "--fold", "0") == 2
    err = capsys.readouterr().err
    assert "already holds an earlier run" in err and "--overwrite" in err and "--resume" in err
    assert (out / "best.ckpt").read_bytes() == best
    # --fold all --resume: fold 0 finished, so only folds 1 and 2 train
    caplog.clear()
    caplog.set_level(logging.INFO, logger="train")
    assert _cli(layout, tmp_path, "--fold", "all", "--resume") == 0
    assert "mask fold 0 finished already" in caplog.text
    assert (out / "best.ckpt").read_bytes() == best
    assert all((tmp_path / "runs" / "r" / "mask" / f"fold{k}" / "done.json").is_file() for k in range(3))
    stamp = (out / "done.json").stat().st_mtime_ns
    assert _cli(layout, tmp_path, "--fold", "0", "--overwrite") == 0
    assert (out / "done.json").stat().st_mtime_ns != stamp


def test_an_unwritable_output_directory_stops_before_training(layout, tmp_path, capsys):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the runs directory should be")
    assert _cli(layout, tmp_path, "--fold", "0", "--set", f"runs_dir={blocker / 'runs'}") == 2
    err = capsys.readouterr().err
    assert "cannot write the run directory" in err and "runs_dir" in err and "Traceback" not in err


def test_a_full_disk_gives_one_message_and_leaves_no_half_file(layout, tmp_path, capsys, monkeypatch):
    real_replace = atomic.Path.replace

    def disk_full(self, target):
        if str(target).endswith("oof.csv"):
            raise OSError(errno.ENOSPC, "No space left on device", str(target))
        return real_replace(self, target)

    monkeypatch.setattr(atomic.Path, "replace", disk_full)
    assert _cli(layout, tmp_path, "--fold", "0") == 3
    err = capsys.readouterr().err
    assert "the disk is full while writing" in err and "oof.csv" in err and "--resume" in err
    assert "Traceback" not in err
    out = tmp_path / "runs" / "r" / "mask" / "fold0"
    assert not (out / "oof.csv").exists() and not list(out.glob("*.tmp"))
    assert not (out / "done.json").exists()  # the run is not marked finished
    monkeypatch.setattr(atomic.Path, "replace", real_replace)
    assert _cli(layout, tmp_path, "--fold", "0", "--resume") == 0
    assert (out / "oof.csv").is_file() and (out / "done.json").is_file()


def _killer(victim: str):
    real_load = ImageDataset.load

    def load(self, i):
        if self.files[i] == victim:
            os.kill(os.getpid(), signal.SIGKILL)  # as a decoder crash or the OOM killer would
        return real_load(self, i)

    return load


def test_a_dataloader_worker_that_dies_names_its_file(layout, tmp_path, monkeypatch, capsys):
    data = prepare(tiny_config(layout, tmp_path / "cache", *SETTINGS), progress=False)
    victim = data.images.loc[data.images["fold"] != 1, "file"].iloc[0]  # a training image of fold 1
    monkeypatch.setattr(ImageDataset, "load", _killer(victim))
    code = _cli(layout, tmp_path, "--fold", "1", "--set", "loader.num_workers=1", "--set", "loader.sampler=shuffle")
    err = capsys.readouterr().err
    assert code == 2 and "DataLoader worker died while reading" in err and victim in err
    assert "Traceback" not in err


def test_a_prediction_worker_that_dies_names_its_file(layout, tmp_path, monkeypatch):
    cfg = tiny_config(layout, tmp_path / "cache", *SETTINGS, f"runs_dir={tmp_path / 'runs'}", "exp=p")
    train_cli.train(cfg, "gender", 0)
    model = inference.models.load_model(tmp_path / "runs" / "p" / "gender" / "fold0" / "best.ckpt", torch.device("cpu"))
    frame = read_eval(layout)
    monkeypatch.setattr(ImageDataset, "load", _killer(frame["file"][3]))
    cfg.loader.num_workers = 1
    with pytest.raises(DataError, match="worker died while reading") as err:
        inference.predictor.predict_group([model], frame, [False], cfg, layout)
    assert frame["file"][3] in str(err.value)


def test_wandb_unreachable_falls_back_to_offline_once(tmp_path, monkeypatch, caplog):
    import wandb

    from callbacks import wandb_run
    from configs.config import load_config

    monkeypatch.setattr(wandb_run, "_state", {"online_failed": False, "offline_told": False})
    modes = []

    class Run:
        dir = str(tmp_path)

    def init(mode, **kwargs):
        modes.append(mode)
        if mode == "online":
            raise TimeoutError("the W&B server did not answer")
        return Run()

    monkeypatch.setattr(wandb, "init", init)
    cfg = load_config(None, [], [f"wandb.dir={tmp_path}"])
    caplog.set_level(logging.INFO, logger="callbacks.wandb_run")
    for fold in range(3):
        assert isinstance(wandb_run.init_run(cfg, "online", name=f"fold{fold}"), Run)
    assert modes == ["online", "offline", "offline", "offline"]  # tried online once, then straight offline
    assert caplog.text.count("could not start") == 1 and caplog.text.count("W&B is offline") == 1
