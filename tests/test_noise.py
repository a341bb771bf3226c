"""The noise finder's rules on hand-made out-of-fold frames: gender, age (ranked only), swaps, outliers, the
thresholds (confident learning by hand, and a weak model's simulation where the fixed cut misses the flips),
and the scores against a synthetic set's planted truth."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
from noise_helpers import (
    STEMS,
    flagged,
    frame,
    mask_rows,
    person,
    run_main,
    simulate_oof,
    weak_gender,
    write_experiment,
)

from analysis import noise
from analysis.noise import outputs
from core.errors import DataError
from rundir.layout import OOF_COLUMNS, prob_columns


def test_oof_columns_are_the_writers():
    """The finder reads what callbacks/oof_writer.py writes."""
    from callbacks import oof_writer

    assert OOF_COLUMNS == oof_writer.OOF_COLUMNS == ["person", "image", "stem", "fold", "label"]
    assert prob_columns(3) == oof_writer.prob_columns(3) == ["prob_0", "prob_1", "prob_2"]


def test_gender_flip_needs_the_photos_to_agree():
    f = frame(
        person("a_flipped", 0, [[0.05, 0.95]] * 7)
        + person("b_fine", 0, [[0.95, 0.05]] * 7)
        + person("c_mixed", 0, [[0.05, 0.95]] * 4 + [[0.95, 0.05]] * 3)
        + person("d_one_photo", 0, [[0.0001, 0.9999]] + [[0.7, 0.3]] * 6)
    )
    s = noise.gender_suspects(f, mode=noise.FIXED)
    assert list(s.columns) == noise.SUSPECT_COLUMNS
    assert sorted(s["person"]) == ["a_flipped", "b_fine", "c_mixed", "d_one_photo"]  # every person is ranked
    assert flagged(s)["person"].tolist() == ["a_flipped"] and s.iloc[0]["person"] == "a_flipped"
    row = s.iloc[0]
    assert (row["given"], row["suggested"], row["kind"], row["task"]) == ("male", "female", "gender", "gender")
    assert row["confidence"] == pytest.approx(0.95, abs=0.01) and row["threshold"] == noise.MIN_CONFIDENCE
    assert row["score"] == pytest.approx(noise.scaled_score(row["confidence"], 0.9)) and row["score"] > 0
    assert "7/7 photos" in row["reason"]
    assert s["score"].is_monotonic_decreasing and (s.loc[~s["flag"], "score"] < 0).all()
    post = noise.person_posteriors(f, "gender")
    assert post.loc["c_mixed", "confidence"] < 0.9  # 4 against 3: not confident
    assert post.loc["d_one_photo", "pred"] == 0  # one extreme photo does not outvote six
    assert s.attrs["thresholds"] == {"gender": {"male": 0.9, "female": 0.9}}


def test_age_needs_the_given_age_well_outside_the_predicted_group():
    middle = [[0.02, 0.96, 0.02]] * 7
    f = frame(person("far", 0, middle) + person("near", 0, middle) + person("fine", 1, middle))
    s = noise.age_suspects(f, ages={"far": 22, "near": 28, "fine": 40}, cuts=(30, 60), mode=noise.FIXED)
    # the age rule ranks only (its flags were mostly wrong in every measurement): "far" tops the ranking
    # past the cut, unflagged, and is counted as what the rule would flag
    assert not s["flag"].any() and len(s) == 3 and s.attrs["ranked_only"] == {"age": 1}
    assert s.iloc[0]["person"] == "far" and s.iloc[0]["score"] > 0
    far = s.set_index("person").loc["far"]
    assert far["given"] == "22 (young)" and far["suggested"] == "middle (30-59)"
    assert "8 years outside" in far["reason"]
    # 28 is too near the middle group for it to be suggested: only the old group can be, and it has no support
    near = s.set_index("person").loc["near"]
    assert near["suggested"] == "old (60+)" and near["score"] < -0.9
    # without ages the margin cannot be checked: both disagreements pass the cut
    assert noise.age_suspects(f, ages=None, mode=noise.FIXED).attrs["ranked_only"] == {"age": 2}
    assert outputs._nearest_age("22 (young)", "middle (30-59)", (30, 60)) == 30
    assert outputs._nearest_age("45 (middle)", "young (0-29)", (30, 60)) == 29
    assert outputs._nearest_age("59 (middle)", "old (60+)", (30, 58)) == 59


def test_swap_needs_both_photos_and_explains_them():
    looks_normal, looks_incorrect = [0.01, 0.02, 0.97], [0.01, 0.97, 0.02]
    m = frame(
        mask_rows("swapped", {"incorrect_mask": looks_normal, "normal": looks_incorrect})
        + mask_rows("half", {"incorrect_mask": looks_normal})
        + mask_rows("fine")
    )
    swaps = noise.mask_swap_suspects(m, mode=noise.FIXED)
    assert sorted(swaps["person"]) == ["fine", "half", "swapped"] and swaps.iloc[0]["person"] == "swapped"
    assert flagged(swaps)["person"].tolist() == ["swapped"]
    assert swaps.iloc[0]["image"] == "incorrect_mask.jpg;normal.jpg"
    assert swaps.iloc[0]["confidence"] > 0.99
    assert noise.swap_pairs(m.assign(row=m.index)).loc["half", "confidence"] < 0.9

    s = noise.find_suspects({"mask": m}, progress=False, mode=noise.FIXED)
    # the swapped pair is one suspect; the lone contradicted photo is an outlier, labelled incorrect
    assert set(zip(flagged(s)["person"], flagged(s)["kind"], strict=True)) == {
        ("swapped", "mask_swap"),
        ("half", "outlier"),
    }
    half = flagged(s)[flagged(s)["person"] == "half"].iloc[0]
    assert half["image"] == "incorrect_mask.jpg" and half["task"] == "mask"
    assert half["given"] == "incorrect" and half["suggested"] == "not_wear"
    # every photo is ranked; the swapped pair's photos are explained by the swap, not flagged
    photos = s[s["kind"] == "outlier"]
    assert len(photos) == 21
    explained = photos[(photos["person"] == "swapped") & photos["image"].isin(["incorrect_mask.jpg", "normal.jpg"])]
    assert len(explained) == 2 and not explained["flag"].any()
    assert explained["reason"].str.startswith("explained by the flagged mask swap").all()


@pytest.mark.parametrize("mode", [noise.ADAPTIVE, noise.FIXED])
def test_a_photo_that_fits_nothing_is_an_outlier(mode):
    mask, gender, age = [], [], []
    for i in range(60):
        name, g = f"p{i:02d}", i % 2
        mask += mask_rows(name)
        gender += person(name, g, [[0.9, 0.1] if g == 0 else [0.1, 0.9]] * 7)
        age += person(name, 0, [[0.85, 0.1, 0.05]] * 7)
    odd = STEMS.index("mask3")  # p00 (male, young): its mask3 photo fits neither its labels nor its other photos
    mask[odd] = ("p00", "mask3", 0, [0.5, 0.3, 0.2])
    gender[odd] = ("p00", "mask3", 0, [0.02, 0.98])
    age[odd] = ("p00", "mask3", 0, [0.05, 0.15, 0.8])
    frames = {"mask": frame(mask), "gender": frame(gender), "age": frame(age)}
    scores = noise.photo_scores(frames, progress=False)
    assert scores["outlier_confidence"].idxmax() == ("p00", "mask3")
    s = noise.find_suspects(frames, progress=False, mode=mode)
    # the unusual-photo test ranks only (its flags were mostly wrong in every measurement): no flag, counted
    assert not s["flag"].any() and s.attrs["ranked_only"]["outlier"] == 1
    assert s.iloc[0]["person"] == "p00" and s.iloc[0]["image"] == "mask3.jpg"  # the top of the ranking
    assert "unusual photo" in s.iloc[0]["reason"]
    assert s.iloc[0]["given"] == "wear, male, young" and s.iloc[0]["suggested"] == "wear, female, old"
    counts = s["kind"].value_counts().to_dict()
    assert counts == {"outlier": 420, "gender": 60, "age": 60, "mask_swap": 60}  # every unit of every kind


def test_suspects_are_sorted_and_typed():
    g = frame(person("x", 0, [[0.2, 0.8]] * 7) + person("y", 1, [[0.999, 0.001]] * 7))
    s = noise.find_suspects({"gender": g}, min_confidence=0.75, progress=False, mode=noise.FIXED)
    assert list(s.columns) == noise.SUSPECT_COLUMNS
    people = s[s["kind"] == "gender"]
    assert people["person"].tolist() == ["y", "x"] and people["flag"].tolist() == [True, True]
    assert s["score"].is_monotonic_decreasing and s["flag"].dtype == bool
    assert s.attrs["thresholds"]["gender"] == {"male": 0.75, "female": 0.75}


# ------------------------------------------------------------------------------------ the thresholds


def test_thresholds_come_from_the_data():
    """With a weak model the fixed cut misses most flips; the thresholds from the data find them, and the
    ranking puts them first."""
    f, flips = weak_gender()
    fixed = noise.gender_suspects(f, mode=noise.FIXED)
    adaptive = noise.gender_suspects(f, mode=noise.ADAPTIVE)
    assert len(flips & set(flagged(fixed)["person"])) <= 0.5 * len(flips)
    found = flips & set(flagged(adaptive)["person"])
    assert len(found) >= 0.8 * len(flips), len(found)
    assert len(found) >= 0.5 * len(flagged(adaptive)), len(flagged(adaptive))
    assert len(flips & set(adaptive["person"].head(2 * len(flips)))) >= 0.9 * len(flips)
    # the thresholds are the people's mean self-confidence per class (photos pooled), below the fixed cut
    post = noise.person_posteriors(f, "gender")
    means = [post.loc[post["given"] == c, f"p{c}"].mean() for c in (0, 1)]
    used = adaptive.attrs["thresholds"]["gender"]
    assert [used["male"], used["female"]] == pytest.approx(means, abs=1e-4)
    assert max(means) < noise.MIN_CONFIDENCE
    row = adaptive.set_index("person").loc[sorted(found)[0]]
    assert row["threshold"] == pytest.approx(used[row["suggested"]], abs=1e-4)


def test_confident_learning_by_hand():
    """judge: the thresholds, the confident joint's calibration, the flags of each cell, the cap, the fixed cut."""
    probs = np.array([[0.9, 0.1], [0.7, 0.3], [0.65, 0.35], [0.2, 0.8], [0.3, 0.7], [0.45, 0.55], [0.1, 0.9]])
    labels = np.array([0, 0, 0, 0, 1, 1, 1])
    v = noise.judge(probs, labels, noise.ADAPTIVE)
    # the mean p(male) of the four labelled male, the mean p(female) of the three labelled female
    assert v.thresholds == pytest.approx([0.6125, 0.7167], abs=1e-4)
    # labelled male: confident labels male, male, male, female: C = [3, 1], all 4 counted, so 1 flag (the 0.8)
    # labelled female: female, none, female: C = [0, 2], nothing to flag
    assert v.flag.tolist() == [False, False, False, True, False, False, False]
    assert v.suggestion.tolist() == [1, 1, 1, 1, 0, 0, 0]
    assert v.threshold.tolist() == pytest.approx([0.7167] * 4 + [0.6125] * 3, abs=1e-4)

    # calibration: three units labelled male reach no threshold (the two 0.6 and the 0.8 female), so the one
    # over the female threshold stands for 1 * 7 / 4 = 1.75 -> 2 wrong labels: the next of its cell is flagged
    p_male = [0.99, 0.99, 0.98, 0.6, 0.6, 0.15, 0.2]
    p_female = [0.9, 0.84, 0.8]
    probs2 = np.array([[p, 1 - p] for p in p_male] + [[1 - p, p] for p in p_female])
    labels2 = np.array([0] * 7 + [1] * 3)
    v2 = noise.judge(probs2, labels2, noise.ADAPTIVE)
    assert v2.thresholds == pytest.approx([4.51 / 7, 2.54 / 3])
    assert int((probs2[:7, 1] >= v2.thresholds[1]).sum()) == 1  # a plain p >= threshold rule flags one
    assert v2.flag.tolist() == [False] * 5 + [True, True] + [False] * 3

    # a sure model's thresholds stop at the cut
    sure = noise.judge(np.array([[0.99, 0.01]] * 19 + [[0.05, 0.95]]), np.zeros(20, int), noise.ADAPTIVE)
    assert sure.thresholds.tolist() == [0.9, 0.9] and sure.flag.tolist() == [False] * 19 + [True]
    # the fixed cut: the suggestion is the model's best label and reaches the cut
    fixed = noise.judge(probs, labels, noise.FIXED, 0.75)
    assert fixed.flag.tolist() == [False, False, False, True, False, False, False]
    assert fixed.thresholds.tolist() == [0.75, 0.75]
    assert noise.scaled_score(np.array([0.9, 0.95, 1.0, 0.45, 0.0]), 0.9).tolist() == pytest.approx(
        [0.0, 0.5, 1.0, -0.5, -1.0]
    )
    assert noise.judge(probs, labels).flag.tolist() == noise.judge(probs, labels, noise.FIXED).flag.tolist()  # default
    with pytest.raises(ValueError, match="fixed, adaptive"):
        noise.judge(probs, labels, "median")


