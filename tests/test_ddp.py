"""Multi-device training with DDP, on 2 CPU processes: the samplers' shards, the gathering of the processes'
validation results, and a whole ``train.py --devices 2 --strategy ddp`` run."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import PEOPLE, make_layout, tiny_argv, tiny_config
from torch.utils.data import SequentialSampler

from core.distributed import gather_shards, shard_rows
from datamodules.datamodule import MaskDataModule
from datamodules.sampler import BalancedSampler, ShuffleSampler
from datamodules.shard import ShardSampler

ROOT = Path(__file__).resolve().parent.parent


def interleave(shards: list[list[int]]) -> list[int]:
    return [i for group in zip(*shards, strict=True) for i in group]


@pytest.mark.parametrize("kind", ["balanced", "shuffle"])
def test_train_sampler_shards_are_disjoint_and_together_one_sequence(kind):
    labels = [0] * 30 + [1] * 8 + [2] * 4

    def sampler(rank: int, world: int):
        if kind == "balanced":
            return BalancedSampler(labels, len(labels), 7, rank, world)
        return ShuffleSampler(labels, 7, rank, world)

    for epoch in (0, 3):
        samplers = [sampler(0, 1), sampler(0, 2), sampler(1, 2)]
        for s in samplers:
            s.set_epoch(epoch)
        whole, *shards = (list(s) for s in samplers)
        assert [len(s) for s in shards] == [21, 21]
        # rank r has positions r, r + 2, ... of the one sequence a single process would draw
        assert interleave(shards) == whole
        if kind == "shuffle":  # without replacement: the shards share no image and cover them all
            assert not set(shards[0]) & set(shards[1]) and sorted(whole) == list(range(len(labels)))


def test_validation_shards_cover_every_image_once():
    for n in range(12):
        for world in (1, 2, 3, 4):
            shards = [list(ShardSampler(n, rank, world)) for rank in range(world)]
            assert sorted(i for s in shards for i in s) == list(range(n))
            assert max(map(len, shards)) - min(map(len, shards)) <= 1  # no padding, nearly equal
            for rank, s in enumerate(shards):
                assert s == sorted(s) and len(ShardSampler(n, rank, world)) == len(s)
                assert shard_rows(len(s), rank, world).tolist() == s  # what the gathering assumes
    assert list(ShardSampler(5)) == list(range(5))  # no process group: one process, every row
    local = torch.arange(6.0)[:, None]
    assert gather_shards(local, 0, 1) is local


def test_the_datamodule_shards_training_and_validation_per_process(tmp_path):
    root = make_layout(tmp_path / "data", people=PEOPLE[:9])
    dm = MaskDataModule(tiny_config(root, tmp_path / "cache", "trainer.devices=2"), "mask", 0, progress=False)
    dm.setup("fit")
    assert len(dm.val_frame) == 21  # odd: the two validation shards differ in length
    loaders = []
    for rank in (0, 1):
        dm.trainer = SimpleNamespace(global_rank=rank, world_size=2)
        loaders.append(dm.train_dataloader())
        val = dm.val_dataloader()
        assert isinstance(val.sampler, ShardSampler)  # its rank is read from the process group when iterated
        assert list(ShardSampler(len(dm.val_frame), rank, 2)) == list(range(rank, 21, 2))
    samplers = [loader.sampler for loader in loaders]
    assert all(s.world_size == 2 for s in samplers) and [s.rank for s in samplers] == [0, 1]
    one = MaskDataModule(tiny_config(root, tmp_path / "cache"), "mask", 0, progress=False)
    one.setup("fit")
    one.trainer = SimpleNamespace(global_rank=0, world_size=1)
    assert interleave([list(s) for s in samplers]) == list(one.train_dataloader().sampler)
    assert isinstance(one.val_dataloader().sampler, SequentialSampler)  # one device: as before
    one.trainer = SimpleNamespace(global_rank=1, world_size=2)  # two nodes of one device each: sharded too
    assert isinstance(one.val_dataloader().sampler, ShardSampler)


GATHER = """
import sys
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from core.distributed import gather_rows, gather_shards
from datamodules.shard import ShardSampler

