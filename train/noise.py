"""The noise route (``train.method = "noise"``; Jiang and Zhang, arXiv 2211.05453): train a
single-step SNN (T = 1) whose membrane potential carries random noise, then run the same network
for T = N steps.

At T = 1 a neuron fires when ``a + eps > th`` (``a``: its BatchNorm'd input current, ``eps``:
the noise). In an N-step IF network the membrane potential before a step holds what earlier
steps left below the threshold; the noise stands in for that residue, so the probability of a
spike at T = 1, ``P(a + eps > th)``, models the firing rate of the same neuron over N steps. The
network is trained on sampled spikes (a fresh ``eps`` per neuron and sample, from torch's
seeded generator) with the arctan surrogate gradient of the BPTT baseline
(:class:`snn2loihi.train.bptt.AtanSpike`).

The conversion to T = N changes nothing in the parameters: the model is built with ``steps = N``
and ``step_divisor = 1`` (BPTT's convention: layer 0 sees the whole image current and every layer
its whole bias at every step), so each step's current is the T = 1 current, and the deployed
network is the integer IF network of every other method (``snn_branch.run_snn``, export, the
emulator and Lava), without noise. Training evaluates that N-step integer network on the
validation split every epoch.

The noise is given in units of each channel's threshold (``noise.mean``, ``noise.std``):
``eps = th * (mean + std * z)`` with ``z`` standard normal (``noise.distribution =
"gaussian"``, the paper's) or uniform with mean 0 and variance 1 (``"uniform"``).
"""

from __future__ import annotations

import math

import torch

from snn2loihi.errors import ConfigError
from snn2loihi.quant import readout_max_steps
from snn2loihi.train.bptt import AtanSpike
from snn2loihi.train.model import SpikingNet

DISTRIBUTIONS = ("gaussian", "uniform")


def unit_noise(shape, distribution: str, *, device, dtype) -> torch.Tensor:
    """Noise of mean 0 and variance 1 of ``distribution``, from torch's global generator."""
    if distribution == "gaussian":
        return torch.randn(shape, device=device, dtype=dtype)
    if distribution == "uniform":  # U(-sqrt(3), sqrt(3)): variance 1
        return (torch.rand(shape, device=device, dtype=dtype) * 2 - 1) * math.sqrt(3)
    raise ValueError(f"noise distribution {distribution!r} is not one of {DISTRIBUTIONS}")


def noise_forward(
    model: SpikingNet,
    x: torch.Tensor,
    *,
    distribution: str = "gaussian",
    mean: float = 0.5,
    std: float = 0.2887,
    alpha: float = 2.0,
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """One noisy single step on raw pixels ``x`` (B, C, H, W) float.

    Returns ``(logits (B, classes): the readout current, spikes per spiking layer)``. The
    readout current is what one step of the deployed network adds to the readout's ``v``, so
    its argmax is the prediction of the N-step network whose spikes equal these."""
    spikes: list[torch.Tensor] = []

    def fire(k: int, a: torch.Tensor) -> torch.Tensor:
        th = model.layers[k].thresholds.view(-1, *([1] * (a.ndim - 2)))
        eps = unit_noise(a.shape, distribution, device=a.device, dtype=a.dtype)
        v = a + th * (mean + std * eps)
        s = AtanSpike.apply(v - th, alpha)
        spikes.append(s.detach())
        return s

    return model.walk(x, fire), spikes


def check_reachable_steps(model: SpikingNet) -> None:
    """Refuse a T = N the conversion cannot reach: the readout accumulates the full T = 1
    current N times (the readout neurons of every method accumulate T steps), and Loihi's
    ``v`` holds N steps of it only while the readout's scale leaves at least one mantissa unit
    per step (:func:`snn2loihi.quant.readout_max_steps` of the readout's fan-in)."""
    readout = model.layers[-1]
    fan_in = int(readout.weight[0].numel())
    most = readout_max_steps(fan_in, 255 if len(model.layers) == 1 else 1)  # pixels or spikes
    if model.steps > most:
        raise ConfigError(
            f"train.steps = {model.steps} with train.method = 'noise': the readout "
            f"({fan_in} inputs) can accumulate at most {most} steps within Loihi's v range; "
            f"give train.steps <= {most}"
        )
