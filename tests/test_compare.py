"""The paired comparison of experiments (``python -m analysis compare``): scores equal to score_frames', the
verdicts, the pairing of the bootstrap, the files written, replicates, and the refusals of unlike data."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import f1_score

from analysis import compare, compare_report
from analysis.__main__ import main as analysis_main
from analysis.scoring import read_oof, score_frames
from core.errors import DataError
from core.tasks import HEAD_SIZES, MASK_FILES, MULTIHEAD, NUM_CLASSES, TASK_NAMES, class18
from rundir.layout import COMPARE, COMPARE_CSV, COMPARE_PNG, OOF_COLUMNS, prob_columns, run_dir, write_done

ROOT = Path(__file__).resolve().parent.parent
PEOPLE, FOLDS = 120, 3


def truth(people: int = PEOPLE, seed: int = 0) -> pd.DataFrame:
    """One row per image: 7 photos per person, their mask state, the person's gender, age group and fold."""
    rng = np.random.default_rng(seed)
    persons = pd.DataFrame(
        {
            "person": [f"{i:06d}_p" for i in range(people)],
            "gender": rng.integers(2, size=people),
            "age_group": rng.choice(3, size=people, p=[0.5, 0.35, 0.15]),
            "age": rng.integers(18, 70, size=people),
            "fold": rng.permutation(np.arange(people) % FOLDS),
        }
    )
    photos = pd.DataFrame({"stem": list(MASK_FILES), "mask": list(MASK_FILES.values())})
    images = persons.merge(photos, how="cross")
    images["image"] = images["stem"] + ".jpg"
    return images


def predict(images: pd.DataFrame, wrong: float, seed: int) -> dict[str, np.ndarray]:
    """Each task's probabilities: the true class on top, except for a share ``wrong`` of images per task."""
    rng = np.random.default_rng(seed)
    out = {}
    for task, column, k in zip(TASK_NAMES, ("mask", "gender", "age_group"), HEAD_SIZES, strict=True):
        top = images[column].to_numpy().copy()
        flip = rng.random(len(top)) < wrong
        top[flip] = (top[flip] + rng.integers(1, k, size=flip.sum())) % k
        p = rng.dirichlet(np.ones(k), size=len(top)) * 0.4
        p[np.arange(len(top)), top] += 0.6
        out[task] = p / p.sum(1, keepdims=True)
    return out


def frames_of(images: pd.DataFrame, probs: dict[str, np.ndarray]) -> dict[str, pd.DataFrame]:
    """The OOF rows each task's model would write (oof.csv's schema)."""
    frames = {}
    for task, column, k in zip(TASK_NAMES, ("mask", "gender", "age_group"), HEAD_SIZES, strict=True):
        f = images[["person", "image", "stem", "fold"]].copy()
        f["label"] = images[column].to_numpy()
        f["age"] = images["age"].to_numpy()
        f[prob_columns(k)] = probs[task]
        frames[task] = f
    return frames


def write_exp(runs: Path, exp: str, images: pd.DataFrame, probs: dict[str, np.ndarray], multihead: bool = False):
    """An experiment's oof.csv files in the real layout: one model per task, or one multihead model."""
    frames = frames_of(images, probs)
    if multihead:
        merged = images[["person", "image", "stem", "fold"]].copy()
        merged["label"] = class18(*(frames[t]["label"].to_numpy() for t in TASK_NAMES))
        merged["age"] = images["age"].to_numpy()
        merged[prob_columns(sum(HEAD_SIZES))] = np.hstack([probs[t] for t in TASK_NAMES])
        frames = {MULTIHEAD: merged}
    for task, f in frames.items():
        for k, part in f.groupby("fold"):
            out = run_dir(runs, exp, task, k)
            out.mkdir(parents=True)
            write_done(out, {})  # a finished run
            part[[*OOF_COLUMNS, *[c for c in part.columns if c not in OOF_COLUMNS]]].to_csv(
                out / "oof.csv", index=False
            )
    return runs / exp


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    """base (and its replicate base2), same (base's predictions again, as a multihead model), better (base
    corrected on the age of half its people) and worse (base with more errors)."""
    runs = tmp_path_factory.mktemp("compare") / "runs"
    images = truth()
    base = predict(images, 0.2, seed=1)
    write_exp(runs, "base", images, base)
    write_exp(runs, "base2", images, predict(images, 0.2, seed=2))
    write_exp(runs, "same", images, base, multihead=True)
    better = {t: p.copy() for t, p in base.items()}
    fixed = images["person"].isin(images["person"].unique()[::2]).to_numpy()
    better["age"][fixed] = np.eye(3)[images.loc[fixed, "age_group"]] * 0.9 + 0.1 / 3
    write_exp(runs, "better", images, better)
    write_exp(runs, "worse", images, predict(images, 0.45, seed=3))
    write_exp(runs, "worse2", images, predict(images, 0.45, seed=4))
    return runs


