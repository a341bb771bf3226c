"""predict.py --group-people: the evaluation images grouped into people by appearance, and each group's gender
and age probabilities averaged; the clustering and the averaging on arrays, the features read with the
probabilities, and end to end on a tiny trained experiment against the synthetic truth's people."""

from __future__ import annotations

import json
import time

import numpy as np
import pandas as pd
import torch
from conftest import quick_cfg
from scipy.sparse.csgraph import connected_components
from sklearn.neighbors import kneighbors_graph

import predict
from analysis.calibration import calibrated_answer
from core.tasks import TASK_NAMES, TASKS, split_class18
from datamodules.decode import read_rgb
from datamodules.layout import read_eval
from datamodules.transforms import geometry_only
from inference.grouping import (
    average_within_groups,
    cluster_people,
    combine_embeddings,
    connect,
    group_heads,
    group_sizes,
    grouping_scores,
)
from inference.predictor import predict_images
from lightning_modules.task_module import TaskModule

MASK_STATES = [0, 0, 0, 0, 0, 1, 2]  # a person's 7 photos: 5 masked, 1 incorrect, 1 not wearing one


def people(n: int, dim: int = 64, noise: float = 0.05, mask_shift: float = 0.0, seed: int = 0):
    """``n`` people x 7 photos, shuffled: each photo its person's point plus noise (plus, with ``mask_shift``,
    a direction its mask state shares across people); the person and the mask state of each photo."""
    rng = np.random.default_rng(seed)
    person = np.repeat(np.arange(n), 7)
    mask = np.tile(MASK_STATES, n)
    x = rng.normal(size=(n, dim))[person] + noise * rng.normal(size=(7 * n, dim))
    x += mask_shift * rng.normal(size=(3, dim))[mask]
    order = rng.permutation(7 * n)
    return x[order], person[order], mask[order]


def test_well_separated_people_are_grouped_exactly():
    x, person, _ = people(30)
    groups = cluster_people(x)
    assert grouping_scores(groups, person) == {"purity": 1.0, "people_whole": 1.0, "pure_groups": 1.0}
    sizes = group_sizes(groups)
    assert sizes["groups"] == 30 and sizes["size_min"] == sizes["size_max"] == 7
    assert groups[0] == 0 and list(dict.fromkeys(groups)) == list(range(30))  # numbered by first image


def test_centring_per_mask_state_removes_what_the_mask_states_share():
    # the mask state moves every person's photo the same way, as far as the people lie apart
    x, person, mask = people(40, mask_shift=1.0, noise=0.3)
    plain = grouping_scores(cluster_people(combine_embeddings([x])), person)
    centred = grouping_scores(cluster_people(combine_embeddings([x], by=mask)), person)
    assert centred["purity"] == 1.0 and centred["people_whole"] == 1.0
    assert plain["people_whole"] < 0.5


def test_models_are_joined_with_equal_weight_whatever_their_width():
    x, person, _ = people(20, dim=32, noise=0.2)
    wide = np.random.default_rng(1).normal(size=(len(x), 1024)) * 50  # another model, uninformative and wide
    embedding = combine_embeddings([x, wide], dim=16)
    assert embedding.shape == (140, 16) and np.allclose(np.linalg.norm(embedding, axis=1), 1, atol=1e-5)
    assert grouping_scores(cluster_people(combine_embeddings([x, x[:, ::-1]])), person)["purity"] == 1.0


def test_a_disconnected_neighbour_graph_is_connected():
    x, _, _ = people(12, noise=0.01)
    graph = kneighbors_graph(x, 3, include_self=False)  # 3 neighbours: each person's photos are an island
    assert connected_components(graph, directed=False)[0] > 1
    assert connected_components(connect(x, graph), directed=False)[0] == 1


def test_few_images_make_one_group():
    assert cluster_people(np.random.default_rng(0).normal(size=(5, 8))).tolist() == [0] * 5


def test_averaging_within_groups_changes_gender_and_age_not_mask():
    rng = np.random.default_rng(2)
    groups = np.array([0, 0, 1, 1, 1, 2])
    probs = {t: rng.dirichlet(np.ones(TASKS[t].num_classes), 6) for t in TASK_NAMES}
    grouped = group_heads(probs, groups)
    assert np.array_equal(grouped["mask"], probs["mask"])
    for t in ("gender", "age"):
        assert not np.allclose(grouped[t], probs[t])
        assert np.allclose(grouped[t][0], probs[t][:2].mean(0)) and np.allclose(grouped[t][1], grouped[t][0])
        assert np.allclose(grouped[t][2:5], probs[t][2:5].mean(0)) and np.allclose(grouped[t][5], probs[t][5])
        assert np.allclose(grouped[t].sum(1), 1)
    masks = split_class18(calibrated_answer(grouped))[0]
    assert np.array_equal(masks, probs["mask"].argmax(1))
    assert np.allclose(average_within_groups(probs["age"], groups * 10), grouped["age"])  # any ids


def test_grouping_scores_by_hand():
    groups = np.array([0, 0, 0, 1, 1, 2])
    person = np.array(["a", "a", "b", "b", "b", "c"])
    scores = grouping_scores(groups, person)
    assert scores["purity"] == round(5 / 6, 4)  # one b among the a's
    assert scores["people_whole"] == round(2 / 3, 4)  # a and c whole, b split
    assert scores["pure_groups"] == round(2 / 3, 4)


