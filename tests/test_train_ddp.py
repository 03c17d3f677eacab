"""DDP on CPU: two gloo processes train together; rank 0 alone writes the checkpoint."""

from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.multiprocessing as mp
from train_helpers import small_config

from snn2loihi.train.checkpoint import load_checkpoint

pytestmark = [pytest.mark.multiprocess, pytest.mark.timeout(600)]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, config: dict, out: str) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world)
    )
    torch.set_num_threads(1)
    from snn2loihi.train import distributed
    from snn2loihi.train.trainer import train

    train(config)
    distributed.cleanup()


def test_two_process_gloo_training(tmp_path):
    cfg = small_config(
        tmp_path,
        "model.arch='custom'",
        "model.convs=['8', 's16']",
        "model.dense=[]",
        "train.epochs=2",
        "train.batch_size=64",
    )
    mp.spawn(_worker, args=(2, _free_port(), cfg, str(tmp_path)), nprocs=2, join=True)
    state = load_checkpoint(tmp_path / "run")
    assert state["epoch"] == 1 and state["metrics"]["snn_acc"] > 0.3, state["metrics"]
    assert not list((tmp_path / "run").glob(".*.tmp"))