def rows(result: dict, experiment: str) -> pd.DataFrame:
    table = result["table"]
    return table[table["experiment"] == experiment].set_index("metric")


def test_identical_experiments_differ_by_nothing_and_score_like_score_frames(runs, tmp_path):
    result = compare.compare_experiments(runs, ["base", "same"], tmp_path / "out", boot=200, plot=False)
    same = rows(result, "same")
    assert (same["difference"] == 0).all() and (same["low"] == 0).all() and (same["high"] == 0).all()
    assert (same["verdict"] == compare.SAME).all()
    assert (rows(result, "base")["verdict"] == compare.REFERENCE).all()
    # the values are score_frames' top-level scores (the models' own labels)
    report = score_frames(read_oof(runs / "base"), (30, 60))
    base = rows(result, "base")["value"]
    assert base["f1"] == pytest.approx(report["f1"], abs=1e-12)
    for task in TASK_NAMES:
        assert base[f"task_f1/{task}"] == pytest.approx(report["task_f1"][task], abs=5e-5)
    assert base[compare.METRICS[compare.HEADLINE :]].round(4).tolist() == report["class_f1"]
    assert result["images"] == PEOPLE * len(MASK_FILES) and result["people"] == PEOPLE
    assert result["folds"] == [str(k) for k in range(FOLDS)]


def test_a_clearly_better_experiment_is_named(runs, tmp_path):
    result = compare.compare_experiments(runs, ["base", "better"], tmp_path / "a", boot=500, plot=False)
    better = rows(result, "better")
    for metric in ("f1", "task_f1/age"):
        assert better.loc[metric, "difference"] > 0 and better.loc[metric, "low"] > 0, better.loc[metric]
        assert better.loc[metric, "verdict"] == "better better"
    # mask and gender predictions are the same: no difference there
    assert better.loc["task_f1/mask", "verdict"] == compare.SAME
    assert better.loc["task_f1/mask", "difference"] == 0
    # the other way round, the reference is named
    result = compare.compare_experiments(runs, ["better", "base"], tmp_path / "b", boot=500, plot=False)
    base = rows(result, "base")
    assert base.loc["f1", "high"] < 0 and base.loc["f1", "verdict"] == "better better"
    result = compare.compare_experiments(runs, ["worse", "base"], tmp_path / "c", boot=500, plot=False)
    assert rows(result, "base").loc["f1", "verdict"] == "base better"


def test_scores_from_counts_are_sklearns():
    images = truth(40)
    probs = predict(images, 0.4, seed=5)
    merged = compare.merge_tasks(frames_of(images, probs))
    people = merged.index.get_level_values("person").unique()
    scores = compare.scores_from_counts(compare.person_counts(merged, people).sum(0))
    y, p = merged["label"].to_numpy(), merged["pred"].to_numpy()
    labels = list(range(NUM_CLASSES))
    assert scores[0] == pytest.approx(f1_score(y, p, labels=labels, average="macro", zero_division=0))
    per_class = f1_score(y, p, labels=labels, average=None, zero_division=0)
    np.testing.assert_allclose(scores[compare.HEADLINE :], per_class)
    for i, task in enumerate(TASK_NAMES, 1):
        expected = f1_score(merged[task], merged[f"pred_{task}"], average="macro", zero_division=0)
        assert scores[i] == pytest.approx(expected)


