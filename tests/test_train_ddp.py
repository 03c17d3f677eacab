"""DDP on CPU: two gloo processes train together; rank 0 alone writes the checkpoint."""

from __future__ import annotations

import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from train_helpers import small_config

from snn2loihi.train.checkpoint import load_checkpoint

pytestmark = [pytest.mark.multiprocess, pytest.mark.timeout(600)]


def _worker(rank: int, world: int, port: int, config: dict, out: str) -> None:
    # As under torchrun, the rendezvous store lives outside the ranks (here: in the test
    # process) and every rank is its client, so no rank's exit can pull the store from under
    # another rank's shutdown (that aborted a rank with SIGABRT when rank 0 hosted it).
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        WORLD_SIZE=str(world),
        TORCHELASTIC_USE_AGENT_STORE="True",
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
    store = dist.TCPStore("127.0.0.1", 0, is_master=True, wait_for_workers=False)
    mp.spawn(_worker, args=(2, store.port, cfg, str(tmp_path)), nprocs=2, join=True)
    state = load_checkpoint(tmp_path / "run")
    assert state["epoch"] == 1 and state["metrics"]["snn_acc"] > 0.3, state["metrics"]
    assert not list((tmp_path / "run").glob(".*.tmp"))
