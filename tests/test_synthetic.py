"""The synthetic data set has the competition layout, its quirks, its planted noise and stable output."""

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image, UnidentifiedImageError

from core.tasks import MASK_FILES, age_group
from synthetic import femaleness, generate, sample_people, write_preview
from synthetic.__main__ import main
from synthetic.drawing import _identity
from synthetic.people import GENDER_AMBIGUITY, GENDER_AMBIGUOUS_P, MASK_STEMS

SIZE = (48, 64)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("syn") / "data"
    return generate(out, people=100, eval_people=10, size=SIZE, seed=0, workers=2, progress=False)


def _train(data: Path) -> pd.DataFrame:
    return pd.read_csv(data / "train" / "train.csv", dtype={"id": str})


def _photos(folder: Path) -> dict[str, Path]:
    return {p.stem: p for p in folder.iterdir() if not p.name.startswith(".")}


def _all_files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_train_layout(data):
    train = _train(data)
    assert list(train.columns) == ["id", "gender", "race", "age", "path"]
    assert len(train) == 100 and train["path"].is_unique and train["path"].is_monotonic_increasing
    assert set(train["race"]) == {"Asian"} and set(train["gender"]) <= {"male", "female"}
    assert train["age"].between(18, 60).all()
    assert all(re.fullmatch(r"\d{6}(-\d)?", i) for i in train["id"])
    assert (train["path"] == train["id"] + "_" + train["gender"] + "_Asian_" + train["age"].astype(str)).all()
    folders = sorted(p.name for p in (data / "train" / "images").iterdir())
    assert folders == list(train["path"])
    for folder in folders:
        photos = _photos(data / "train" / "images" / folder)
        assert sorted(photos) == sorted(MASK_STEMS)
    with Image.open(photos["mask1"]) as im:
        assert im.mode == "RGB" and im.size == SIZE


def test_eval_layout(data):
    info = pd.read_csv(data / "eval" / "info.csv")
    assert list(info.columns) == ["ImageID", "ans"]
    assert len(info) == 7 * 10 and (info["ans"] == 0).all() and info["ImageID"].is_unique
    assert all(re.fullmatch(r"[0-9a-f]{40}\.jpg", name) for name in info["ImageID"])
    files = {p.name for p in (data / "eval" / "images").iterdir()}
    hidden = {f for f in files if f.startswith("._")}
    assert hidden and files - hidden == set(info["ImageID"])


def test_quirks_present(data):
    train = _train(data)
    assert (train["id"] == "003397").sum() == 2, "one id used by two different folders"
    assert train["id"].str.fullmatch(r"\d{6}-\d").sum() >= 1, "suffixed ids like 001498-1"
    hidden = list((data / "train" / "images").glob("*/._*"))
    assert hidden, "macOS ._ files in some train folders"
    with pytest.raises(UnidentifiedImageError):
        Image.open(hidden[0])
    exts = [p.suffix for p in (data / "train" / "images").glob("*/*") if not p.name.startswith(".")]
    assert set(exts) == {".jpg", ".png", ".jpeg"} and exts.count(".jpg") > 0.9 * len(exts)
    assert {p.suffix for p in (data / "eval" / "images").iterdir()} == {".jpg"}
    assert not [p for p in data.rglob(".*") if not p.name.startswith("._")], "no temporary files left"


