import json

import pytest
import torch
from conftest import tiny_config

import train as train_cli
from configs.config import load_config
from core.errors import DataError
from datamodules.datamodule import MaskDataModule
from datamodules.prepare import prepare
from datamodules.summary import summarize
from synthetic import ensure_default_data


def _dm(layout, tmp_path, task="age", fold=1, *overrides):
    dm = MaskDataModule(tiny_config(layout, tmp_path / "cache", *overrides), task, fold, progress=False)
    dm.prepare_data()
    dm.setup("fit")
    return dm


def test_batches_of_images_and_labels(layout, tmp_path):
    dm = _dm(layout, tmp_path, "mask")
    images, labels = next(iter(dm.train_dataloader()))
    assert images.shape == (8, 3, 24, 24) and images.dtype == torch.uint8  # normalised on the device
    assert labels.dtype == torch.int64 and set(labels.tolist()) <= {0, 1, 2}
    val_images, val_labels = next(iter(dm.val_dataloader()))
    assert val_images.shape[1:] == (3, 24, 24)


def test_tasks_of_one_fold_see_the_same_people(layout, tmp_path):
    dms = [_dm(layout, tmp_path, task, 1) for task in ("mask", "gender", "age")]
    for dm in dms[1:]:
        assert set(dm.val_frame["person"]) == set(dms[0].val_frame["person"])
        assert set(dm.train_frame["person"]) == set(dms[0].train_frame["person"])
    assert not set(dms[0].val_frame["person"]) & set(dms[0].train_frame["person"])
    assert len(list((tmp_path / "cache").glob("*/splits-*.csv"))) == 1


def test_full_and_holdout_and_bad_fold(layout, tmp_path):
    full = _dm(layout, tmp_path, "gender", "full")
    assert len(full.train_frame) == 12 * 7 and full.val_frame.empty
    hold = _dm(layout, tmp_path, "gender", "holdout")
    assert len(hold.val_frame) > 0
    with pytest.raises(ValueError, match="choose 0..2, holdout or full"):
        MaskDataModule(tiny_config(layout, tmp_path / "cache"), "age", 7)
    with pytest.raises(ValueError, match="unknown task"):
        MaskDataModule(tiny_config(layout, tmp_path / "cache"), "hair", 0)


def test_labels_follow_age_cuts(layout, tmp_path):
    dm = _dm(layout, tmp_path, "age", "full", "data.age_cuts=[30, 58]")
    groups = dm.train_frame.drop_duplicates("person").set_index("person")["age_group"]
    assert groups["000011_male_Asian_58"] == 2 and groups["000010_female_Asian_52"] == 1


def test_normalisation_is_computed_once_and_shared(layout, tmp_path):
    dm = _dm(layout, tmp_path)
    stats = list((tmp_path / "cache").glob("*/stats-*.json"))
    assert len(stats) == 1
    assert json.loads(stats[0].read_text())["mean"] == dm.mean_std[0]
    image, image_id = dm.eval_dataset()[0]
    assert isinstance(image_id, str) and image.shape == (3, 24, 24)
    pretrained = _dm(layout, tmp_path, "age", 1, "model.pretrained=true")
    assert pretrained.mean_std[0] == pytest.approx([0.485, 0.456, 0.406])


def test_prediction_batches_keep_info_order(layout, tmp_path):
    dm = _dm(layout, tmp_path)
    ids = [i for _, batch_ids in dm.predict_dataloader() for i in batch_ids]
    assert ids == [line.split(",")[0] for line in (layout / "eval" / "info.csv").read_text().split()[1:]]


def test_undecodable_images_are_all_named(layout, tmp_path):
    broken = layout / "train" / "images" / "000002_male_Asian_25"
    bad1 = next(broken.glob("mask2.*"))
    bad1.write_bytes(bad1.read_bytes()[:40])  # truncated
    bad2 = next(broken.glob("mask3.*"))
    bad2.write_bytes(b"")
    with pytest.raises(DataError) as err:
        prepare(tiny_config(layout, tmp_path / "cache"), progress=False)
    assert str(bad1) in str(err.value) and str(bad2) in str(err.value)


def test_a_changed_data_set_gets_new_folds(layout, tmp_path):
    _dm(layout, tmp_path)
    (layout / "train" / "images" / "000001_female_Asian_19" / "._more").write_bytes(b"x")
    _dm(layout, tmp_path)
    assert len(list((tmp_path / "cache").glob("*/splits-*.csv"))) == 2


def test_summary_names_classes_folds_and_corrections(layout, tmp_path):
    fix = tmp_path / "fix.yaml"
    fix.write_text('gender: {"000001": male}\nexclude_people: ["000002"]')
    data = prepare(tiny_config(layout, tmp_path / "cache", f"data.relabel=[{fix}]"), progress=False)
    text = summarize(data)
    assert "11 people, 77 images" in text
    assert "not_wear" in text and "fold2" in text
    assert "fix.yaml gender: 1" in text and "fix.yaml excluded: 1" in text


def test_only_the_default_directory_is_generated(tmp_path):
    small = ["data.synthetic.people=20", "data.synthetic.eval_people=2", "data.synthetic.width=24"]
    small += ["data.synthetic.height=32", f"data.cache_dir={tmp_path / 'cache'}"]
    default = tmp_path / "default"
    cfg = load_config(None, [], [f"data.dir={default}", f"data.default_dir={default}", *small])
    assert ensure_default_data(cfg.data) == default
    assert (default / "train" / "train.csv").is_file() and (default / "truth" / "noise.csv").is_file()
    mine = tmp_path / "my-real-data"
    cfg = load_config(None, [], [f"data.dir={mine}", f"data.default_dir={default}", *small])
    ensure_default_data(cfg.data)
    with pytest.raises(DataError, match="does not exist"):
        prepare(cfg, progress=False)
    assert not mine.exists()


def test_a_broken_eval_set_stops_before_training(layout, tmp_path):
    info = layout / "eval" / "info.csv"
    info.write_text(info.read_text() + "0123456789abcdef0123456789abcdef01234567.jpg,0\n")
    with pytest.raises(DataError, match="0123456789abcdef0123456789abcdef01234567.jpg' is not in"):
        prepare(tiny_config(layout, tmp_path / "cache"), progress=False)


def test_summary_command(layout, tmp_path, capsys):
    def main(argv: list[str]) -> int:  # the data summary: train.py --prepare-only
        return train_cli.main([*argv, "--prepare-only", "--wandb", "disabled", "--task", "mask"])

    assert main(["--data-dir", str(layout), "--set", f"data.cache_dir={tmp_path / 'cache'}"]) == 0
    assert "12 people, 84 images" in capsys.readouterr().out
    assert main(["--data-dir", str(layout / "train")]) == 2
    assert "point --data-dir at its parent" in capsys.readouterr().err