def run(rank, init):
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=2)
    n = 7  # rank 0 gets rows 0, 2, 4, 6 and rank 1 rows 1, 3, 5
    rows = list(ShardSampler(n))
    assert rows == list(range(rank, n, 2)), rows
    values = torch.tensor([[float(r), 10.0 * r] for r in rows])
    full = torch.tensor([[float(r), 10.0 * r] for r in range(n)])
    assert torch.equal(gather_shards(values, rank, 2), full)
    got, got_rows = gather_rows(values[1:], torch.tensor(rows[1:]))  # uneven, and not from row 0
    assert got_rows.tolist() == sorted(rows[1:] + list(range(1 - rank, n, 2))[1:]), got_rows
    evens = full[::2]  # rank 1 has nothing to add
    assert torch.equal(gather_shards(torch.zeros(0, 2) if rank else evens, rank, 2), evens)
    dist.destroy_process_group()

mp.start_processes(run, args=(sys.argv[1],), nprocs=2, start_method="fork")
print("gathered")
"""


def test_gathering_puts_the_processes_rows_back_in_order(tmp_path):
    init = f"file://{tmp_path / 'rendezvous'}"
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(GATHER), init],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0 and "gathered" in proc.stdout, proc.stderr[-3000:]


RANK_VARIABLES = ("LOCAL_RANK", "RANK", "WORLD_SIZE", "NODE_RANK", "GROUP_RANK", "LOCAL_WORLD_SIZE", "MASTER_PORT")


def start_train(argv: list[str], env: dict[str, str] | None = None) -> subprocess.Popen:
    """``python train.py ARGV`` in its own process group, with ``env`` added to a rank-free environment."""
    clean = {k: v for k, v in os.environ.items() if k not in RANK_VARIABLES and not k.startswith("TORCHELASTIC")}
    return subprocess.Popen(
        [sys.executable, str(ROOT / "train.py"), *argv],
        cwd=ROOT,
        env={**clean, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def finish(proc: subprocess.Popen, timeout: int = 300) -> subprocess.CompletedProcess:
    """Wait for a :func:`start_train` process; killed whole (every rank it started) if it hangs."""
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"train.py did not finish in {timeout} s:\n{err[-3000:]}")
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def run_train(argv: list[str], timeout: int = 300) -> subprocess.CompletedProcess:
    """``python train.py ARGV``, killed whole (every rank) if it hangs."""
    return finish(start_train(argv), timeout)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def torchrun_env(node: int, nodes: int, port: int) -> dict[str, str]:
    """What ``torchrun --nnodes NODES --nproc-per-node 1 --node-rank NODE`` sets for its one process."""
    ranks = {"RANK": node, "NODE_RANK": node, "GROUP_RANK": node, "LOCAL_RANK": 0, "LOCAL_WORLD_SIZE": 1}
    where = {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port, "WORLD_SIZE": nodes, "TORCHELASTIC_RUN_ID": "test"}
    return {k: str(v) for k, v in {**ranks, **where}.items()}


def check_oof(out: Path, dm: MaskDataModule) -> pd.DataFrame:
    """The run's oof.csv: every validation image exactly once, in the validation frame's order."""
    oof = pd.read_csv(out / "oof.csv", dtype={"person": str})
    assert len(oof) == len(dm.val_frame)
    assert not oof.duplicated(["person", "image"]).any()
    assert oof[["person", "image"]].values.tolist() == dm.val_frame[["person", "image"]].values.tolist()
    return oof


def test_ddp_on_two_cpu_processes_trains_and_predicts_every_validation_image_once(tmp_path):
    root = make_layout(tmp_path / "data", people=PEOPLE[:9])
    settings = ["model.backbone=test_resnet", "trainer.accelerator=cpu", "trainer.effective_batch=48",
                "trainer.max_epochs=1", "trainer.progress_bar=false"]  # fmt: skip
    argv = [*tiny_argv(root, tmp_path, *settings), "--exp", "ddp", "--task", "mask", "--fold", "0"]
    argv += ["--devices", "2", "--strategy", "ddp"]
    proc = run_train(argv)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-4000:]
    assert "Starting with 2 processes" in log
    # accumulation = ceil(48 / (2 devices x batch 8)) = 3, not the single device's 6
    assert "effective batch 48 = 2 device(s) x batch 8 x accumulation 3" in log
    assert log.count("folds by person") == 1  # the data summary: rank 0 only
    assert log.count("mask fold 0 done") == 1

    out = tmp_path / "runs" / "ddp" / "mask" / "fold0"
    assert {"best.ckpt", "last.ckpt", "config.yaml", "metrics.csv", "oof.csv", "done.json"} <= {
        p.name for p in out.iterdir()
    }
    assert not list(out.glob("*.tmp"))
    assert json.loads((out / "done.json").read_text())["task"] == "mask"
    # every validation image exactly once, in the validation frame's order
    dm = MaskDataModule(tiny_config(root, tmp_path / "cache"), "mask", 0, progress=False)
    dm.setup("fit")
    oof = check_oof(out, dm)
    assert len(oof) == 21
    assert (oof["label"] == dm.val_frame["mask"]).all()
    probs = oof[[f"prob_{k}" for k in range(3)]].to_numpy()
    assert np.abs(probs.sum(1) - 1).max() < 1e-4
    # the validation metrics were computed over the same images: the best (only) epoch's model predicted them
    metrics = pd.read_csv(out / "metrics.csv")
    assert metrics["epoch"].tolist() == [0]
    assert metrics["val/acc"].item() == pytest.approx((probs.argmax(1) == oof["label"]).mean(), abs=1e-6)


def test_two_nodes_of_one_device_each_shard_validation_and_write_every_oof_image_once(tmp_path):
    # torchrun --nnodes 2 --nproc-per-node 1 on two machines: one process per node, each started on its own
    root = make_layout(tmp_path / "data", people=PEOPLE[:9])
    dm = MaskDataModule(tiny_config(root, tmp_path / "cache"), "mask", 0, progress=False)
    dm.setup("fit")  # the shared data prepared beforehand, as a first node would have (the nodes start together)
    settings = ["model.backbone=test_resnet", "trainer.accelerator=cpu", "trainer.effective_batch=16",
                "trainer.max_epochs=1", "trainer.progress_bar=false", "trainer.limit_train_batches=2",
                "trainer.num_nodes=2"]  # fmt: skip
    argv = [*tiny_argv(root, tmp_path, *settings), "--exp", "nodes", "--task", "mask", "--fold", "0"]
    port = free_port()
    nodes = [start_train(argv, torchrun_env(node, 2, port)) for node in (0, 1)]
    try:
        procs = [finish(proc) for proc in nodes]
    finally:  # one node failing leaves the other waiting for it
        for proc in nodes:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
    for node, proc in enumerate(procs):
        assert proc.returncode == 0, f"node {node}:\n{(proc.stdout + proc.stderr)[-4000:]}"
    out = tmp_path / "runs" / "nodes" / "mask" / "fold0"
    assert json.loads((out / "done.json").read_text())["task"] == "mask"
    oof = check_oof(out, dm)
    assert len(oof) == 21 and (oof["label"] == dm.val_frame["mask"]).all()
    # the validation scores were computed over the same images, each once
    probs = oof[[f"prob_{k}" for k in range(3)]].to_numpy()
    metrics = pd.read_csv(out / "metrics.csv")
    assert metrics["val/acc"].item() == pytest.approx((probs.argmax(1) == oof["label"]).mean(), abs=1e-6)
