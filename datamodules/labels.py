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
    """A task is a name, a label column and its class names."""

    name: str
    column: str
    classes: tuple[str, ...]

    @property
    def num_classes(self) -> int:
        return len(self.classes)


TASKS = {
    "mask": Task("mask", "mask", ("wear", "incorrect", "not_wear")),
    "gender": Task("gender", "gender", ("male", "female")),
    "age": Task("age", "age_group", ("young", "middle", "old")),
}
NUM_CLASSES = 18
CLASS18_NAMES = tuple(f"{c} {'WIN'[c // 6]}{'mf'[(c // 3) % 2]}{c % 3}" for c in range(NUM_CLASSES))  # "8 Im2"
MULTIHEAD_TASK = Task("multihead", "label", CLASS18_NAMES)  # --task multihead: scored on the 18 classes


def age_group(age, cuts: tuple[int, int] | list[int] = (30, 60)):
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