# ------------------------------------------------------------------------------------ scoring


def test_score_suspects_person_and_photo_level():
    truth = pd.DataFrame(
        [
            ("a", "", "gender"),
            ("b", "", "gender"),
            ("c", "", "mask_swap"),
            ("d", "mask2.jpg", "outlier"),
            ("e", "normal.png", "outlier"),
        ],
        columns=["path", "image", "kind"],
    )
    suspects = pd.DataFrame(
        [  # the ranking: score order, flags
            ("a", "", "gender", 0.9, True),
            ("x", "", "gender", 0.8, True),
            ("y", "", "gender", 0.7, True),
            ("b", "", "gender", -0.1, False),
            ("c", "incorrect_mask.jpg;normal.jpg", "mask_swap", 0.9, True),
            ("d", "mask2.jpg", "outlier", 0.9, True),
            ("e", "mask1.jpg", "outlier", 0.8, True),
            ("e", "normal.png", "outlier", -0.2, False),
        ],
        columns=["person", "image", "kind", "score", "flag"],
    )
    r = noise.score_suspects(suspects, truth, {"gender": {"x", "a"}})
    assert r["gender"] == {
        "planted": 2,
        "flagged": 3,
        "found": 1,
        "precision": 0.3333,
        "recall": 0.5,
        "top_n": 4,
        "recall_top_n": 1.0,  # b is not flagged, but within the top 2 x 2 of the ranking
        "flagged_disputed": 1,
        "precision_without_disputed": 0.5,
    }
    assert r["mask_swap"]["precision"] == 1.0 and r["mask_swap"]["recall"] == 1.0
    assert r["outlier"]["recall"] == 1.0  # both people
    assert r["outlier"]["photos"]["recall"] == 0.5  # but only one of the two photos is flagged
    assert r["outlier"]["photos"]["recall_top_n"] == 1.0  # and both are in the top 4 photos
    assert "age" not in r
    assert noise.score_suspects(suspects.iloc[:0], truth)["gender"]["precision"] is None
    # a table without flags counts as all flagged
    assert noise.score_suspects(suspects.drop(columns="flag"), truth)["gender"]["flagged"] == 4


