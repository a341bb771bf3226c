"""Tasks, label columns and the 18-class formula ``class = mask * 6 + gender * 3 + age_group``."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MASK_FILES = {
    "mask1": 0,
    "mask2": 0,
    "mask3": 0,
    "mask4": 0,
    "mask5": 0,
    "incorrect_mask": 1,
    "normal": 2,
}
GENDERS = {"male": 0, "female": 1}


@dataclass(frozen=True)
class Task:
    """A task is a name, a label column and its class names; ``competition_column`` holds the label at the
    competition's age cuts (the same column for mask and gender)."""

    name: str
    column: str
    classes: tuple[str, ...]
    competition_column: str

    @property
    def num_classes(self) -> int:
        return len(self.classes)


TASKS = {
    "mask": Task("mask", "mask", ("wear", "incorrect", "not_wear"), "mask"),
    "gender": Task("gender", "gender", ("male", "female"), "gender"),
    "age": Task("age", "age_group", ("young", "middle", "old"), "age_group_competition"),
}
NUM_CLASSES = 18
CLASS18_NAMES = tuple(f"{c} {'WIN'[c // 6]}{'mf'[(c // 3) % 2]}{c % 3}" for c in range(NUM_CLASSES))  # "8 Im2"
MULTIHEAD_TASK = Task("multihead", "label", CLASS18_NAMES, "label_competition")  # scored on the 18 classes


COMPETITION_AGE_CUTS = (30, 60)  # the competition's age groups: under 30, 30 to 59, 60 and over


def age_group(age, cuts: tuple[int, int] | list[int] = COMPETITION_AGE_CUTS):
    """0 below ``cuts[0]``, 1 up to ``cuts[1]`` (exclusive), 2 from ``cuts[1]`` on; works on arrays."""
    young, old = cuts
    return (np.asarray(age) >= young).astype(int) + (np.asarray(age) >= old).astype(int)


def class18(mask, gender, age_grp):
    """The competition's class index from the three heads' labels."""
    return np.asarray(mask) * 6 + np.asarray(gender) * 3 + np.asarray(age_grp)


def split_class18(label):
    """Inverse of :func:`class18`: ``(mask, gender, age_group)``."""
    label = np.asarray(label)
    return label // 6, (label // 3) % 2, label % 3


def with_competition_labels(images):
    """``images`` with the labels at the competition's age cuts beside the model's: ``age_group_competition``
    and ``label_competition`` (from the raw ``age``), which every score at the competition's cuts uses."""
    out = images.copy()
    out["age_group_competition"] = age_group(out["age"], COMPETITION_AGE_CUTS)
    out["label_competition"] = class18(out["mask"], out["gender"], out["age_group_competition"])
    return out
