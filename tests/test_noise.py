"""The noise finder: ranking on hand-made out-of-fold frames, the draft corrections through apply_relabels,
the command end to end, its errors, and a lower bound on precision/recall against the planted truth of a
generated synthetic set.

No model is trained here: the out-of-fold probabilities of the end-to-end test are drawn from the
synthetic set's truth with model errors at the levels that real models trained on the 2,700-person
synthetic set showed (benchmarks/results/noise-finder-synthetic-2700-cpu-2core.json):

- mask: the state each photo really shows (the incorrect_mask and normal states of a swapped person
  exchanged); wrong on 0.3% of photos, and then unsure (0.4 to 0.9 on the wrong state); right ones get
  0.9 to 1.0 on the true state.
- gender: a person looks like their true gender, with a logit towards it of N(4, 1), except for the
  set's disputed people (``truth/disputed.csv``, drawn between the genders), whose logit is N(0, 1) as a
  calibrated model's would be (the model of that file was surer: it flagged 2 of 14); each photo adds
  N(0, 1).
- age: a person looks their true age plus N(0, 3) years, each photo adds N(0, 2); the probability of
  each group falls off smoothly (2 years per logit) across the cuts.
- outlier photos fit nothing: their probabilities are drawn from a flat Dirichlet on every head.
"""

from __future__ import annotations

import contextlib
import io
import json
import sys
import types
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from analysis import noise
from analysis.noise import outputs
from core.errors import DataError
from core.tasks import MASK_FILES, class18
from datamodules.layout import read_train
from datamodules.relabel import apply_relabels
from rundir.layout import OOF_COLUMNS, prob_columns

STEMS = list(MASK_FILES)


# ------------------------------------------------------------------------------------ hand-made frames


def frame(rows: list[tuple]) -> pd.DataFrame:
    """An OOF frame from ``(person, stem, label, [probabilities])`` rows."""
    k = len(rows[0][3])
    data = [(p, f"{s}.jpg", s, 0, lab, *probs) for p, s, lab, probs in rows]
    return pd.DataFrame(data, columns=OOF_COLUMNS + prob_columns(k))


def person(name: str, label: int, per_photo: list[list[float]]) -> list[tuple]:
    return [(name, stem, label, p) for stem, p in zip(STEMS, per_photo, strict=True)]


def mask_rows(name: str, probs: dict[str, list[float]] | None = None) -> list[tuple]:
    """A person's 7 mask photos, each confidently its labelled state unless ``probs`` says otherwise."""
    rows = []
    for stem, lab in MASK_FILES.items():
        p = [0.01, 0.01, 0.01]
        p[lab] = 0.98
        rows.append((name, stem, lab, (probs or {}).get(stem, p)))
    return rows


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
    s = noise.gender_suspects(f)
    assert s["person"].tolist() == ["a_flipped"]
    row = s.iloc[0]
    assert (row["given"], row["predicted"], row["kind"], row["task"]) == ("male", "female", "gender", "gender")
    assert row["confidence"] == pytest.approx(0.95, abs=0.01)
    assert "7/7 photos" in row["reason"]
    post = noise.person_posteriors(f, "gender")
    assert post.loc["c_mixed", "confidence"] < 0.9  # 4 against 3: not confident
    assert post.loc["d_one_photo", "pred"] == 0  # one extreme photo does not outvote six


def test_age_needs_the_given_age_well_outside_the_predicted_group():
    middle = [[0.02, 0.96, 0.02]] * 7
    f = frame(person("far", 0, middle) + person("near", 0, middle) + person("fine", 1, middle))
    s = noise.age_suspects(f, ages={"far": 22, "near": 28, "fine": 40}, cuts=(30, 60))
    assert s["person"].tolist() == ["far"]
    assert s.iloc[0]["given"] == "22 (young)" and s.iloc[0]["predicted"] == "middle (30-59)"
    assert "8 years outside" in s.iloc[0]["reason"]
    # without ages the margin cannot be checked: both disagreements are reported
    assert sorted(noise.age_suspects(f, ages=None)["person"]) == ["far", "near"]
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
    swaps = noise.mask_swap_suspects(m)
    assert swaps["person"].tolist() == ["swapped"]
    assert swaps.iloc[0]["image"] == "incorrect_mask.jpg;normal.jpg"
    assert swaps.iloc[0]["confidence"] > 0.99
    assert noise.swap_pairs(m.assign(row=m.index)).loc["half", "confidence"] < 0.9

    s = noise.find_suspects({"mask": m}, progress=False)
    # the swapped pair is one suspect; the lone contradicted photo is an outlier, labelled incorrect
    assert set(zip(s["person"], s["kind"], strict=True)) == {("swapped", "mask_swap"), ("half", "outlier")}
    half = s[s["person"] == "half"].iloc[0]
    assert half["image"] == "incorrect_mask.jpg" and half["task"] == "mask"
    assert half["given"] == "incorrect" and half["predicted"] == "not_wear"


