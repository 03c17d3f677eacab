"""ATA: adaptive threshold adjustment against "noisy spikes".

A noisy spike is a neuron whose ANN activation is 0 (pre-activation <= 0) but whose SNN
counterpart fired. Per spiking layer and training iteration, the fraction of noisy positions is
measured over the batch (``granularity="layer"``) or per output channel (``"channel"``); where it
exceeds ``tolerance`` the thresholds rise by ``step``. Thresholds never fall.
"""

from __future__ import annotations

import torch
import torch.distributed as dist

from snn2loihi.train.model import SpikingNet

GRANULARITIES = ("layer", "channel")


@torch.no_grad()
def noisy_spike_rates(
    pre: torch.Tensor, counts: torch.Tensor, granularity: str = "layer"
) -> torch.Tensor:
    """Noisy-spike fraction: a 0-d tensor (layer) or (C,) per channel.

    ``pre``: BN output (B, C, ...) of the ANN branch; ``counts``: spike counts, same shape.
    Under ``torch.distributed`` the counts are summed over all ranks, so every rank agrees.
    """
    # counted in int64 (exact, as a float64 sum of 0/1 is); count_nonzero reads the mask as it
    # is, where sum() first widens it to int64
    noisy = (pre <= 0) & (counts > 0)
    if granularity == "layer":
        num = torch.count_nonzero(noisy).double()
        den = torch.tensor(float(noisy.numel()), dtype=torch.float64)
    elif granularity == "channel":
        dims = [d for d in range(noisy.ndim) if d != 1]
        num = torch.count_nonzero(noisy, dim=dims).double()
        den = torch.full_like(num, noisy.numel() / noisy.shape[1])
    else:
        raise ValueError(f"unknown ATA granularity {granularity!r}; expected {GRANULARITIES}")
    if dist.is_available() and dist.is_initialized():
        both = torch.stack([num.reshape(-1), den.to(num.device).reshape(-1)])
        dist.all_reduce(both)
        num, den = both[0].reshape(num.shape), both[1].reshape(num.shape)
    return num / den.to(num.device)


class NoisyRateMeter:
    """Training's ATA measure as the ANN pass goes: a ``layer_hook`` for
    :meth:`~snn2loihi.train.model.SpikingNet.ann_forward` that keeps each spiking layer's
    :func:`noisy_spike_rates` (``rates``, in layer order) and nothing of its tensors."""

    def __init__(self, granularity: str = "layer"):
        self.granularity = granularity
        self.rates: list[torch.Tensor] = []

    @torch.no_grad()
    def __call__(self, k: int, a: torch.Tensor, counts: torch.Tensor | None) -> None:
        if counts is None:
            raise ValueError(f"layer {k}: ATA needs the SNN branch's spike counts")
        self.rates.append(noisy_spike_rates(a.detach().float(), counts, self.granularity))


@torch.no_grad()
def raise_thresholds(
    model: SpikingNet, rates: list[torch.Tensor], *, tolerance: float = 0.1, step: float = 0.01
) -> list[float]:
    """Raise by ``step`` the thresholds of the layers (or channels) whose noisy-spike rate in
    ``rates`` (one :func:`noisy_spike_rates` per spiking layer, as :class:`NoisyRateMeter`
    takes them) exceeds ``tolerance``; returns each spiking layer's mean noisy-spike rate."""
    means = []
    for layer, r in zip(model.spiking_layers, rates, strict=True):
        raise_mask = (r > tolerance).to(layer.thresholds.dtype).to(layer.thresholds.device)
        layer.thresholds += step * raise_mask
        means.append(float(r.mean()))
    return means


def adjust_thresholds(
    model: SpikingNet,
    pre: list[torch.Tensor],
    counts: list[torch.Tensor],
    *,
    tolerance: float = 0.1,
    step: float = 0.01,
    granularity: str = "layer",
) -> list[float]:
    """Raise the thresholds of layers (or channels) whose noisy-spike rate exceeds ``tolerance``
    (:func:`noisy_spike_rates` of each layer's ``pre`` and ``counts``, then
    :func:`raise_thresholds`).

    Returns each spiking layer's mean noisy-spike rate.
    """
    meter = NoisyRateMeter(granularity)
    for k, (a, n) in enumerate(zip(pre, counts, strict=True)):
        meter(k, a, n)
    return raise_thresholds(model, meter.rates, tolerance=tolerance, step=step)
