"""What the noise finder writes: the draft corrections file (through apply_relabels; what it leaves out and
why; an edited draft never overwritten) and the W&B table."""

from __future__ import annotations

import sys
import types

import pandas as pd
import yaml
from noise_helpers import run_main, weak_gender, write_experiment

from analysis import noise
from datamodules.layout import read_train
from datamodules.relabel import apply_relabels


def test_draft_round_trips_through_apply_relabels(layout, tmp_path):
    rows = [
        ("000002_male_Asian_25", "", "gender", "gender", "male", "female", 0.99, 0.9, 0.9, True, False, "r"),
        ("000003_female_Asian_45", "", "age", "age", "45 (middle)", "young (0-29)", 0.97, 0.9, 0.7, True, False, "r"),
        ("000005_female_Asian_60", "", "age", "age", "unknown", "middle (30-59)", 0.95, 0.9, 0.5, True, False, "r"),
        (
            "003397_female_Asian_19",
            "incorrect_mask.jpg;normal.png",
            "mask_swap",
            "mask",
            "x",
            "y",
            0.99,
            0.9,
            0.9,
            True,
            False,
            "r",
        ),
        (
            "001498-1_male_Asian_22",
            "mask3.jpeg",
            "outlier",
            "all",
            "a",
            "b",
            0.93,
            0.9,
            0.3,
            True,
            False,
            'odd "photo": yes',
        ),
        (
            "000004_male_Asian_33",
            "normal.png",
            "outlier",
            "mask",
            "not_wear",
            "incorrect, male",
            0.92,
            0.9,
            0.2,
            True,
            False,
            "r",
        ),
        (
            "000001_female_Asian_45",
            "",
            "gender",
            "gender",
            "female",
            "male",
            0.6,
            0.9,
            -0.3,
            False,
            False,
            "not flagged",
        ),
    ]
    suspects = pd.DataFrame(rows, columns=noise.SUSPECT_COLUMNS)
    text = noise.draft_corrections(suspects, "e1", (30, 60), ["competition"], "runs/e1/noise/draft.yaml")
    assert text.startswith("# Draft corrections") and "the 6 units it flagged" in text
    assert "data.relabel=[competition, runs/e1/noise/draft.yaml]" in text
    data = yaml.safe_load(text)
    assert data["gender"] == {"000002_male_Asian_25": "female"}  # the unflagged person is not in the draft
    assert data["age"] == {"000003_female_Asian_45": 29}  # the unknown age is left commented out
    assert data["swap_incorrect_normal"] == ["003397_female_Asian_19"]
    assert data["exclude_images"] == ["001498-1_male_Asian_22/mask3", "000004_male_Asian_33/normal"]
    assert data["reviewed"] == {"gender": [], "age": [], "mask_swap": [], "outlier": []}  # to fill in
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

    empty = noise.draft_corrections(suspects[~suspects["flag"]], "e1", (30, 60))
    empty_path = tmp_path / "empty.yaml"
    empty_path.write_text(empty)
    assert noise.check_draft(empty_path, images).empty


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
    row = ("a", "", "gender", "gender", "male", "female", 0.99, 0.9, 0.9, True, False, "r")
    suspects = pd.DataFrame([row], columns=noise.SUSPECT_COLUMNS)
    noise.log_wandb(cfg, "offline", suspects, {}, None, {"counts": {"gender": 1}})
    table = logged["noise/suspects"]
    assert table.columns == ["rank", "photos", *noise.SUSPECT_COLUMNS]
    assert table.data == [(1, None, *row)]
    assert logged["noise/gender"] == 1 and logged["finished"]
    assert logged["init"]["group"] == "e2-noise" and logged["init"]["mode"] == "offline"


def test_an_edited_draft_is_never_overwritten(tmp_path):
    """Rerunning the finder rewrites the draft it wrote, but one the user has edited stays as it is: the new
    draft goes beside it (corrections-draft-2.yaml), said in one line; that one is rewritten while unedited."""
    f, _ = weak_gender(n=200, flips=4)
    write_experiment(tmp_path / "runs", "e", {"gender": f}, tmp_path / "no-data")

    def rerun() -> str:
        rc, said, err = run_main("--exp", "e", "--runs-dir", str(tmp_path / "runs"), "--quiet")
        assert rc == 0, err
        return said

    out = tmp_path / "runs" / "e" / "noise"
    draft, beside = out / noise.DRAFT_NAME, out / "corrections-draft-2.yaml"
    rerun()
    rerun()
    written = draft.read_text()
    assert "REVIEW BEFORE USE" in written and "was edited" not in rerun() and not beside.exists()
    edited = written.replace("REVIEW BEFORE USE", "REVIEWED: kept two")
    draft.write_text(edited)
    said = rerun()
    assert draft.read_text() == edited  # the user's edits survive
    assert f"{draft} was edited since the finder wrote it: left as it is, the new draft is beside it" in said
    assert f"draft corrections: {beside}" in said and f"data.relabel=[{beside}]" in beside.read_text()
    rerun()  # the new draft, unedited, is rewritten in its place; the edited one still stands
    assert draft.read_text() == edited and not (out / "corrections-draft-3.yaml").exists()