def test_a_photo_that_fits_nothing_is_an_outlier():
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
    s = noise.find_suspects(frames, progress=False)
    assert s[["person", "image", "kind"]].values.tolist() == [["p00", "mask3.jpg", "outlier"]]
    assert "unusual photo" in s.iloc[0]["reason"]
    assert s.iloc[0]["given"] == "wear, male, young" and s.iloc[0]["predicted"] == "wear, female, old"


def test_suspects_are_sorted_and_typed():
    g = frame(person("x", 0, [[0.2, 0.8]] * 7) + person("y", 1, [[0.999, 0.001]] * 7))
    s = noise.find_suspects({"gender": g}, min_confidence=0.75, progress=False)
    assert list(s.columns) == noise.SUSPECT_COLUMNS
    assert s["person"].tolist() == ["y", "x"]
    assert s["confidence"].is_monotonic_decreasing


# ------------------------------------------------------------------------------------ draft round trip


def test_draft_round_trips_through_apply_relabels(layout, tmp_path):
    suspects = pd.DataFrame(
        [
            ("000002_male_Asian_25", "", "gender", "male", "female", 0.99, "r", "gender"),
            ("000003_female_Asian_45", "", "age", "45 (middle)", "young (0-29)", 0.97, "r", "age"),
            ("000005_female_Asian_60", "", "age", "unknown", "middle (30-59)", 0.95, "r", "age"),
            ("003397_female_Asian_19", "incorrect_mask.jpg;normal.png", "mask", "x", "y", 0.99, "r", "mask_swap"),
            ("001498-1_male_Asian_22", "mask3.jpeg", "all", "a", "b", 0.93, 'odd "photo": yes', "outlier"),
            ("000004_male_Asian_33", "normal.png", "mask", "not_wear", "incorrect, male", 0.92, "r", "outlier"),
        ],
        columns=noise.SUSPECT_COLUMNS,
    )
    text = noise.draft_corrections(suspects, "e1", (30, 60), ["competition"], "runs/e1/noise/draft.yaml")
    assert text.startswith("# Draft corrections")
    assert "data.relabel=[competition, runs/e1/noise/draft.yaml]" in text
    data = yaml.safe_load(text)
    assert data["gender"] == {"000002_male_Asian_25": "female"}
    assert data["age"] == {"000003_female_Asian_45": 29}  # the unknown age is left commented out
    assert data["swap_incorrect_normal"] == ["003397_female_Asian_19"]
    assert data["exclude_images"] == ["001498-1_male_Asian_22/mask3", "000004_male_Asian_33/normal"]
    path = tmp_path / "draft.yaml"
    path.write_text(text)

    images = read_train(layout)
    changes = noise.check_draft(path, images)
    new, _ = apply_relabels(images, [str(path)])
    by = new.set_index(["person", "stem"])
    assert by.loc[("000002_male_Asian_25", "mask1"), "gender"] == 1
    assert by.loc[("000003_female_Asian_45", "mask1"), "age"] == 29
    assert by.loc[("003397_female_Asian_19", "incorrect_mask"), "mask"] == 2
    assert by.loc[("003397_female_Asian_19", "normal"), "mask"] == 1
    assert len(new) == len(images) - 2
    assert set(changes["field"]) == {"gender", "age", "mask", "excluded"}

    empty = noise.draft_corrections(suspects.iloc[:0], "e1", (30, 60))
    empty_path = tmp_path / "empty.yaml"
    empty_path.write_text(empty)
    assert noise.check_draft(empty_path, images).empty


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
        [
            ("a", "", "gender"),
            ("x", "", "gender"),
            ("y", "", "gender"),
            ("c", "incorrect_mask.jpg;normal.jpg", "mask_swap"),
            ("d", "mask2.jpg", "outlier"),
            ("e", "mask1.jpg", "outlier"),
        ],
        columns=["person", "image", "kind"],
    )
    r = noise.score_suspects(suspects, truth, {"gender": {"x", "a"}})
    assert r["gender"] == {
        "planted": 2,
        "flagged": 3,
        "found": 1,
        "precision": 0.3333,
        "recall": 0.5,
        "flagged_disputed": 1,
        "precision_without_disputed": 0.5,
    }
    assert r["mask_swap"]["precision"] == 1.0 and r["mask_swap"]["recall"] == 1.0
    assert r["outlier"]["recall"] == 1.0  # both people
    assert r["outlier"]["photos"]["recall"] == 0.5  # but only one of the two photos
    assert "age" not in r
    assert noise.score_suspects(suspects.iloc[:0], truth)["gender"]["precision"] is None