def test_unknown_truth_kinds_are_an_error(tmp_path, synthetic):
    (tmp_path / "truth").mkdir()
    (tmp_path / "truth" / "noise.csv").write_text("path,image,kind\np1,,gender_flip\np2,,gender\np3,,typo\n")
    with pytest.raises(
        DataError, match=r"unknown error kind\(s\) 'gender_flip', 'typo'.*gender, age, mask_swap, outlier"
    ):
        noise.read_truth(tmp_path)
    truth = pd.DataFrame([("p1", "", "gender_flip")], columns=["path", "image", "kind"])
    with pytest.raises(DataError, match="knows gender, age, mask_swap, outlier"):
        noise.score_suspects(pd.DataFrame(columns=["person", "image", "kind"]), truth)
    (tmp_path / "truth" / "disputed.csv").write_text("path,kind\np1,sex\n")
    with pytest.raises(DataError, match="disputed.csv: unknown error kind"):
        noise.read_disputed(tmp_path)
    # the command stops before ranking, with one line naming the kinds
    data = tmp_path / "data"
    shutil.copytree(synthetic, data)
    truth = pd.read_csv(data / "truth" / "noise.csv", dtype=str, keep_default_na=False)
    truth["kind"] = truth["kind"].replace({"gender": "gender_flip"})
    truth.to_csv(data / "truth" / "noise.csv", index=False)
    frames = simulate_oof(synthetic)
    write_experiment(tmp_path / "runs", "e", {"gender": frames["gender"]}, data)
    rc, out, err = run_main("--exp", "e", "--runs-dir", str(tmp_path / "runs"), "--quiet")
    assert rc == 2 and "unknown error kind(s) 'gender_flip'" in err and "knows gender, age, mask_swap" in err
    assert not (tmp_path / "runs" / "e" / "noise").exists()
