"""BPTT baseline: the same network unrolled over T steps with a surrogate spike gradient.

Per layer, the synapse runs once over all (sample, step) pairs and BatchNorm normalizes the
per-step currents; the IF (``leak`` = 1) or LIF neuron then loops over the steps with hard reset
to zero. The same model evaluates on the integer SNN with ``step_divisor = 1`` (full bias every
step, the image at every step).
"""

from __future__ import annotations

import math

import torch

from snn2loihi.train.model import SpikingNet


class AtanSpike(torch.autograd.Function):
    """Heaviside spike ``x > 0`` with the arctan surrogate ``alpha / (2 (1 + (pi alpha x / 2)^2))``."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, alpha: float) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.alpha = alpha
        return (x > 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (x,) = ctx.saved_tensors
        a = ctx.alpha
        return grad * a / (2 * (1 + (math.pi / 2 * a * x) ** 2)), None


def bptt_forward(
    model: SpikingNet, x: torch.Tensor, *, leak: float = 1.0, alpha: float = 2.0
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Unrolled multi-step forward on raw pixels ``x`` (B, C, H, W) float.

    Returns ``(logits (B, classes) = mean readout current over T, spike counts per layer)``.
    """
    b, steps = x.shape[0], model.steps
    counts: list[torch.Tensor] = []
    s = None  # (B*T, ...) spikes of the previous layer
    for k, layer in enumerate(model.layers):
        if k == 0:
            inp = x.flatten(1) if model.flatten_index == 0 else x
            z = model.layer_synapse(k, inp)
            z = z.unsqueeze(1).expand(b, steps, *z.shape[1:]).reshape(b * steps, *z.shape[1:])
        else:
            inp = s.flatten(1) if k >= model.flatten_index else s
            z = model.layer_synapse(k, inp)
        if not layer.spiking:
            return z.reshape(b, steps, -1).mean(1), counts
        z = layer.bn(z).reshape(b, steps, *z.shape[1:])
        th = layer.thresholds.view(-1, *([1] * (z.ndim - 3)))
        v = torch.zeros_like(z[:, 0])
        out = []
        for t in range(steps):
            v = v * leak + z[:, t]
            spk = AtanSpike.apply(v - th, alpha)
            v = v * (1 - spk.detach())
            out.append(spk)
        spikes = torch.stack(out, 1)
        counts.append(spikes.detach().sum(1))
        s = spikes.reshape(b * steps, *spikes.shape[2:])
    raise AssertionError("the last layer is always the readout")