# ------------------------------------------------------------------------------------ end to end


def simulate_oof(data_dir: Path, seed: int = 0, folds: int = 3) -> dict[str, pd.DataFrame]:
    """OOF frames drawn from the set's truth with the model errors of the module doc."""
    rng = np.random.default_rng(seed)
    images = read_train(data_dir)
    truth = noise.read_truth(data_dir)
    people = images.drop_duplicates("person").set_index("person")
    true_gender = people["gender"].copy()
    true_age = people["age"].astype(float).copy()
    for r in truth.itertuples():
        if r.kind == "gender":
            true_gender[r.path] = 1 - true_gender[r.path]
        elif r.kind == "age":
            true_age[r.path] = float(r.true)
    swapped = set(truth.loc[truth["kind"] == "mask_swap", "path"])
    outliers = {(r.path, Path(r.image).stem) for r in truth[truth["kind"] == "outlier"].itertuples()}
    disputed = people.index.isin(noise.read_disputed(data_dir)["gender"])
    towards_female = np.where(true_gender == 1, 1, -1)
    strength = np.where(disputed, rng.normal(0, 1, len(people)), rng.normal(4, 1, len(people)) * towards_female)
    strength = pd.Series(strength, index=people.index)
    looks_age = true_age + rng.normal(0, 3, len(people))
    fold = pd.Series(rng.integers(folds, size=len(people)), index=people.index)

    rows = {"mask": [], "gender": [], "age": []}
    for r in images.itertuples():
        base = (r.person, r.image, r.stem, int(fold[r.person]))
        age_group = int((r.age >= 30) + (r.age >= 60))
        if (r.person, r.stem) in outliers:
            probs = {t: rng.dirichlet(np.ones(k)) for t, k in (("mask", 3), ("gender", 2), ("age", 3))}
        else:
            state = r.mask
            if r.person in swapped and state in (1, 2):
                state = 3 - state
            if rng.random() < 0.003:
                state = int(rng.choice([s for s in range(3) if s != state]))
                top = rng.uniform(0.4, 0.9)
            else:
                top = rng.uniform(0.9, 1.0)
            pm = np.full(3, (1 - top) / 2)
            pm[state] = top
            pf = 1 / (1 + np.exp(-(strength[r.person] + rng.normal(0, 1))))
            a = looks_age[r.person] + rng.normal(0, 2)
            young, old = 1 / (1 + np.exp((a - 29.5) / 2)), 1 / (1 + np.exp(-(a - 59.5) / 2))
            pa = np.array([young, max(1 - young - old, 1e-4), old])
            probs = {"mask": pm, "gender": np.array([1 - pf, pf]), "age": pa / pa.sum()}
        rows["mask"].append((*base, r.mask, *probs["mask"]))
        rows["gender"].append((*base, r.gender, *probs["gender"]))
        rows["age"].append((*base, age_group, *probs["age"]))
    frames = {t: pd.DataFrame(v, columns=OOF_COLUMNS + prob_columns(len(v[0]) - 5)) for t, v in rows.items()}
    return frames


def write_experiment(runs: Path, exp: str, frames: dict[str, pd.DataFrame], data_dir: Path) -> Path:
    for task, f in frames.items():
        for k, part in f.groupby("fold"):
            out = runs / exp / task / f"fold{k}"
            out.mkdir(parents=True)
            part.to_csv(out / "oof.csv", index=False, float_format="%.6f")
            cfg = {"exp": exp, "data": {"dir": str(data_dir), "age_cuts": [30, 60], "relabel": []}}
            (out / "config.yaml").write_text(yaml.safe_dump(cfg | {"wandb": {"mode": "disabled"}}))
    return runs / exp


