"""BPTT baseline: the same network unrolled over T steps with a surrogate spike gradient.

Per layer (:meth:`~snn2loihi.train.model.SpikingNet.walk`), the synapse runs once over all
(sample, step) pairs (layer 0's once on the image, the same every step), a residual layer adds
its shortcut's current, and BatchNorm normalizes the per-step currents; the IF (``leak`` = 1) or
LIF neuron then loops over the steps with hard reset to zero. The same model evaluates on the
integer SNN with ``step_divisor = 1`` (full bias every step, the image at every step).
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

    def repeat_over_steps(z: torch.Tensor) -> torch.Tensor:  # (B, ...) -> (B*T, ...)
        return z.unsqueeze(1).expand(b, steps, *z.shape[1:]).reshape(b * steps, *z.shape[1:])

    def neurons(k: int, a: torch.Tensor) -> torch.Tensor:  # (B*T, ...) currents -> spikes
        z = a.reshape(b, steps, *a.shape[1:])
        th = model.layers[k].thresholds.view(-1, *([1] * (z.ndim - 3)))
        v = torch.zeros_like(z[:, 0])
        out = []
        for t in range(steps):
            v = v * leak + z[:, t]
            spk = AtanSpike.apply(v - th, alpha)
            v = v * (1 - spk.detach())
            out.append(spk)
        spikes = torch.stack(out, 1)
        counts.append(spikes.detach().sum(1))
        return spikes.reshape(b * steps, *spikes.shape[2:])

    z = model.walk(x, neurons, input_current=repeat_over_steps)
    return z.reshape(b, steps, -1).mean(1), counts
