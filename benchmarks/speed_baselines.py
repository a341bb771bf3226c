"""The baselines ``benchmarks/speed.py`` compares the project with: the default recipe's model, loss and optimiser
alone on random batches already on the device (``model_only``), and a plain PIL + torchvision DataLoader running
the seed's transforms on the JPEGs (``naive``)."""

from __future__ import annotations

import time

import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from configs.config import Config
from lightning_modules.base import normalize
from lightning_modules.hardware import ready_for_device
from lightning_modules.optim import accumulation, build_optimizer
from lightning_modules.task_module import TaskModule


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def model_only_train(
    cfg: Config, mean, std, bf16: bool, channels_last: bool, warmup: int, steps: int, compile_backend: str | None = None
) -> dict:
    """Images/s of forward + loss + backward (+ MADGRAD every ``accumulate`` batches) on random uint8 batches;
    ``compile_backend``: a ``torch.compile`` backend for the backbone (as ``trainer.compile`` does), or None."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    module = TaskModule("age", cfg.to_dict(), mean, std, class_counts=[1, 1, 1]).to(device)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    net = module.model.to(memory_format=fmt)
    if compile_backend:
        net.compile(backend=compile_backend)  # in place, as train.py compiles the backbone
    optimizer = build_optimizer(net.parameters(), cfg.optim)
    batch = cfg.loader.batch_size
    accumulate = accumulation(cfg.trainer.effective_batch, batch, 1)
    crop = cfg.augment.crop
    images = torch.randint(0, 256, (batch, 3, crop, crop), dtype=torch.uint8, device=device)
    labels = torch.randint(0, 3, (batch,), device=device)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)

    def step(i: int) -> None:
        x = normalize(images, module.pixel_mean, module.pixel_std).contiguous(memory_format=fmt)
        with autocast:
            loss = module.criterion(net(x), labels) / accumulate
        loss.backward()
        if (i + 1) % accumulate == 0:
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

    for i in range(warmup):
        step(i)
    sync()
    start = time.perf_counter()
    for i in range(steps):
        step(i)
    sync()
    seconds = time.perf_counter() - start
    return {"img_per_s": round(steps * batch / seconds, 1), "batch": batch, "accumulate": accumulate}


@torch.inference_mode()
def model_only_inference(cfg: Config, mean, std, batch: int, warmup: int, steps: int) -> dict:
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    module = TaskModule("age", cfg.to_dict(), mean, std).to(device).eval()
    module = ready_for_device(module, device.type == "cuda", compile=False, cuda=device.type == "cuda")
    crop = cfg.augment.crop
    images = torch.randint(0, 256, (batch, 3, crop, crop), dtype=torch.uint8, device=device)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")
    out = []
    for i in range(warmup + steps):
        if i == warmup:
            sync()
            start = time.perf_counter()
        with autocast:
            out.append(module(images).float().softmax(1))
    sync()
    return {"img_per_s": round(steps * batch / (time.perf_counter() - start), 1), "batch": batch}


# --------------------------------------------------------------------------------------- naive pipeline


class NaiveDataset(Dataset):
    """The seed's way: PIL decode and torchvision transforms on every image, every epoch."""

    def __init__(self, files: list[str], cfg: Config, mean, std):
        from torchvision import transforms as T

        a = cfg.augment
        self.files = files
        self.transform = T.Compose(
            [
                T.Resize((a.resize_height, a.resize_width)),
                T.CenterCrop(a.crop),
                T.RandomChoice([T.RandomHorizontalFlip(1.0), T.RandomVerticalFlip(1.0), T.RandomRotation(30)]),
                T.RandomChoice(
                    [
                        T.ColorJitter(brightness=0.2, contrast=0.2),
                        T.ColorJitter(saturation=0.2, hue=0.05),
                        T.ColorJitter(0.2, 0.2, 0.2, 0.05),
                        T.Grayscale(3),
                    ]
                ),
                T.ToTensor(),
                T.Normalize(mean, std),
                T.RandomErasing(p=0.5),
            ]
        )

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int):
        with Image.open(self.files[i]) as img:
            return self.transform(img.convert("RGB")), 0


def naive_loader(files, cfg, mean, std, workers: int) -> DataLoader:
    return DataLoader(
        NaiveDataset(files, cfg, mean, std),
        batch_size=cfg.loader.batch_size,
        shuffle=True,
        num_workers=workers,
        pin_memory=torch.cuda.is_available(),
        persistent_workers=False,
        prefetch_factor=4,
    )


def loader_rate(loader: DataLoader, warmup: int, batches: int, consume=None) -> float:
    """Images/s over ``batches`` batches after ``warmup`` (workers started, queues filled)."""
    it = iter(loader)
    for _ in range(warmup):
        images, _ = next(it)
        if consume:
            consume(images)
    sync()
    start = time.perf_counter()
    n = 0
    for _ in range(batches):
        images, _ = next(it)
        if consume:
            consume(images)
        n += len(images)
    sync()
    del it
    return round(n / (time.perf_counter() - start), 1)


def naive_e2e(
    files, cfg, mean, std, workers: int, warmup: int, batches: int, bf16: bool = False, channels_last: bool = False
) -> dict:
    """The seed's way end to end: the PIL/torchvision loader feeding the model (fp32 NCHW as the seed, unless
    ``bf16`` or ``channels_last`` say otherwise)."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    module = TaskModule("age", cfg.to_dict(), mean, std, class_counts=[1, 1, 1]).to(device)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    net = module.model.to(memory_format=fmt)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)
    optimizer = build_optimizer(net.parameters(), cfg.optim)
    accumulate = accumulation(cfg.trainer.effective_batch, cfg.loader.batch_size, 1)
    labels = torch.randint(0, 3, (cfg.loader.batch_size,), device=device)
    state = {"i": 0}

    def consume(images: torch.Tensor) -> None:
        images = images.to(device, non_blocking=True).contiguous(memory_format=fmt)
        with autocast:
            loss = module.criterion(net(images), labels[: len(images)]) / accumulate
        loss.backward()
        state["i"] += 1
        if state["i"] % accumulate == 0:
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

    rate = loader_rate(naive_loader(files, cfg, mean, std, workers), warmup, batches, consume)
    return {"img_per_s": rate, "workers": workers, "batch": cfg.loader.batch_size}