def test_eval_answers_follow_the_class_formula(data):
    truth = pd.read_csv(data / "truth" / "eval_answers.csv")
    info = pd.read_csv(data / "eval" / "info.csv")
    assert list(truth.columns) == ["ImageID", "ans", "mask", "gender", "age_group", "person"]
    assert list(truth["ImageID"]) == list(info["ImageID"])
    assert (truth["ans"] == truth["mask"] * 6 + truth["gender"] * 3 + truth["age_group"]).all()
    assert truth["ans"].between(0, 17).all() and (truth["mask"] == 0).sum() == 5 * 10
    # each eval person's 7 photos, one person each: what the person grouping of predict.py is scored against
    photos = truth.groupby("person")
    assert (photos.size() == 7).all() and (photos[["gender", "age_group"]].nunique() == 1).all().all()
    assert sorted(photos.groups) == list(range(len(truth) // 7))


def test_planted_noise_matches_the_files(data):
    train = _train(data).set_index("path")
    noise = pd.read_csv(data / "truth" / "noise.csv", dtype=str, keep_default_na=False)
    assert list(noise.columns) == ["path", "image", "kind", "given", "true"]
    assert set(noise["kind"]) == {"gender", "mask_swap", "age", "outlier"}
    assert noise["path"].isin(train.index).all()
    for row in noise.itertuples():
        person = train.loc[row.path]
        if row.kind == "gender":
            assert person["gender"] == row.given != row.true and row.image == ""
        elif row.kind == "age":
            assert person["age"] == int(row.given) and age_group(int(row.given)) != age_group(int(row.true))
        elif row.kind == "mask_swap":
            assert (row.image, row.given, row.true) == ("", "incorrect_mask/normal", "normal/incorrect_mask")
        else:
            assert (data / "train" / "images" / row.path / row.image).is_file()
            assert row.given == Path(row.image).stem and row.true == "outlier"


def test_disputed_people_are_listed(data):
    train = _train(data).set_index("path")
    noise = pd.read_csv(data / "truth" / "noise.csv", dtype=str, keep_default_na=False)
    flipped = set(noise.loc[noise["kind"] == "gender", "path"])
    disputed = pd.read_csv(data / "truth" / "disputed.csv", dtype=str, keep_default_na=False)
    assert list(disputed.columns) == ["path", "kind", "given", "true", "femaleness"]
    assert len(disputed) > 0 and (disputed["kind"] == "gender").all() and disputed["path"].isin(train.index).all()
    lo, hi = GENDER_AMBIGUITY
    assert disputed["femaleness"].astype(float).between(lo, hi).all()
    for row in disputed.itertuples():
        assert train.loc[row.path, "gender"] == row.given
        assert (row.given != row.true) == (row.path in flipped)


def test_femaleness_is_the_label_except_for_the_ambiguous_share():
    female = np.arange(20_000) % 3 == 0
    f = femaleness(np.random.default_rng(0), female)
    ambiguous = (f > 0) & (f < 1)
    assert ambiguous.sum() == round(GENDER_AMBIGUOUS_P * len(female))
    assert round(GENDER_AMBIGUOUS_P * 2700) == 14  # the real data's 14 disputed labels
    assert (f[~ambiguous] == female[~ambiguous]).all()
    lo, hi = GENDER_AMBIGUITY
    assert (f[ambiguous] >= lo).all() and (f[ambiguous] <= hi).all()


def test_ambiguous_cues_sit_between_the_genders_and_look_alike():
    def cues(f: float) -> pd.DataFrame:
        rng = np.random.default_rng(1)
        ids = [_identity(rng, f, 30) for _ in range(400)]
        return pd.DataFrame(
            {
                "hair_len": [i["hair_len"] for i in ids],
                "face_w": [i["face_w"] for i in ids],
                "brow": [i["brow"] for i in ids],
                "beard": [float(i["beard"] > 0) for i in ids],
                "lip_red": [i["lips"][0] - i["lips"][1] for i in ids],  # red over green
            }
        )

    male, middle, female = cues(0.0), cues(0.5), cues(1.0)
    for cue in ("hair_len", "lip_red"):
        assert male[cue].mean() < middle[cue].mean() < female[cue].mean(), cue
    for cue in ("face_w", "brow"):
        assert male[cue].mean() > middle[cue].mean() > female[cue].mean(), cue
        assert middle[cue].std() < 0.5 * min(male[cue].std(), female[cue].std()), cue
    assert male["beard"].mean() > 0.3 and middle["beard"].max() == female["beard"].max() == 0
    # long hair (drawn above 0.35) is a strong cue: few clear people cross it; disputed people have a bob
    assert (female["hair_len"] <= 0.35).mean() < 0.01 and (male["hair_len"] > 0.35).mean() < 0.01
    assert middle["hair_len"].between(0.35, 0.55).mean() > 0.99


def _rgb(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"), dtype=float)


def test_mask_state_shows_in_the_face_and_identity_stays(data):
    train = _train(data)
    noise = pd.read_csv(data / "truth" / "noise.csv")
    clean = train[~train["path"].isin(noise["path"])]["path"][:20]
    w, h = SIZE
    face = np.s_[int(0.45 * h) : int(0.65 * h), int(0.4 * w) : int(0.6 * w)]  # nose and mouth
    corner = np.s_[: h // 8, : w // 8]
    face_diff, corner_diff, other_person = [], [], []
    previous = None
    for folder in clean:
        photos = _photos(data / "train" / "images" / folder)
        wear, normal = _rgb(photos["mask1"]), _rgb(photos["normal"])
        face_diff.append(np.abs(wear[face] - normal[face]).mean())
        corner_diff.append(np.abs(wear[corner] - normal[corner]).mean())
        if previous is not None:
            other_person.append(np.abs(normal[corner] - previous[corner]).mean())
        previous = normal
    assert np.mean(face_diff) > 2 * np.mean(corner_diff)
    assert np.mean(other_person) > 2 * np.mean(corner_diff)


def test_same_seed_same_bytes_any_workers(tmp_path):
    kwargs = {"people": 25, "eval_people": 3, "size": (32, 40), "progress": False}
    one = _all_files(generate(tmp_path / "a", seed=7, workers=1, **kwargs))
    two = _all_files(generate(tmp_path / "b", seed=7, workers=2, **kwargs))
    other = _all_files(generate(tmp_path / "c", seed=8, workers=1, **kwargs))
    assert one == two
    assert one["train/train.csv"] != other["train/train.csv"]
    assert set(one) != set(other)


def test_priors_match_the_real_data():
    people = sample_people(20_000, seed=1)
    assert list(people.columns) == ["id", "gender", "age"]
    assert abs((people["gender"] == "female").mean() - 0.614) < 0.015
    assert people["age"].min() == 18 and people["age"].max() == 60
    assert abs((people["age"] == 60).mean() - 192 / 2700) < 0.01
    assert abs((people["age"] < 30).mean() - 1281 / 2700) < 0.015
    assert abs((people["age"] == 19).mean() - 407 / 2700) < 0.01
    assert sample_people(50, seed=1).equals(sample_people(50, seed=1))


def test_refuses_existing_output_and_bad_arguments(data, tmp_path):
    with pytest.raises(ValueError, match="already contains"):
        generate(data, people=2, eval_people=1, size=SIZE, progress=False)
    with pytest.raises(ValueError, match="people"):
        generate(tmp_path / "x", people=0, progress=False)
    with pytest.raises(ValueError, match="size"):
        generate(tmp_path / "x", people=2, size=(0, 10), progress=False)


def test_few_people_still_work(tmp_path):
    out = generate(tmp_path / "one", people=1, eval_people=0, size=(16, 20), workers=1, progress=False)
    assert len(_train(out)) == 1 and pd.read_csv(out / "eval" / "info.csv").empty


def test_cli_generates_and_previews(tmp_path):
    out, png = tmp_path / "cli", tmp_path / "sheet.png"
    args = ["--out", str(out), "--people", "3", "--eval-people", "1", "--size", "32x40", "--workers", "1"]
    assert main([*args, "--quiet"]) == 0
    csv_mtime = (out / "train" / "train.csv").stat().st_mtime_ns
    assert main(["--out", str(out), "--preview", str(png)]) == 0  # existing set: preview only
    assert (out / "train" / "train.csv").stat().st_mtime_ns == csv_mtime
    with Image.open(png) as sheet:
        assert sheet.width >= 7 * 32 and sheet.height > 3 * 40
    assert write_preview(out, tmp_path / "two.png", people=2).is_file()
    with pytest.raises(SystemExit):
        main([*args, "--quiet"])  # refuses to overwrite
    with pytest.raises(SystemExit):
        main(["--out", str(tmp_path / "y"), "--size", "0x10"])


def test_mask_labels():
    assert [MASK_FILES[s] for s in MASK_STEMS] == [0, 0, 0, 0, 0, 1, 2]
