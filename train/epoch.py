"""One training epoch: this rank's batches of the seeded shuffle, a step each, summed over ranks."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch.utils.data.distributed import DistributedSampler
from tqdm import tqdm

from snn2loihi.progress import on_terminal
from snn2loihi.train import distributed as D
from snn2loihi.train.data import ImageData
from snn2loihi.train.model import SpikingNet
from snn2loihi.train.step import StepParams, train_step


@dataclass
class EpochStats:
    """Mean training loss and ANN-logit accuracy over all ranks' samples; the last step's
    noisy-spike rates per spiking layer (empty without ATA)."""

    loss: float
    acc: float
    noisy: list[float]


def epoch_batches(sampler: DistributedSampler, batch_size: int) -> list[torch.Tensor]:
    """Index batches of this rank for the sampler's epoch; a trailing batch of one is dropped
    (BatchNorm cannot train on it)."""
    idx = torch.tensor(list(iter(sampler)), dtype=torch.int64)
    batches = list(torch.split(idx, batch_size))
    if batches and len(batches[-1]) < 2:
        batches.pop()
    return batches


def run_epoch(
    model: SpikingNet,
    net: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    data: ImageData,
    batches: list[torch.Tensor],
    params: StepParams,
    *,
    device: torch.device,
    transform: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    desc: str = "epoch",
    progress: bool = False,
    after_step: Callable[[], object] | None = None,
) -> EpochStats:
    """Train ``model`` (through ``net``, itself or its DDP wrapper) on ``data[batch]`` for each
    index batch; ``transform(x, idx)`` augments each uint8 batch (B, C, H, W) of the images
    ``idx`` where ``data`` lives (the CPU, or the training device with ``data.on_device``); ``after_step`` runs after every
    optimizer step (a per-step learning-rate schedule)."""
    model.train()
    loss_sum = correct = seen = 0.0
    noisy: list[float] = []
    bar = tqdm(batches, desc=desc, leave=False, disable=not (progress and on_terminal()))
    for batch in bar:
        idx = batch.to(data.x.device)
        x = data.x[idx]
        if transform is not None:
            x = transform(x, batch)
        x, y = x.to(device), data.y[idx].to(device)
        res = train_step(model, net, optimizer, x, y, params)
        if after_step is not None:
            after_step()
        if res.noisy is not None:
            noisy = res.noisy
        loss_sum += res.loss * len(y)
        correct += res.correct
        seen += len(y)
        bar.set_postfix(loss=f"{loss_sum / seen:.3f}", acc=f"{correct / seen:.3f}")
    loss_sum, correct, seen = D.all_reduce_sum([loss_sum, correct, seen], device)
    return EpochStats(loss_sum / max(seen, 1), correct / max(seen, 1), noisy)
