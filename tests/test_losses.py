"""Losses: known values on hand-made logits, class counts that follow the task, bf16 autocast."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from configs.config import LossConfig
from lightning_modules.losses import F1Loss, balanced_weights, build_loss, gaussian_targets


def confident(target: torch.Tensor, num_classes: int, scale: float = 20.0) -> torch.Tensor:
    """Logits that put almost all probability on ``target``."""
    return scale * F.one_hot(target, num_classes).float()


def random_batch(num_classes: int, n: int = 12, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, num_classes, generator=g), torch.arange(n) % num_classes


# ---------------------------------------------------------------- F1


@pytest.mark.parametrize("num_classes", [2, 3])
def test_f1_perfect_predictions_give_zero_loss(num_classes):
    target = torch.arange(2 * num_classes) % num_classes
    loss = F1Loss(num_classes)(confident(target, num_classes), target)
    assert loss.item() == pytest.approx(0.0, abs=1e-4)


@pytest.mark.parametrize("num_classes", [2, 3])
def test_f1_wrong_predictions_give_loss_one(num_classes):
    target = torch.arange(2 * num_classes) % num_classes
    wrong = (target + 1) % num_classes
    loss = F1Loss(num_classes)(confident(wrong, num_classes), target)
    assert loss.item() == pytest.approx(1.0, abs=1e-4)


def test_f1_matches_hand_computed_value():
    probs = torch.tensor([[0.8, 0.2], [0.4, 0.6]])
    target = torch.tensor([0, 1])
    # class 0: tp .8, fp .4, fn .2 -> 1.6 / 2.2; class 1: tp .6, fp .2, fn .4 -> 1.2 / 1.8
    expected = 1 - (1.6 / 2.2 + 1.2 / 1.8) / 2
    assert F1Loss(2)(probs.log(), target).item() == pytest.approx(expected, abs=1e-5)


def test_f1_rejects_logits_with_another_class_count():
    logits, target = random_batch(3)
    with pytest.raises(ValueError, match="built for 2 classes"):
        F1Loss(2)(logits, target)


def test_f1_rejects_targets_outside_its_classes():
    logits = torch.zeros(3, 2)
    with pytest.raises(ValueError, match="targets"):
        F1Loss(2)(logits, torch.tensor([0, 1, 2]))


@pytest.mark.parametrize(("task", "num_classes"), [("gender", 2), ("mask", 3), ("age", 3), ("merged", 18)])
def test_built_f1_losses_follow_the_heads_class_count(task, num_classes):
    loss_fn = build_loss(LossConfig(kind="ce_f1"), num_classes, task)
    target = torch.arange(num_classes)
    assert loss_fn(confident(target, num_classes), target).item() < 1e-3
    with pytest.raises(ValueError, match=f"built for {num_classes} classes"):
        loss_fn(torch.zeros(num_classes, num_classes + 1), target)


# ---------------------------------------------------------------- CE + F1 mix, focal, smoothing


def test_mix_is_weighted_sum_of_ce_and_f1():
    logits, target = random_batch(3)
    mixed = build_loss(LossConfig(kind="ce_f1", f1_weight=0.85), 3, "mask")(logits, target)
    expected = 0.15 * F.cross_entropy(logits, target) + 0.85 * F1Loss(3)(logits, target)
    assert mixed.item() == pytest.approx(expected.item(), rel=1e-6)


def test_mix_without_f1_is_cross_entropy():
    logits, target = random_batch(3)
    mixed = build_loss(LossConfig(kind="ce_f1", f1_weight=0.0), 3, "mask")(logits, target)
    assert mixed.item() == pytest.approx(F.cross_entropy(logits, target).item(), rel=1e-6)


def test_focal_without_focusing_is_cross_entropy():
    logits, target = random_batch(3)
    focal = build_loss(LossConfig(kind="focal", focal_gamma=0.0), 3, "mask")(logits, target)
    assert focal.item() == pytest.approx(F.cross_entropy(logits, target).item(), rel=1e-6)


def test_focal_shrinks_the_loss_on_easy_examples():
    target = torch.tensor([0, 1, 2])
    logits = confident(target, 3, scale=3.0)
    focal = build_loss(LossConfig(kind="focal", focal_gamma=2.0), 3, "mask")(logits, target)
    ce = F.cross_entropy(logits, target)
    assert focal.item() < 0.1 * ce.item()


def test_label_smoothing_matches_torch():
    logits, target = random_batch(3)
    loss = build_loss(LossConfig(kind="label_smoothing", smoothing=0.1), 3, "mask")(logits, target)
    assert loss.item() == pytest.approx(F.cross_entropy(logits, target, label_smoothing=0.1).item(), rel=1e-6)


def test_unknown_kind_names_the_key():
    with pytest.raises(ValueError, match="loss.kind"):
        build_loss(LossConfig(kind="hinge"), 3, "mask")


# ---------------------------------------------------------------- Gaussian age smoothing


def test_gaussian_targets_are_ordinal_distributions():
    q = gaussian_targets(torch.tensor([0, 1, 2]), 3, sigma=0.5)
    assert torch.allclose(q.sum(dim=1), torch.ones(3))
    assert q.argmax(dim=1).tolist() == [0, 1, 2]
    assert q[1, 0].item() == pytest.approx(q[1, 2].item())
    assert q[0, 2] < q[0, 1]
    assert q[2, 0] < q[2, 1]


def test_gaussian_loss_is_soft_cross_entropy():
    logits, target = random_batch(3)
    loss = build_loss(LossConfig(kind="gaussian", gaussian_sigma=0.5), 3, "age")(logits, target)
    expected = -(gaussian_targets(target, 3, 0.5) * logits.log_softmax(dim=1)).sum(dim=1).mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)


def test_gaussian_loss_only_for_age():
    with pytest.raises(ValueError, match="age"):
        build_loss(LossConfig(kind="gaussian"), 2, "gender")


# ---------------------------------------------------------------- class weights


def test_balanced_weights_values():
    assert balanced_weights([30, 10], 2).tolist() == pytest.approx([40 / 60, 40 / 20])


@pytest.mark.parametrize("kind", ["ce", "ce_f1", "focal", "label_smoothing", "gaussian"])
def test_balanced_weights_make_minority_mistakes_cost_more(kind):
    counts = [80, 15, 5]
    target = torch.tensor([0, 2])  # a majority example predicted right, a minority one predicted wrong
    logits = torch.tensor([[2.0, 0.0, 0.0], [2.0, 0.0, 0.0]])
    plain = build_loss(LossConfig(kind=kind), 3, "age")(logits, target)
    weighted = build_loss(LossConfig(kind=kind, class_weights="balanced"), 3, "age", counts)(logits, target)
    assert weighted.item() > plain.item()


def test_balanced_weights_need_class_counts():
    with pytest.raises(ValueError, match="class_counts"):
        build_loss(LossConfig(kind="ce", class_weights="balanced"), 3, "mask")


def test_balanced_weights_need_one_count_per_class():
    with pytest.raises(ValueError, match="3 classes"):
        build_loss(LossConfig(kind="ce", class_weights="balanced"), 3, "mask", [10, 20])


# ---------------------------------------------------------------- mixed precision


@pytest.mark.parametrize("kind", ["ce", "f1", "ce_f1", "focal", "label_smoothing", "gaussian"])
@pytest.mark.parametrize("class_weights", ["none", "balanced"])
def test_losses_backpropagate_under_bf16_autocast(kind, class_weights):
    torch.manual_seed(0)
    head = torch.nn.Linear(8, 3)
    x, target = torch.randn(16, 8), torch.arange(16) % 3
    loss_fn = build_loss(LossConfig(kind=kind, class_weights=class_weights), 3, "age", [50, 30, 20])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = head(x)
        assert logits.dtype == torch.bfloat16
        loss = loss_fn(logits, target)
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    loss.backward()
    assert torch.isfinite(head.weight.grad).all() and head.weight.grad.abs().sum() > 0
