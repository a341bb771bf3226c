"""The problem's vocabulary, defined once: the tasks, their label columns and classes, the competition's age
groups, and the 18-class codec ``class = mask * 6 + gender * 3 + age_group`` (labels and probabilities)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

TASK_NAMES = ("mask", "gender", "age")  # the three heads, in the order of the 18-class codec
MULTIHEAD = "multihead"  # --task multihead: one backbone, the three heads trained together
CLASS18 = "class18"  # the optional fourth multihead head, over the 18 classes

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
COMPETITION_AGE_CUTS = (30, 60)  # the competition's age groups: under 30, 30 to 59, 60 and over
AGE_RANGE = (18, 60)  # every labelled age lies in it (no one is over 60: the old group is the people aged 60)
# The kinds of label error: a person's gender or age wrong, a person's incorrect_mask and normal photos swapped,
# one photo that is not what its file says (the noise finder ranks them; a synthetic set plants them)
ERROR_KINDS = ("gender", "age", "mask_swap", "outlier")


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
HEAD_SIZES = tuple(TASKS[t].num_classes for t in TASK_NAMES)  # (3, 2, 3)
NUM_CLASSES = int(np.prod(HEAD_SIZES))  # 18


def side_by_side(sizes: dict[str, int]) -> dict[str, range]:
    """Where each head's columns sit when the heads' outputs are laid side by side in ``sizes``' order."""
    out, start = {}, 0
    for name, n in sizes.items():
        out[name] = range(start, start + n)
        start += n
    return out


def class_name(c: int) -> str:
    """``"8 Im2"``: class 8 is mask Incorrect, male, age group 2."""
    mask, gender, age = split_class18(c)
    return f"{c} {'WIN'[mask]}{'mf'[gender]}{age}"


def age_group(age, cuts: tuple[int, int] | list[int] = COMPETITION_AGE_CUTS):
    """0 below ``cuts[0]``, 1 up to ``cuts[1]`` (exclusive), 2 from ``cuts[1]`` on; works on arrays."""
    young, old = cuts
    return (np.asarray(age) >= young).astype(int) + (np.asarray(age) >= old).astype(int)


def _array(x):
    """Tensors stay tensors (on their device); anything else becomes a numpy array."""
    return x if hasattr(x, "device") else np.asarray(x)


def class18(mask, gender, age_grp):
    """The competition's class index from the three heads' labels (arrays or tensors)."""
    _, n_gender, n_age = HEAD_SIZES
    return _array(mask) * (n_gender * n_age) + _array(gender) * n_age + _array(age_grp)


def split_class18(label):
    """Inverse of :func:`class18`: ``(mask, gender, age_group)``."""
    _, n_gender, n_age = HEAD_SIZES
    label = _array(label)
    return label // (n_gender * n_age), (label // n_age) % n_gender, label % n_age


def joint_probs(mask, gender, age):
    """The 18-class probabilities ``p[class18(m, g, a)] = p_mask[m] p_gender[g] p_age[a]`` from the heads'
    ``(images, classes)`` probabilities (arrays or tensors): the heads taken as independent."""
    joint = mask[:, :, None, None] * gender[:, None, :, None] * age[:, None, None, :]
    return joint.reshape(len(mask), NUM_CLASSES)


CLASS18_NAMES = tuple(class_name(c) for c in range(NUM_CLASSES))
MULTIHEAD_TASK = Task(MULTIHEAD, "label", CLASS18_NAMES, "label_competition")  # scored on the 18 classes


def with_competition_labels(images):
    """``images`` with the labels at the competition's age cuts beside the model's: ``age_group_competition``
    and ``label_competition`` (from the raw ``age``), which every score at the competition's cuts uses."""
    out = images.copy()
    out["age_group_competition"] = age_group(out["age"], COMPETITION_AGE_CUTS)
    out["label_competition"] = class18(out["mask"], out["gender"], out["age_group_competition"])
    return out
