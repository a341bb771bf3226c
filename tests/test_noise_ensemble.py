"""Several experiments as one ensemble in the noise finder: the averaging, its checks, and seeds whose
misreadings differ."""

from __future__ import annotations

import numpy as np
import pandas as pd
import yaml
from noise_helpers import flagged, flip_some, read_ranking, run_main, seed_gender, simulate_oof, write_experiment

from analysis import noise
from rundir.layout import prob_columns


def test_an_ensemble_averages_each_photo(synthetic, tmp_path, caplog):
    """--exp A --exp B (or A,B): each photo's probabilities are the mean of the experiments', ranked as one
    experiment's would be, written beside the first experiment's; a task only one has is read from it."""
    runs = tmp_path / "runs"
    a, b = simulate_oof(synthetic, seed=0), simulate_oof(synthetic, seed=1)
    b = {t: f.sort_values(["person", "stem"]) for t, f in b.items()}  # row order does not matter
    write_experiment(runs, "a", a, synthetic)
    write_experiment(runs, "b", {t: b[t] for t in ("mask", "gender")}, synthetic)
    rc, out, err = run_main("--exp", "a", "--exp", "b", "--runs-dir", str(runs), "--quiet")
    assert rc == 0, err
    assert "ensemble of 2 experiments: a, b" in out
    out_dir = runs / "a" / "noise+b"
    ranking = read_ranking(out_dir / "suspects.csv")
    assert "averaged with 'b'" in (out_dir / noise.DRAFT_NAME).read_text()
    # the same ranking as one experiment holding the averaged probabilities
    mean = {}
    for task in ("mask", "gender"):
        cols = prob_columns(a[task].filter(like="prob_").shape[1])
        other = b[task].set_index(["person", "stem"]).loc[pd.MultiIndex.from_frame(a[task][["person", "stem"]])]
        mean[task] = a[task].assign(**{c: (a[task][c].to_numpy() + other[c].to_numpy()) / 2 for c in cols})
    write_experiment(runs, "mean", mean | {"age": a["age"]}, synthetic)
    rc, _, err = run_main("--exp", "mean", "--runs-dir", str(runs), "--quiet")
    assert rc == 0, err
    by_unit = ["kind", "person", "image"]
    ours = ranking.sort_values(by_unit, ignore_index=True)
    theirs = read_ranking(runs / "mean" / "noise" / "suspects.csv").sort_values(by_unit, ignore_index=True)
    pd.testing.assert_frame_equal(ours.drop(columns="reason"), theirs.drop(columns="reason"), atol=2e-4)
    assert "age: predicted by a only" in caplog.text
    # a comma list is the same ensemble
    rc, _, err = run_main("--exp", "a,b", "--runs-dir", str(runs), "--quiet", "--out", str(tmp_path / "comma"))
    assert rc == 0, err
    pd.testing.assert_frame_equal(ranking, read_ranking(tmp_path / "comma" / "suspects.csv"))


def test_an_ensemble_of_seeds_finds_what_each_seed_misses(tmp_path):
    """Four seeds, each misreading a different tenth of the people: alone, each flags the flips among
    many false alarms; averaged, they find the flips at a precision none of them reaches."""
    rng = np.random.default_rng(7)
    n, flips = 1500, 15
    true, label, flipped = flip_some(n, flips, rng)
    planted = {f"p{i:04d}" for i in flipped}
    names = [f"s{k}" for k in range(4)]
    for k, name in enumerate(names):
        write_experiment(tmp_path, name, {"gender": seed_gender(true, label, seed=k)}, tmp_path / "no-data")

    def scores(exps: list[str]) -> tuple[float, float]:
        ensemble = noise.read_ensemble([tmp_path / e for e in exps])
        assert ensemble.missing == ["mask", "age"] and ensemble.members == {"gender": exps}
        marked = set(flagged(noise.gender_suspects(ensemble.frames["gender"], mode=noise.ADAPTIVE))["person"])
        return len(marked & planted) / len(planted), len(marked & planted) / max(len(marked), 1)

    alone = [scores([name]) for name in names]
    recall, precision = scores(names)
    assert recall >= 0.8 and precision >= 0.5, (recall, precision)
    for _, p in alone:
        assert p < 0.5 and precision > p + 0.25, (alone, precision)


def test_an_ensemble_reads_age_at_its_age_models_cuts(synthetic, tmp_path):
    """The age groups are those of the experiments that predict age, even when the first one does not."""
    runs = tmp_path / "runs"
    frames = simulate_oof(synthetic)
    write_experiment(runs, "no-age", {t: frames[t] for t in ("mask", "gender")}, synthetic)
    write_experiment(runs, "cut58", frames, synthetic)
    for config in (runs / "cut58" / "age").glob("fold*/config.yaml"):
        saved = yaml.safe_load(config.read_text())
        saved["data"]["age_cuts"] = [30, 58]
        config.write_text(yaml.safe_dump(saved))
    assert noise.read_ensemble([runs / "no-age", runs / "cut58"]).age_cuts == (30, 58)
    rc, _, err = run_main("--exp", "no-age", "--exp", "cut58", "--runs-dir", str(runs), "--quiet")
    assert rc == 0, err
    ages = read_ranking(runs / "no-age" / "noise+cut58" / "suspects.csv").query("kind == 'age'")
    assert ages["suggested"].str.contains(r"old \(58\+\)").any(), ages["suggested"].unique()
    assert not ages["suggested"].str.contains(r"\(60\+\)").any()


def test_an_ensemble_needs_the_same_photos_and_labels(synthetic, tmp_path):
    runs = tmp_path / "runs"
    frames = simulate_oof(synthetic)
    write_experiment(runs, "a", frames, synthetic)
    relabelled = {t: f.copy() for t, f in frames.items()}
    relabelled["gender"].loc[relabelled["gender"]["person"] == relabelled["gender"]["person"].iloc[0], "label"] ^= 1
    write_experiment(runs, "relabelled", relabelled, synthetic)
    rc, _, err = run_main("--exp", "a", "--exp", "relabelled", "--runs-dir", str(runs), "--quiet")
    assert rc == 2 and "experiments a and relabelled give 7 photos different gender labels" in err
    assert "data.relabel" in err and not (runs / "a" / "noise+relabelled").exists()

    fewer = {t: f[f["person"] != f["person"].iloc[0]] for t, f in frames.items()}
    write_experiment(runs, "fewer", fewer, synthetic)
    rc, _, err = run_main("--exp", "a,fewer", "--runs-dir", str(runs), "--quiet")
    assert rc == 2 and "out-of-fold mask predictions for different photos: 7 only in a" in err

    write_experiment(runs, "cuts", frames, synthetic)
    for config in (runs / "cuts" / "age").glob("fold*/config.yaml"):
        saved = yaml.safe_load(config.read_text())
        saved["data"]["age_cuts"] = [30, 58]
        config.write_text(yaml.safe_dump(saved))
    rc, _, err = run_main("--exp", "a", "--exp", "cuts", "--runs-dir", str(runs), "--quiet")
    assert rc == 2 and "different data.age_cuts ([30, 60] in a, [30, 58] in cuts)" in err

    rc, _, err = run_main("--exp", "a", "--exp", "a", "--runs-dir", str(runs), "--quiet")
    assert rc == 2 and "names an experiment twice" in err
    rc, _, err = run_main("--exp", ",", "--runs-dir", str(runs), "--quiet")
    assert rc == 2 and "names no experiment" in err