def run_main(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = noise.main(list(argv))
    return rc, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def finder_run(synthetic, tmp_path_factory):
    """The command on the synthetic set, with simulated out-of-fold predictions."""
    runs = tmp_path_factory.mktemp("noise") / "runs"
    write_experiment(runs, "sim", simulate_oof(synthetic), synthetic)
    rc, out, err = run_main("--exp", "sim", "--runs-dir", str(runs), "--top", "8", "--quiet")
    return {"rc": rc, "out": out, "err": err, "dir": runs / "sim" / "noise"}


def test_cli_end_to_end(finder_run, synthetic):
    assert finder_run["rc"] == 0, finder_run["err"]
    out_dir = finder_run["dir"]
    suspects = pd.read_csv(out_dir / "suspects.csv", dtype={"person": str}, keep_default_na=False)
    assert list(suspects.columns) == noise.SUSPECT_COLUMNS
    assert len(suspects) > 0 and suspects["confidence"].is_monotonic_decreasing
    assert (suspects["confidence"] >= noise.MIN_CONFIDENCE).all()
    sheet = out_dir / noise.SHEET_NAME
    from PIL import Image

    with Image.open(sheet) as im:
        assert im.width > 200 and im.height > 100
    assert "applies cleanly" in finder_run["out"] and str(out_dir / noise.DRAFT_NAME) in finder_run["out"]
    assert "Traceback" not in finder_run["err"]
    # a synthetic set's planted truth is scored, printed and saved
    scores = json.loads((out_dir / noise.TRUTH_SCORES_NAME).read_text())["scores"]
    assert scores == noise.score_suspects(suspects, noise.read_truth(synthetic), noise.read_disputed(synthetic))
    assert set(scores) == {"gender", "age", "mask_swap", "outlier"}
    assert "against the planted errors" in finder_run["out"]
    swap = scores["mask_swap"]
    assert f"mask_swap: found {swap['found']}/{swap['planted']}, flagged {swap['flagged']}" in finder_run["out"]
    # the draft file is accepted by the relabel layer and changes what it says
    draft = out_dir / noise.DRAFT_NAME
    text = draft.read_text()
    assert "REVIEW BEFORE USE" in text and "data.relabel=[" in text
    changes = noise.check_draft(draft, read_train(synthetic))
    expected = {
        "gender": int((suspects["kind"] == "gender").sum()),
        "excluded": int((suspects["kind"] == "outlier").sum()),
        "mask": 2 * int((suspects["kind"] == "mask_swap").sum()),
    }
    assert changes["field"].value_counts().reindex(list(expected), fill_value=0).to_dict() == expected


def test_finds_planted_noise_on_a_small_synthetic_set(finder_run, synthetic):
    """Lower bounds on the 300-person set (2 gender flips, 1 age error, 1 swap, 4 outlier photos)."""
    suspects = pd.read_csv(finder_run["dir"] / "suspects.csv", dtype={"person": str}, keep_default_na=False)
    r = noise.score_suspects(suspects, noise.read_truth(synthetic), noise.read_disputed(synthetic))
    assert r["mask_swap"]["recall"] >= 0.9 and r["mask_swap"]["precision"] >= 0.8, r["mask_swap"]
    assert r["gender"]["recall"] >= 0.9 and r["gender"]["precision"] >= 0.8, r["gender"]
    assert r["gender"]["flagged_disputed"] == 0, r["gender"]
    assert r["age"]["recall"] >= 0.9 and r["age"]["precision"] >= 0.5, r["age"]
    assert r["outlier"]["photos"]["recall"] >= 0.5 and r["outlier"]["photos"]["precision"] >= 0.5, r["outlier"]


def test_a_multihead_experiment_reads_like_three_models(finder_run, synthetic, tmp_path):
    """One multihead model's OOF files (18-class label, the heads' probabilities side by side) give the
    same suspects as the three separate models, with the experiment's data and age cuts found."""
    frames = simulate_oof(synthetic)
    keys = ["person", "image", "stem", "fold"]
    merged = frames["mask"][keys].copy()
    merged["label"] = class18(frames["mask"]["label"], frames["gender"]["label"], frames["age"]["label"])
    probs = [frames[t][prob_columns(k)].to_numpy() for t, k in (("mask", 3), ("gender", 2), ("age", 3))]
    merged[prob_columns(8)] = np.hstack(probs)
    exp_dir = write_experiment(tmp_path / "runs", "mh", {"multihead": merged}, synthetic)
    rc, out, err = run_main("--exp", "mh", "--runs-dir", str(tmp_path / "runs"), "--top", "8", "--quiet")
    assert rc == 0, err
    assert "no data directory" not in out and "against the planted errors" in out
    assert (exp_dir / "noise" / noise.SHEET_NAME).is_file()
    ours = pd.read_csv(exp_dir / "noise" / "suspects.csv", dtype={"person": str}, keep_default_na=False)
    theirs = pd.read_csv(finder_run["dir"] / "suspects.csv", dtype={"person": str}, keep_default_na=False)
    pd.testing.assert_frame_equal(ours, theirs)


def test_missing_task_and_missing_data_are_said(synthetic, tmp_path, caplog):
    frames = simulate_oof(synthetic)
    write_experiment(tmp_path / "runs", "two", {t: frames[t] for t in ("mask", "gender")}, tmp_path / "moved")
    rc, out, err = run_main("--exp", "two", "--runs-dir", str(tmp_path / "runs"), "--quiet")
    assert rc == 0, err
    assert "missing out-of-fold predictions: age" in out
    assert "no data directory" in out and "is not here" in caplog.text
    assert not (tmp_path / "runs" / "two" / "noise" / noise.SHEET_NAME).exists()
    suspects = pd.read_csv(tmp_path / "runs" / "two" / "noise" / "suspects.csv")
    assert "age" not in set(suspects["kind"])


# ------------------------------------------------------------------------------------ errors


def test_errors_are_one_line(tmp_path):
    runs = tmp_path / "runs"
    rc, _, err = run_main("--exp", "nope", "--runs-dir", str(runs))
    assert rc == 2 and err.startswith("error: experiment 'nope' does not exist") and "Traceback" not in err

    (runs / "empty" / "mask" / "fold0").mkdir(parents=True)
    rc, _, err = run_main("--exp", "empty", "--runs-dir", str(runs))
    assert rc == 2 and "no out-of-fold predictions under" in err

    bad = runs / "bad" / "gender" / "fold0"
    bad.mkdir(parents=True)
    (bad / "oof.csv").write_text("person,image,stem,fold,label,prob_0\np,mask1.jpg,mask1,0,0,0.5\n")
    rc, _, err = run_main("--exp", "bad", "--runs-dir", str(runs))
    assert rc == 2 and str(bad / "oof.csv") in err and "prob_1" in err

    (bad / "oof.csv").write_text("person,image,stem,fold,label,prob_0,prob_1\np,mask1.jpg,mask1,0,7,0.5,0.5\n")
    rc, _, err = run_main("--exp", "bad", "--runs-dir", str(runs))
    assert rc == 2 and "row 2" in err

    (bad / "oof.csv").write_text("person,image,stem,fold,label,prob_0,prob_1\np,mask1.jpg,mask1,0,1,0.5,0.5\n")
    rc, _, err = run_main("--exp", "bad", "--runs-dir", str(runs), "--data-dir", str(tmp_path / "nowhere"))
    assert rc == 2 and "does not exist (--data-dir)" in err

    with pytest.raises(DataError):
        run_main("--exp", "nope", "--runs-dir", str(runs), "--debug")
    with pytest.raises(DataError, match="truth/noise.csv is missing"):
        noise.read_truth(tmp_path)
    assert noise.read_disputed(tmp_path) == {}
    (tmp_path / "truth").mkdir()
    (tmp_path / "truth" / "disputed.csv").write_text("person,kind\np,gender\n")
    with pytest.raises(DataError, match="disputed.csv: missing column"):
        noise.read_disputed(tmp_path)


# ------------------------------------------------------------------------------------ W&B


def test_wandb_table_is_logged(monkeypatch, tmp_path):
    logged = {}

    class Run:
        dir = str(tmp_path)

        def log(self, media):
            logged.update(media)

        def finish(self):
            logged["finished"] = True

    class Table:
        def __init__(self, columns):
            self.columns, self.data = columns, []

        def add_data(self, *row):
            self.data.append(row)

    fake = types.SimpleNamespace(
        init=lambda **kw: logged.setdefault("init", kw) and Run(),
        Settings=lambda **kw: kw,
        Table=Table,
        Image=lambda x: ("image", x),
    )
    monkeypatch.setitem(sys.modules, "wandb", fake)
    from configs.config import load_config

    cfg = load_config(None, [], [f"wandb.dir={tmp_path / 'wandb'}", "exp=e2"])
    suspects = pd.DataFrame([("a", "", "gender", "male", "female", 0.99, "r", "gender")], columns=noise.SUSPECT_COLUMNS)
    noise.log_wandb(cfg, "offline", suspects, {}, None, {"counts": {"gender": 1}})
    table = logged["noise/suspects"]
    assert table.columns == ["rank", "photos", *noise.SUSPECT_COLUMNS]
    assert table.data == [(1, None, "a", "", "gender", "male", "female", 0.99, "r", "gender")]
    assert logged["noise/gender"] == 1 and logged["finished"]
    assert logged["init"]["group"] == "e2-noise" and logged["init"]["mode"] == "offline"