def test_clustering_12600_images_takes_seconds():
    x = np.random.default_rng(0).normal(size=(12600, 96)).astype(np.float32)
    start = time.perf_counter()
    groups = cluster_people(x)
    elapsed = time.perf_counter() - start
    assert elapsed < 60, f"{elapsed:.1f} s"  # about 4 s on a busy 2-core CPU
    assert group_sizes(groups)["groups"] == 1800


def test_features_come_with_the_probabilities_from_one_read(synthetic, tmp_path):
    cfg = quick_cfg(synthetic, tmp_path, "loader.num_workers=0", "loader.batch_size=8")
    model = TaskModule("gender", cfg.to_dict(), [0.5, 0.5, 0.5], [0.25, 0.25, 0.25]).eval()
    files = read_eval(synthetic)["file"].tolist()[:20]
    plain = predict_images([model], files, [False, True], cfg, None)
    probs, features = predict_images([model, model], files, [False, True], cfg, None, [True, False])
    assert all(np.array_equal(a, b) for a, b in zip(plain[0], probs[0], strict=True))  # unchanged
    assert features[1] is None and features[0].shape == (20, model.model.num_features)
    assert np.allclose(np.linalg.norm(features[0].astype(np.float32), axis=1), 1, atol=1e-2)
    image = torch.from_numpy(geometry_only(model.cfg.augment)(image=read_rgb(files[0]))["image"]).permute(2, 0, 1)
    with torch.no_grad():
        expected = torch.nn.functional.normalize(model.features(image[None]).float(), dim=1).numpy()[0]
    assert np.allclose(features[0][0], expected, atol=2e-3)


# ---------------------------------------------------------------------------------------- end to end


def _args(runs, out, *extra):
    return [
        "--exp", "mhx", "--set", f"runs_dir={runs}", "--set", "loader.num_workers=0", "--tta", "none",
        "--out", str(out), *extra,
    ]  # fmt: skip


def _heads(probs: pd.DataFrame) -> dict[str, np.ndarray]:
    return {t: probs[[f"{t}_{k}" for k in range(TASKS[t].num_classes)]].to_numpy() for t in TASK_NAMES}


def test_predict_group_people_writes_groups_and_scores_them(multihead_experiment, synthetic, tmp_path, capsys):
    out = tmp_path / "sub.csv"
    assert predict.main(_args(multihead_experiment, out, "--group-people")) == 0
    printed = capsys.readouterr().out
    assert "purity" in printed and "ungrouped" in printed
    report = json.loads(out.with_name("sub_report.json").read_text())
    grouping = report["grouping"]
    assert grouping["images"] == 8 * 7 and grouping["groups"] == 8  # the synthetic set's 8 eval people
    assert 0 < grouping["purity"] <= 1 and 0 <= grouping["people_whole"] <= 1
    assert {"eval", "eval_ungrouped"} <= set(report) and "calibration" not in report
    probs = pd.read_csv(out.with_name("sub_probs.csv"))
    assert list(probs.columns)[-2:] == ["ans", "group"] and probs["group"].nunique() == 8
    truth = pd.read_csv(synthetic / "truth" / "eval_answers.csv").set_index("ImageID").loc[probs["ImageID"]]
    assert grouping["purity"] == grouping_scores(probs["group"], truth["person"])["purity"]
    heads = _heads(probs)
    answer = pd.read_csv(out)["ans"].to_numpy()
    assert np.array_equal(answer, calibrated_answer(group_heads(heads, probs["group"].to_numpy())))
    assert np.array_equal(split_class18(answer)[0], heads["mask"].argmax(1))  # the mask stays per photo
    for _, rows in probs.assign(ans=answer).groupby("group"):  # one gender and age group per person found
        _, gender, age = split_class18(rows["ans"].to_numpy())
        assert len(set(gender)) == 1 and len(set(age)) == 1


def test_group_people_with_calibration_scores_each_option_alone(multihead_experiment, tmp_path):
    out = tmp_path / "both.csv"
    assert predict.main(_args(multihead_experiment, out, "--group-people", "--calibrate")) == 0
    report = json.loads(out.with_name("both_report.json").read_text())
    assert {"eval", "eval_ungrouped", "eval_uncalibrated", "eval_plain", "grouping", "calibration"} <= set(report)


def test_group_people_is_for_the_submission_only(multihead_experiment, tmp_path, capsys):
    assert predict.main(_args(multihead_experiment, tmp_path / "x.csv", "--oof", "--group-people")) == 2
    assert "leave out --oof" in capsys.readouterr().err


def test_the_default_submission_is_unchanged(multihead_experiment, tmp_path):
    plain, grouped = tmp_path / "plain.csv", tmp_path / "grouped.csv"
    assert predict.main(_args(multihead_experiment, plain)) == 0
    assert predict.main(_args(multihead_experiment, grouped, "--group-people")) == 0
    before, after = pd.read_csv(plain.with_name("plain_probs.csv")), pd.read_csv(grouped.with_name("grouped_probs.csv"))
    assert "group" not in before.columns
    columns = [c for c in before.columns if c != "ans"]
    pd.testing.assert_frame_equal(before[columns], after[columns])  # the probabilities are the same
    report = json.loads(plain.with_name("plain_report.json").read_text())
    assert set(report) == {"submission", "images", "eval"}