def test_the_bootstrap_is_paired_and_seeded():
    draws = list(compare.resample_people(50, 1200, seed=3))
    assert [len(w) for w in draws] == [500, 500, 200] and all((w.sum(1) == 50).all() for w in draws)
    again = np.concatenate(list(compare.resample_people(50, 1200, seed=3)))
    np.testing.assert_array_equal(np.concatenate(draws), again)
    # two runs that differ on a few images: the paired interval of the difference is far narrower than an
    # unpaired one (each run resampled apart), which mostly measures how the people's difficulty varies
    images = truth(300, seed=1)
    a = compare.merge_tasks(frames_of(images, predict(images, 0.3, seed=6)))
    b = a.copy()
    b.iloc[::97, b.columns.get_loc("pred")] = b["label"].iloc[::97]
    people = a.index.get_level_values("person").unique()
    counts = [compare.person_counts(x, people) for x in (a, b)]
    paired = compare.bootstrap_scores(counts, 400, seed=0)
    assert paired.shape == (400, 2, len(compare.METRICS))
    unpaired = (
        compare.bootstrap_scores(counts[1:], 400, seed=1)[:, 0] - compare.bootstrap_scores(counts[:1], 400, 0)[:, 0]
    )
    width = {
        name: np.subtract(*np.quantile(d[:, 0], [0.975, 0.025]))
        for name, d in (("paired", paired[:, 1] - paired[:, 0]), ("unpaired", unpaired))
    }
    assert width["paired"] < width["unpaired"] / 3, width
    # the same run twice resamples identically
    twice = compare.bootstrap_scores([counts[0], counts[0]], 100, seed=0)
    np.testing.assert_array_equal(twice[:, 0], twice[:, 1])


def test_the_bootstrap_is_fast():
    people = 2700
    rng = np.random.default_rng(0)
    counts = [rng.poisson(0.3, size=(people, 2 * compare.CLASSES)).astype(float) for _ in range(4)]
    start = time.perf_counter()
    scores = compare.bootstrap_scores(counts, 2000, seed=0)
    assert scores.shape == (2000, 4, len(compare.METRICS))
    assert time.perf_counter() - start < 15, "2000 resamples of 2700 people must take seconds"


def test_files_are_written_with_the_documented_columns(runs):
    result = compare.compare_experiments(runs, ["base", "better", "worse"], boot=200, seed=1)
    out = runs / COMPARE / "base_vs_better_vs_worse"
    assert result["csv"] == out / COMPARE_CSV and result["png"] == out / COMPARE_PNG
    table = pd.read_csv(out / COMPARE_CSV)
    assert (
        list(table.columns)
        == compare.COLUMNS
        == [
            "metric",
            "experiment",
            "value",
            "difference",
            "low",
            "high",
            "verdict",
        ]
    )
    assert len(table) == len(compare.METRICS) * 3
    assert list(table["metric"].unique()) == compare.METRICS
    assert table.loc[table["experiment"] == "base", "difference"].isna().all()
    others = table[table["experiment"] != "base"]
    assert others[["difference", "low", "high"]].notna().all().all()
    assert set(others["verdict"]) <= {compare.SAME, "better better", "base better"}
    assert (out / COMPARE_PNG).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and (out / COMPARE_PNG).stat().st_size > 5000
    # seeded: a rerun gives the same intervals
    again = compare.compare_experiments(runs, ["base", "better", "worse"], runs / "again", 200, 1, plot=False)
    pd.testing.assert_frame_equal(result["table"], again["table"])
    text = compare_report.format_report(result)
    lines = text.splitlines()
    assert lines[2].split()[:4] == ["metric", "base", "better", "worse"]
    assert next(i for i, line in enumerate(lines) if line.startswith("class_f1/0 ")) > lines.index("") + 5
    assert str(out / COMPARE_CSV) in text and str(out / COMPARE_PNG) in text


