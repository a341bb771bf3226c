"""Optimizers by name, epoch schedules and the accumulation that reaches the effective batch."""

from __future__ import annotations

import madgrad
import pytest
import torch

from configs.config import OptimConfig
from lightning_modules.optim import accumulation, build_optimizer, build_scheduler


def linear_params() -> list[torch.nn.Parameter]:
    return list(torch.nn.Linear(3, 1).parameters())


def test_madgrad_fits_a_tiny_linear_regression():
    torch.manual_seed(0)
    x = torch.randn(64, 3)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5]]) + 0.3
    model = torch.nn.Linear(3, 1)
    optimizer = build_optimizer(model.parameters(), OptimConfig(name="madgrad", lr=1e-2))
    losses = []
    for _ in range(20):
        optimizer.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


@pytest.mark.parametrize(
    ("name", "cls"),
    [("madgrad", madgrad.MADGRAD), ("adamw", torch.optim.AdamW), ("sgd", torch.optim.SGD)],
)
def test_each_name_builds_its_optimizer_with_the_configured_settings(name, cls):
    cfg = OptimConfig(name=name, lr=3e-3, weight_decay=1e-4)
    optimizer = build_optimizer(linear_params(), cfg)
    assert type(optimizer) is cls
    group = optimizer.param_groups[0]
    assert group["lr"] == 3e-3 and group["weight_decay"] == 1e-4


def test_sgd_uses_nesterov_only_with_momentum():
    assert build_optimizer(linear_params(), OptimConfig(name="sgd", momentum=0.9)).defaults["nesterov"]
    assert not build_optimizer(linear_params(), OptimConfig(name="sgd", momentum=0.0)).defaults["nesterov"]


def test_unknown_optimizer_names_the_key():
    with pytest.raises(ValueError, match="optim.name"):
        build_optimizer(linear_params(), OptimConfig(name="lion"))


def epoch_lrs(cfg: OptimConfig, epochs: int) -> list[float]:
    optimizer = torch.optim.SGD(linear_params(), lr=cfg.lr)
    scheduler = build_scheduler(optimizer, cfg, max_epochs=epochs)["scheduler"]
    lrs = []
    for _ in range(epochs):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return lrs


def test_no_scheduler_gives_none():
    optimizer = torch.optim.SGD(linear_params(), lr=0.1)
    assert build_scheduler(optimizer, OptimConfig(scheduler="none"), max_epochs=5) is None


def test_cosine_lowers_the_lr_every_epoch():
    lrs = epoch_lrs(OptimConfig(scheduler="cosine", lr=0.1), epochs=5)
    assert lrs[0] == pytest.approx(0.1)
    assert all(a > b for a, b in zip(lrs, lrs[1:], strict=False))


def test_step_halves_the_lr_at_step_size():
    lrs = epoch_lrs(OptimConfig(scheduler="step", lr=0.1, step_size=3, gamma=0.5), epochs=7)
    assert lrs == pytest.approx([0.1, 0.1, 0.1, 0.05, 0.05, 0.05, 0.025])


def test_epoch_schedulers_step_per_epoch():
    optimizer = torch.optim.SGD(linear_params(), lr=0.1)
    for kind in ("cosine", "step", "plateau"):
        assert build_scheduler(optimizer, OptimConfig(scheduler=kind), max_epochs=5)["interval"] == "epoch"


def test_plateau_watches_val_f1_going_up():
    optimizer = torch.optim.SGD(linear_params(), lr=0.1)
    config = build_scheduler(optimizer, OptimConfig(scheduler="plateau", gamma=0.5), max_epochs=5)
    scheduler = config["scheduler"]
    assert isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)
    assert config["monitor"] == "val/f1" and scheduler.mode == "max" and scheduler.factor == 0.5
    for f1 in (0.5, 0.6, 0.7):  # improving F1 keeps the lr
        scheduler.step(f1)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.1)
    for _ in range(5):  # a stalled F1 cuts it
        scheduler.step(0.7)
    assert optimizer.param_groups[0]["lr"] < 0.1


@pytest.mark.parametrize(
    ("effective", "batch", "devices", "expected"),
    [(256, 64, 1, 4), (256, 100, 1, 3), (256, 64, 2, 2), (256, 512, 1, 1), (64, 64, 1, 1), (256, 8, 1, 32)]
    + [(256, 120, 1, 2), (256, 96, 1, 3), (256, 80, 2, 2)],  # not a multiple: the nearest (240, 288, 320)
)
def test_accumulation_comes_nearest_the_effective_batch(effective, batch, devices, expected):
    assert accumulation(effective, batch, devices) == expected
