import re
import shutil

import pandas as pd
import pytest
from conftest import write_image

from core.errors import DataError
from core.tasks import age_group, class18, split_class18
from datamodules.layout import read_eval, read_train


def test_reads_every_quirk(layout):
    images = read_train(layout)
    assert len(images) == 12 * 7
    assert images["person"].nunique() == 12
    # one id, two people: a person is a folder
    assert images.loc[images["id"] == "003397", "person"].nunique() == 2
    assert "001498-1" in set(images["id"])
    assert not images["image"].str.startswith("._").any()
    assert set(images["image"].str.rsplit(".", n=1).str[1]) == {"jpg", "png", "jpeg"}
    per_person = images.groupby("person")["mask"].apply(sorted)
    assert all(masks == [0, 0, 0, 0, 0, 1, 2] for masks in per_person)
    row = images[(images["person"] == "000002_male_Asian_25") & (images["stem"] == "normal")].iloc[0]
    assert (row["gender"], row["age"], row["mask"]) == (0, 25, 2)


def test_eval_keeps_info_order_and_skips_hidden(layout):
    frame = read_eval(layout)
    info = pd.read_csv(layout / "eval" / "info.csv")
    assert frame["ImageID"].tolist() == info["ImageID"].tolist()
    assert all(not f.split("/")[-1].startswith("._") for f in frame["file"])


def test_labels_and_18_class_formula():
    assert age_group([18, 29, 30, 59, 60]).tolist() == [0, 0, 1, 1, 2]
    assert age_group([57, 58, 59], (30, 58)).tolist() == [1, 2, 2]
    labels = [class18(m, g, a) for m in range(3) for g in range(2) for a in range(3)]
    assert sorted(labels) == list(range(18))
    assert class18(2, 1, 2) == 17 and class18(0, 0, 0) == 0 and class18(1, 0, 2) == 8
    m, g, a = split_class18(list(range(18)))
    assert (class18(m, g, a) == list(range(18))).all()


@pytest.mark.parametrize(
    "change, message",
    [
        ({(3, "gender"): "unknown"}, r"row 5 .*gender 'unknown'"),
        ({(2, "age"): "forty"}, r"row 4 .*age 'forty' is not a number"),
        ({(1, "path"): "../../etc"}, r"row 3 .*must be a folder name"),
        ({(1, "path"): "/etc"}, r"row 3 .*must be a folder name"),
    ],
)
def test_bad_rows_are_named(layout, change, message):
    csv = layout / "train" / "train.csv"
    df = pd.read_csv(csv, dtype=str)
    for (row, col), value in change.items():
        df.loc[row, col] = value
    df.to_csv(csv, index=False)
    with pytest.raises(DataError, match=message):
        read_train(layout)


def test_missing_column_is_named(layout):
    csv = layout / "train" / "train.csv"
    pd.read_csv(csv, dtype=str).drop(columns=["age"]).to_csv(csv, index=False)
    with pytest.raises(DataError, match="missing column.*age"):
        read_train(layout)


def test_missing_photo_and_duplicate_stem(layout):
    folder = layout / "train" / "images" / "000003_female_Asian_45"
    next(folder.glob("mask4.*")).unlink()
    write_image(folder / "normal.bmp", seed=1)
    other = next(folder.glob("normal.*"))
    with pytest.raises(DataError) as err:
        read_train(layout)
    text = str(err.value)
    assert "missing mask4" in text and "000003_female_Asian_45" in text
    assert "two files with the stem 'normal'" in text and other.name in text


def test_missing_folder_and_wrong_directory(layout):
    shutil.rmtree(layout / "train" / "images" / "000004_male_Asian_33")
    with pytest.raises(DataError, match="000004_male_Asian_33 does not exist"):
        read_train(layout)
    with pytest.raises(DataError, match="point --data-dir at its parent"):
        read_train(layout / "train")


def test_empty_and_absent_directories(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="is empty"):
        read_train(tmp_path / "empty")
    with pytest.raises(DataError, match="does not exist"):
        read_train(tmp_path / "absent")


def test_eval_errors(layout):
    info = layout / "eval" / "info.csv"
    df = pd.read_csv(info)
    pd.concat([df, df.iloc[[0]], pd.DataFrame({"ImageID": ["f" * 40 + ".jpg"], "ans": [0]})]).to_csv(info, index=False)
    with pytest.raises(DataError) as err:
        read_eval(layout)
    assert "already appears in row 2" in str(err.value)
    assert "f" * 40 + ".jpg' is not in" in str(err.value)


@pytest.mark.parametrize("age, kept", [("45", 45), ("45.0", 45), (" 33 ", 33)])
def test_whole_ages_are_read(layout, age, kept):
    csv = layout / "train" / "train.csv"
    df = pd.read_csv(csv, dtype=str)
    df.loc[2, "age"] = age
    df.to_csv(csv, index=False)
    images = read_train(layout)
    assert (images.loc[images["person"] == df.loc[2, "path"], "age"] == kept).all()


@pytest.mark.parametrize("age", ["45.5", "inf", "-inf", "nan", "1e400"])
def test_ages_that_are_not_whole_years_are_named(layout, age):
    csv = layout / "train" / "train.csv"
    df = pd.read_csv(csv, dtype=str)
    df.loc[2, "age"] = age
    df.to_csv(csv, index=False)
    with pytest.raises(DataError, match=rf"row 4 \(path '000003_female_Asian_45'\): age '{age}' is not a whole number"):
        read_train(layout)


def test_an_eval_csv_without_rows_is_named(layout):
    info = layout / "eval" / "info.csv"
    info.write_text("ImageID,ans\n")
    with pytest.raises(DataError, match=re.escape(f"{info}: lists no images")):
        read_eval(layout)
