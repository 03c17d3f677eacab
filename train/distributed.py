"""DDP helpers: ``torchrun`` sets RANK/WORLD_SIZE; rank 0 logs and writes checkpoints."""

from __future__ import annotations

import os

import torch
import torch.distributed as dist

from snn2loihi.devices import torch_device


def init_distributed(device: torch.device) -> tuple[int, int]:
    """Join the process group when launched by torchrun; returns ``(rank, world_size)``.

    NCCL on CUDA, gloo on CPU. Without torchrun's environment: ``(0, 1)``.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return dist.get_rank(), dist.get_world_size()


def is_main(rank: int) -> bool:
    return rank == 0


def all_reduce_sum(values: list[float], device: torch.device) -> list[float]:
    """Sum floats over ranks (identity when not distributed)."""
    if not (dist.is_available() and dist.is_initialized()):
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def cleanup() -> None:
    """Leave the process group together: rank 0 hosts the rendezvous store, so no rank may tear
    down while another still talks to it (a gloo rank then aborts with SIGABRT)."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def local_device(requested: str) -> torch.device:
    """``auto``: this rank's CUDA device when available, else CPU."""
    if requested == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        return torch.device("cpu")
    return torch_device(requested, "train.device")