def test_replicates_are_averaged(runs, tmp_path):
    result = compare.compare_experiments(runs, ["base,base2", "worse,worse2"], tmp_path, boot=300, plot=False)
    assert list(result["groups"]) == ["base+base2", "worse+worse2"]
    single = {
        e: rows(compare.compare_experiments(runs, ["base", e], tmp_path / e, boot=10, plot=False), e)["value"]
        for e in ("base2", "worse", "worse2")
    }
    base = rows(compare.compare_experiments(runs, ["base", "worse"], tmp_path / "w", boot=10, plot=False), "base")
    group = rows(result, "worse+worse2")
    np.testing.assert_allclose(group["value"], (single["worse"] + single["worse2"]) / 2)
    np.testing.assert_allclose(rows(result, "base+base2")["value"], (base["value"] + single["base2"]) / 2)
    assert group.loc["f1", "verdict"] == "base+base2 better"
    assert compare.default_out(runs, list(result["groups"])) == runs / COMPARE / "base+base2_vs_worse+worse2"
    assert "base+base2 = mean of base, base2" in compare_report.format_report(result)


def _refused(runs: Path, groups: list[str], capsys, *words: str) -> None:
    with pytest.raises(DataError) as caught:
        compare.compare_experiments(runs, groups, runs / "refused", boot=10)
    for word in words:
        assert word in str(caught.value), str(caught.value)
    argv = [a for g in groups for a in ("--exp", g)]
    assert compare.main([*argv, "--runs-dir", str(runs), "--boot", "10"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err and words[0] in err


def test_unlike_data_is_refused(runs, tmp_path, capsys):
    images = truth()
    probs = predict(images, 0.2, seed=1)
    moved = images.copy()
    moved.loc[moved["person"] == "000007_p", "fold"] = (moved.loc[moved["person"] == "000007_p", "fold"] + 1) % FOLDS
    write_exp(runs, "refolded", moved, probs)
    _refused(runs, ["base", "refolded"], capsys, "different folds", "000007_p", "base", "refolded", "data.fold_seed")
    relabelled = images.copy()
    relabelled.loc[relabelled["person"] == "000003_p", "gender"] ^= 1
    write_exp(runs, "relabelled", relabelled, probs)
    _refused(runs, ["base", "relabelled"], capsys, "label 7 images differently", "gender 7", "000003_p", "relabelled")
    fewer = images[images["person"] != "000005_p"]
    write_exp(runs, "fewer", fewer, {t: p[fewer.index] for t, p in probs.items()})
    _refused(runs, ["base", "fewer"], capsys, "different images", "7 only in base", "000005_p")
    # within a group of replicates too
    _refused(runs, ["base,refolded", "worse"], capsys, "different folds", "refolded")
    _refused(runs, ["base", "missing"], capsys, "experiment missing", str(runs / "missing"))
    _refused(runs, ["base"], capsys, "at least two experiments")
    _refused(runs, ["base", "base"], capsys, "twice")


def test_the_command_line(runs):
    """One run through ``python -m analysis compare``, and the dispatcher's usage."""
    done = subprocess.run(
        [sys.executable, "-m", "analysis", "compare", "--exp", "base", "--exp", "better", "--runs-dir", str(runs)]
        + ["--boot", "200", "--folds", "0,1,2", "--out", str(runs / "cli")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "reference: base" in done.stdout and "better better" in done.stdout
    assert str(runs / "cli" / COMPARE_CSV) in done.stdout and (runs / "cli" / COMPARE_PNG).is_file()


def test_the_dispatcher_prints_usage(capsys):
    assert analysis_main([]) == 2
    assert "usage: python -m analysis <command>" in capsys.readouterr().err
    assert analysis_main(["nonsense"]) == 2
    assert "unknown command 'nonsense'" in capsys.readouterr().err
    assert analysis_main(["--help"]) == 0
    assert "compare" in capsys.readouterr().out
