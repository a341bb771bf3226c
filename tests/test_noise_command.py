"""The noise finder's command end to end on a synthetic set with simulated out-of-fold predictions: both
threshold modes, reviewed units, a multihead experiment, the flip-TTA predictions, the nearest photos' votes,
and its one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from noise_helpers import flagged, read_ranking, run_main, simulate_oof, write_experiment

from analysis import noise
from core.errors import ConfigError, DataError
from core.tasks import class18
from datamodules.layout import read_train
from rundir.layout import prob_columns, write_done


@pytest.fixture(scope="module")
def finder_run(synthetic, tmp_path_factory):
    """The command on the synthetic set, with simulated out-of-fold predictions: the fixed cut (the default),
    and the same experiment with the adaptive thresholds."""
    runs = tmp_path_factory.mktemp("noise") / "runs"
    write_experiment(runs, "sim", simulate_oof(synthetic), synthetic)
    rc, out, err = run_main("--exp", "sim", "--runs-dir", str(runs), "--top", "8", "--quiet")
    adaptive = runs / "sim" / "noise-adaptive"
    rc2, out2, err2 = run_main(
        "--exp", "sim", "--runs-dir", str(runs), "--quiet", "--thresholds", "adaptive", "--out", str(adaptive)
    )
    assert rc2 == 0, err2
    return {"rc": rc, "out": out, "err": err, "dir": runs / "sim" / "noise", "adaptive": adaptive, "adaptive_out": out2}


def test_cli_end_to_end(finder_run, synthetic):
    assert finder_run["rc"] == 0, finder_run["err"]
    out_dir = finder_run["dir"]
    suspects = read_ranking(out_dir / "suspects.csv")
    assert list(suspects.columns) == noise.SUSPECT_COLUMNS
    # the ranking: every person for gender and age, every incorrect/normal pair, every photo; by score
    images = read_train(synthetic)
    people = set(images["person"])
    for kind in ("gender", "age", "mask_swap"):
        assert sorted(suspects.loc[suspects["kind"] == kind, "person"]) == sorted(people), kind
    assert len(suspects[suspects["kind"] == "outlier"]) == len(images)
    assert suspects["score"].is_monotonic_decreasing and suspects["flag"].dtype == bool
    assert 0 < suspects["flag"].sum() < len(suspects) / 20
    assert suspects["score"].between(-1, 1).all() and suspects["threshold"].between(0, 1).all()
    sheet = out_dir / noise.SHEET_NAME
    from PIL import Image

    with Image.open(sheet) as im:
        assert im.width > 200 and im.height > 100
    assert "applies cleanly" in finder_run["out"] and str(out_dir / noise.DRAFT_NAME) in finder_run["out"]
    assert "thresholds (fixed): gender male 0.900, female 0.900" in finder_run["out"]
    assert "Traceback" not in finder_run["err"]
    # a synthetic set's planted truth is scored, printed and saved, with the thresholds used
    saved = json.loads((out_dir / noise.TRUTH_SCORES_NAME).read_text())
    scores = saved["scores"]
    assert scores == noise.score_suspects(suspects, noise.read_truth(synthetic), noise.read_disputed(synthetic))
    assert set(scores) == {"gender", "age", "mask_swap", "outlier"}
    assert saved["thresholds"] == "fixed" and set(saved["used"]["gender"]) == {"male", "female"}
    assert set(saved["used"]) == {"gender", "age", "mask_swap", "mask", "outlier"}
    assert "against the planted errors" in finder_run["out"]
    swap = scores["mask_swap"]
    assert f"mask_swap: found {swap['found']}/{swap['planted']}, flagged {swap['flagged']}" in finder_run["out"]
    assert f"recall in the top {swap['top_n']} of the ranking" in finder_run["out"]
    # the draft file holds the flagged units, is accepted by the relabel layer and changes what it says
    draft = out_dir / noise.DRAFT_NAME
    text = draft.read_text()
    assert "REVIEW BEFORE USE" in text and "data.relabel=[" in text
    # the rank-only rules: nothing flagged for age, their would-be flags counted in the summary and the draft
    ranked_only = saved["ranked_only"]
    assert not suspects.loc[suspects["kind"] == "age", "flag"].any() and ranked_only["age"] >= 1
    said = f"ranked, not flagged (their flags were measured mostly wrong): {ranked_only['age']} age suggestions"
    assert said in finder_run["out"]
    assert f"# Left out: {ranked_only['age']} age suggestions and {ranked_only['outlier']} unusual photos" in text
    changes = noise.check_draft(draft, images)
    marked = flagged(suspects)
    expected = {
        "gender": int((marked["kind"] == "gender").sum()),
        "excluded": int((marked["kind"] == "outlier").sum()),
        "mask": 2 * int((marked["kind"] == "mask_swap").sum()),
    }
    assert changes["field"].value_counts().reindex(list(expected), fill_value=0).to_dict() == expected


def test_fixed_cut_behaves_as_before(finder_run):
    """The fixed cut (the default): every rule's confidence against 0.9, as the finder always did: a gender,
    swap or mask-contradiction unit is flagged exactly when its confidence reaches the cut (for gender, its
    suggestion is then the model's best label); age ranks only. A photo shown by its unusual-photo score
    (task "all") is flagged only where the mask model also contradicts its label; the swaps' photos are
    explained, not outliers."""
    ranking = read_ranking(finder_run["dir"] / "suspects.csv")
    assert (ranking["threshold"] == noise.MIN_CONFIDENCE).all()
    rule = ranking["kind"].isin(["gender", "mask_swap"]) | (ranking["task"] == "mask")
    assert ranking.loc[rule, "flag"].tolist() == (ranking.loc[rule, "confidence"] >= noise.MIN_CONFIDENCE).tolist()
    assert not ranking.loc[ranking["kind"] == "age", "flag"].any()
    unusual = ranking[(ranking["task"] == "all") & ranking["flag"]]
    assert unusual["reason"].str.startswith("mask model says").all()
    assert "thresholds (adaptive): gender male 0." in finder_run["adaptive_out"]
    adaptive = read_ranking(finder_run["adaptive"] / "suspects.csv")
    assert len(adaptive) == len(ranking) and not adaptive.loc[adaptive["kind"] == "age", "flag"].any()


def test_reviewed_units_are_ranked_last_and_never_flagged(finder_run, synthetic, tmp_path):
    """A corrections file's reviewed: section (the experiment's own data.relabel file, and --reviewed): those
    units keep their score but are not flagged, come after every other unit, leave the draft and the contact
    sheet's top, and are counted in the summary; every other unit's flag stays as it was."""
    before = read_ranking(finder_run["dir"] / "suspects.csv")
    assert not before["reviewed"].any()
    top = {k: flagged(before)[flagged(before)["kind"] == k].iloc[0] for k in ("gender", "outlier")}
    gender, photo = top["gender"], top["outlier"]
    pid = gender["person"].split("_")[0]
    assert (before.loc[before["kind"] == "gender", "person"].str.split("_").str[0] == pid).sum() == 1
    own = tmp_path / "own.yaml"  # trained with: names the person by id
    own.write_text(f'gender: {{}}\nreviewed:\n  gender: ["{pid}"]\n')
    extra = tmp_path / "extra.yaml"  # given on the command line: one photo
    extra.write_text(f'reviewed:\n  outlier: ["{photo["person"]}/{Path(photo["image"]).stem}"]\n')
    runs = tmp_path / "runs"
    write_experiment(runs, "rev", simulate_oof(synthetic), synthetic, relabel=[str(own)])
    rc, said, err = run_main("--exp", "rev", "--runs-dir", str(runs), "--top", "8", "--quiet", "--reviewed", str(extra))
    assert rc == 0, err
    after = read_ranking(runs / "rev" / "noise" / "suspects.csv")
    key = ["kind", "person", "image"]
    marked = after[after["reviewed"]]
    assert sorted(map(tuple, marked[key].to_numpy())) == sorted(
        [("gender", gender["person"], ""), ("outlier", photo["person"], photo["image"])]
    )
    assert not marked["flag"].any() and after["reviewed"].tolist() == sorted(after["reviewed"])  # last
    assert after[~after["reviewed"]]["score"].is_monotonic_decreasing
    merged = before.merge(after, on=key, suffixes=("", "_after"))
    assert len(merged) == len(before)
    np.testing.assert_allclose(merged["score"], merged["score_after"])  # the scores are the model's still
    others = ~merged["reviewed_after"]
    assert (merged.loc[others, "flag"] == merged.loc[others, "flag_after"]).all()
    assert f"reviewed, kept as labelled (ranked last, not flagged): gender 1, outlier 1, from {own}, {extra}" in said
    assert "; 2 of them the rules would have flagged" in said
    draft = (runs / "rev" / "noise" / noise.DRAFT_NAME).read_text()
    assert gender["person"] not in yaml.safe_load(draft)["gender"]
    saved = json.loads((runs / "rev" / "noise" / noise.TRUTH_SCORES_NAME).read_text())
    assert saved["reviewed"] == {
        "files": [str(own), str(extra)],
        "units": {"gender": 1, "outlier": 1},
        "held_back": {"gender": 1, "outlier": 1},
    }
    # a --reviewed file that names no one in the data stops the finder, naming the entry and the option
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text('reviewed:\n  gender: ["999999"]\n')
    rc, _, err = run_main("--exp", "rev", "--runs-dir", str(runs), "--quiet", "--reviewed", str(wrong))
    assert rc == 2 and f"--reviewed {wrong}" in err and "'999999'" in err


def test_finds_planted_noise_on_a_small_synthetic_set(finder_run, synthetic):
    """Lower bounds on the 300-person set (2 gender flips, 1 age error, 1 swap, 4 outlier photos), with the
    fixed cut and with the adaptive thresholds: flags for gender and swaps, the top of the ranking for all."""
    truth, disputed = noise.read_truth(synthetic), noise.read_disputed(synthetic)
    for where in ("dir", "adaptive"):
        r = noise.score_suspects(read_ranking(finder_run[where] / "suspects.csv"), truth, disputed)
        assert r["mask_swap"]["recall"] >= 0.9 and r["mask_swap"]["precision"] >= 0.8, (where, r["mask_swap"])
        assert r["gender"]["recall"] >= 0.9 and r["gender"]["precision"] >= 0.8, (where, r["gender"])
        assert r["gender"]["flagged_disputed"] == 0, (where, r["gender"])
        assert r["age"]["flagged"] == 0 and r["outlier"]["photos"]["recall_top_n"] >= 0.75, (where, r)
        for kind in ("gender", "age", "mask_swap"):
            assert r[kind]["recall_top_n"] == 1.0, (where, kind, r[kind])


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
    ours = read_ranking(exp_dir / "noise" / "suspects.csv")
    theirs = read_ranking(finder_run["dir"] / "suspects.csv")
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


def test_the_flip_tta_predictions_are_ranked_where_every_fold_has_them(synthetic, tmp_path, caplog):
    """The finder ranks each fold's oof_flip.csv (training writes it beside oof.csv: the submission's flip TTA)
    when every fold has one, else oof.csv with a warning naming the command that writes them."""
    runs = tmp_path / "runs"
    plain = simulate_oof(synthetic, seed=0)
    other = simulate_oof(synthetic, seed=1)  # the same rows (and folds below), other probabilities
    flip = {
        t: f.assign(**{c: other[t][c].to_numpy() for c in f.filter(like="prob_").columns}) for t, f in plain.items()
    }
    exp = write_experiment(runs, "both", plain, synthetic)
    for task, f in flip.items():
        for k, part in f.groupby("fold"):
            part.to_csv(exp / task / f"fold{k}" / "oof_flip.csv", index=False, float_format="%.6f")
    write_experiment(runs, "plain", plain, synthetic)
    write_experiment(runs, "flip", flip, synthetic)

    def ranking(exp_name: str, out: str, *extra: str) -> tuple[pd.DataFrame, str]:
        rc, said, err = run_main(
            "--exp", exp_name, "--runs-dir", str(runs), "--quiet", "--out", str(tmp_path / out), *extra
        )
        assert rc == 0, err
        return read_ranking(tmp_path / out / "suspects.csv").drop(columns="reason"), said

    as_plain, said = ranking("plain", "plain")  # no oof_flip.csv at all: oof.csv, and how to make them
    assert "out-of-fold predictions: oof.csv (no TTA)" in said
    assert "python predict.py --exp plain --oof --tta flip" in said and "python predict.py --exp plain" in caplog.text
    as_flip, _ = ranking("flip", "flip")
    assert not as_plain.equals(as_flip)  # the two files rank differently, so the ranking shows which was read
    caplog.clear()
    auto, said = ranking("both", "auto")
    pd.testing.assert_frame_equal(auto, as_flip)
    assert "out-of-fold predictions: oof_flip.csv (flip TTA" in said and "predict.py" not in caplog.text
    assert json.loads((tmp_path / "auto" / noise.TRUTH_SCORES_NAME).read_text())["tta"] == "flip"
    # one fold without it (trained before training wrote it): oof.csv for every fold
    (exp / "gender" / "fold1" / "oof_flip.csv").unlink()
    fallback, said = ranking("both", "fallback")
    pd.testing.assert_frame_equal(fallback, as_plain)
    assert "1 fold(s) lack oof_flip.csv: python predict.py --exp both --oof --tta flip" in said


def test_neighbours_rank_gender_and_age_on_the_nearest_photos_votes(synthetic, tmp_path):
    """--neighbours judges gender and age on each fold's oof_neighbours.csv (the nearest training photos'
    votes) and everything else on the models' own predictions: its gender and age rows are those of an experiment
    whose gender and age models predicted the votes, its mask and outlier rows those of the plain experiment. A
    fold without the file, or with one older than its best.ckpt, is a one-line error naming the command."""
    runs = tmp_path / "runs"
    plain = simulate_oof(synthetic, seed=0)
    votes = {t: f for t, f in simulate_oof(synthetic, seed=1).items() if t in ("gender", "age")}  # same rows, folds
    exp = write_experiment(runs, "both", plain, synthetic)
    for task, f in votes.items():
        for k, part in f.groupby("fold"):
            part.to_csv(exp / task / f"fold{k}" / "oof_neighbours.csv", index=False, float_format="%.6f")
    write_experiment(runs, "plain", plain, synthetic)
    write_experiment(runs, "voted", plain | votes, synthetic)

    def ranking(exp_name: str, out: str, *extra: str) -> tuple[pd.DataFrame, str]:
        rc, said, err = run_main(
            "--exp", exp_name, "--runs-dir", str(runs), "--quiet", "--out", str(tmp_path / out), *extra
        )
        assert rc == 0, err
        table = read_ranking(tmp_path / out / "suspects.csv").drop(columns="reason")
        return table.sort_values(["kind", "person", "image"], ignore_index=True), said

    ours, said = ranking("both", "ours", "--neighbours")
    assert "gender and age ranked on the votes of each photo's nearest training photos (oof_neighbours.csv)" in said
    assert json.loads((tmp_path / "ours" / noise.TRUTH_SCORES_NAME).read_text())["neighbours"] == ["gender", "age"]
    person_level = ours["kind"].isin(["gender", "age"])
    as_voted, as_plain = ranking("voted", "voted")[0], ranking("plain", "plain")[0]
    assert not as_voted[person_level].equals(as_plain[person_level])  # so the test shows which frames were read
    pd.testing.assert_frame_equal(ours[person_level], as_voted[person_level])
    pd.testing.assert_frame_equal(ours[~person_level], as_plain[~person_level])
    pd.testing.assert_frame_equal(ranking("both", "without")[0], as_plain)  # not asked for: the models' outputs

    (exp / "gender" / "fold1" / "best.ckpt").write_bytes(b"")  # a model changed after its votes were written
    rc, _, err = run_main("--exp", "both", "--runs-dir", str(runs), "--quiet", "--neighbours")
    assert rc == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert "older than the best.ckpt" in err and "python predict.py --exp both --neighbours" in err
    (exp / "age" / "fold0" / "oof_neighbours.csv").unlink()
    rc, _, err = run_main("--exp", "both", "--runs-dir", str(runs), "--quiet", "--neighbours")
    assert rc == 2 and "1 oof_neighbours.csv file(s) missing" in err and "age/fold0/oof_neighbours.csv" in err
    assert "python predict.py --exp both --neighbours" in err
    write_experiment(runs, "maskonly", {"mask": plain["mask"]}, synthetic)
    rc, _, err = run_main("--exp", "maskonly", "--runs-dir", str(runs), "--quiet", "--neighbours")
    assert rc == 2 and "predict neither" in err


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
    write_done(bad, {})
    (bad / "oof.csv").write_text("person,image,stem,fold,label,prob_0\np,mask1.jpg,mask1,0,0,0.5\n")
    rc, _, err = run_main("--exp", "bad", "--runs-dir", str(runs))
    assert rc == 2 and str(bad / "oof.csv") in err and "prob_1" in err

    (bad / "oof.csv").write_text("person,image,stem,fold,label,prob_0,prob_1\np,mask1.jpg,mask1,0,7,0.5,0.5\n")
    rc, _, err = run_main("--exp", "bad", "--runs-dir", str(runs))
    assert rc == 2 and "row 2" in err

    (bad / "oof.csv").write_text("person,image,stem,fold,label,prob_0,prob_1\np,mask1.jpg,mask1,0,1,0.5,0.5\n")
    rc, _, err = run_main("--exp", "bad", "--runs-dir", str(runs), "--data-dir", str(tmp_path / "nowhere"))
    assert rc == 2 and "does not exist (--data-dir)" in err

    with pytest.raises(SystemExit) as stopped:  # argparse's own error
        run_main("--exp", "bad", "--runs-dir", str(runs), "--thresholds", "median")
    assert stopped.value.code == 2
    with pytest.raises(ConfigError, match="expected one of fixed, adaptive"):
        noise.run_finder("bad", runs, mode="median")

    with pytest.raises(DataError):
        run_main("--exp", "nope", "--runs-dir", str(runs), "--debug")
    with pytest.raises(DataError, match="truth/noise.csv is missing"):
        noise.read_truth(tmp_path)
    assert noise.read_disputed(tmp_path) == {}
    (tmp_path / "truth").mkdir()
    (tmp_path / "truth" / "disputed.csv").write_text("person,kind\np,gender\n")
    with pytest.raises(DataError, match="disputed.csv: missing column"):
        noise.read_disputed(tmp_path)


def test_help_fits_on_one_screen(monkeypatch):
    """python -m analysis.noise --help on an 80-column terminal: at most 40 lines, every option named."""
    from analysis.noise.command import build_parser

    monkeypatch.setenv("COLUMNS", "80")
    text = build_parser().format_help()
    assert len(text.splitlines()) <= 40, text
    for option in ("--exp", "--thresholds", "--min-confidence", "--reviewed", "--neighbours", "--top", "--out"):
        assert option in text
    assert "--tta" not in text and "--pooling" not in text
