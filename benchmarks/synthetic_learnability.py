"""Is the synthetic set learnable, and does leaking people across the split inflate the score?

A small 4-layer CNN with three heads (mask, gender, age) trained from scratch on 2,000 synthetic people at
48x64 for 6 epochs, validated on 400 held-out people (``by person``) or on 20% of the images drawn at
random (``--leak``: the same people in train and validation). Prints accuracy and macro F1 per task.

    python benchmarks/synthetic_learnability.py 6 [--leak] [--data DIR]
"""

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn as nn
from PIL import Image

from core.tasks import COMPETITION_AGE_CUTS, GENDERS, HEAD_SIZES, MASK_FILES, age_group
from rundir.layout import HEAD_COLUMNS
from synthetic import generate

HEADS = {task: (cols.start, cols.stop) for task, cols in HEAD_COLUMNS.items()}  # the heads side by side


def load(root: Path):
    df = pd.read_csv(root / "train/train.csv", dtype={"id": str})
    images, labels, person = [], [], []
    for i, r in df.iterrows():
        for p in sorted((root / "train/images" / r.path).iterdir()):
            if p.name.startswith("."):
                continue
            images.append(np.asarray(Image.open(p).convert("RGB")))
            person.append(i)
            labels.append((MASK_FILES[p.stem], GENDERS[r.gender], int(age_group(r.age, COMPETITION_AGE_CUTS))))
    x = torch.tensor(np.stack(images)).permute(0, 3, 1, 2).float() / 255
    return x, torch.tensor(labels), np.array(person), len(df)


def macro_f1(pred, true, k):
    return np.mean(
        [2 * ((pred == c) & (true == c)).sum() / max(1, (pred == c).sum() + (true == c).sum()) for c in range(k)]
    )


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("epochs", type=int)
    ap.add_argument("--leak", action="store_true")
    ap.add_argument("--data", type=Path, default=Path("/tmp/learnability"))
    args = ap.parse_args()
    torch.set_num_threads(2)
    if not (args.data / "train/train.csv").exists():
        generate(args.data, people=2000, eval_people=0, size=(48, 64), seed=3, workers=2, progress=False)
    x, y, person, n_people = load(args.data)
    rng = np.random.default_rng(0)
    val_people = set(rng.permutation(n_people)[: n_people // 5])
    if args.leak:
        idx = rng.permutation(len(x))
        va, tr = idx[: len(x) // 5], idx[len(x) // 5 :]
    else:
        va = np.array([i for i in range(len(x)) if person[i] in val_people])
        tr = np.array([i for i in range(len(x)) if person[i] not in val_people])
    torch.manual_seed(0)
    layers, c_in = [], 3
    for c_out in (32, 64, 128):
        layers += [nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU(), nn.MaxPool2d(2)]
        c_in = c_out
    layers += [nn.Conv2d(128, 128, 3, padding=1), nn.BatchNorm2d(128), nn.ReLU(), nn.AdaptiveAvgPool2d(1)]
    net = nn.Sequential(*layers, nn.Flatten(), nn.Linear(128, sum(HEAD_SIZES)))
    opt = torch.optim.AdamW(net.parameters(), 2e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 3e-3, total_steps=args.epochs * ((len(tr) + 127) // 128))
    start = time.time()
    for epoch in range(args.epochs):
        net.train()
        for b in torch.randperm(len(tr)).split(128):
            ib = tr[b.numpy()]
            xb = torch.where(torch.rand(len(ib), 1, 1, 1) < 0.5, x[ib].flip(3), x[ib])
            out = net(xb)
            loss = sum(nn.functional.cross_entropy(out[:, s:e], y[ib][:, t]) for t, (s, e) in enumerate(HEADS.values()))
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        print(f"epoch {epoch} {time.time() - start:.0f}s", flush=True)
    net.eval()
    with torch.no_grad():
        out = torch.cat([net(x[va[i : i + 512]]) for i in range(0, len(va), 512)])
    for t, (name, (s, e)) in enumerate(HEADS.items()):
        pred, true = out[:, s:e].argmax(1).numpy(), y[va, t].numpy()
        print(f"{name} acc {(pred == true).mean():.3f}  macroF1 {macro_f1(pred, true, e - s):.3f}", flush=True)


if __name__ == "__main__":
    main()
