"""Thresholds placed per layer where the ANN's activations are (``model.threshold_placement``).

At the end of the ANN phase (``train.pretrain_epochs``) each spiking layer's threshold is set to
the one whose spike counts best represent the layer's ReLU activations: over a grid of
thresholds ``th``, the least relative squared error ``min_k E[(relu(a) - k * n(a))^2] /
E[relu(a)^2]`` between the activations and a free multiple of the counts (the next layer's
BatchNorm absorbs the scale ``k``). ``a`` is the layer's BatchNorm output (eval mode: the
running statistics the integer branch folds) on a fixed sample of training images, and ``n`` the
count of Loihi's reset-to-zero IF neuron over T steps under a constant current of ``a /
step_divisor`` per step: ``n = floor(T / ceil(th / current))`` for a positive current, else 0
(counts 0, 1, 2, 4 at T = 4). Deeper layers receive spike trains, not a constant current, so
the count model is the rate approximation of what the integer branch then trains exactly.
"""

from __future__ import annotations

import logging

import torch

from snn2loihi.train.model import SpikingNet

log = logging.getLogger(__name__)

GRID = tuple(round(0.05 * i, 2) for i in range(1, 41))  # 0.05 .. 2.0 (float units)
SAMPLE_IMAGES = 256  # evenly spaced images of the training split (files may be class-sorted)
MAX_VALUES = 262_144  # activations per layer kept for the search (an even stride through them)


def constant_current_counts(a: torch.Tensor, th: float, steps: int, divisor: int) -> torch.Tensor:
    """Spike counts (same shape as ``a``) of reset-to-zero IF neurons over ``steps`` steps at
    threshold ``th`` driven by ``a / divisor`` every step."""
    current = (a / divisor).clamp_min(1e-12)
    counts = torch.floor(steps / torch.ceil(th / current))
    return torch.where(a > 0, counts, torch.zeros_like(counts))


def relative_error(a: torch.Tensor, counts: torch.Tensor) -> float:
    """``min_k E[(relu(a) - k n)^2] / E[relu(a)^2]``: 1.0 when no neuron spikes (k n = 0),
    0.0 when no activation is positive (nothing to represent)."""
    r = a.clamp_min(0)
    energy = float((r * r).sum())
    if energy == 0:
        return 0.0
    nn = float((counts * counts).sum())
    if nn == 0:
        return 1.0
    rn = float((r * counts).sum())
    return (energy - rn * rn / nn) / energy


def best_threshold(a: torch.Tensor, steps: int, divisor: int) -> tuple[float, float]:
    """``(threshold, relative error)`` of :data:`GRID` for the activations ``a`` (any shape)."""
    a = a.detach().flatten().float()
    a = a[:: max(1, a.numel() // MAX_VALUES)]
    errors = [relative_error(a, constant_current_counts(a, th, steps, divisor)) for th in GRID]
    i = min(range(len(GRID)), key=errors.__getitem__)
    return GRID[i], errors[i]


def placement_sample(x: torch.Tensor) -> torch.Tensor:
    """:data:`SAMPLE_IMAGES` evenly spaced images of ``x`` (N, C, H, W), as floats."""
    return x[:: max(1, len(x) // SAMPLE_IMAGES)][:SAMPLE_IMAGES].float()


@torch.no_grad()
def place_thresholds(model: SpikingNet, x: torch.Tensor) -> list[float]:
    """Set every spiking layer's thresholds (all its channels) to its :func:`best_threshold`
    for the raw images ``x`` (B, C, H, W) float; returns the thresholds, one per layer."""
    was_training = model.training
    model.eval()
    placed: dict[int, float] = {}

    def place(k: int, a: torch.Tensor, _counts) -> None:
        th, err = best_threshold(a, model.steps, model.step_divisor)
        model.spiking_layers[k].thresholds.fill_(th)
        placed[k] = th
        log.info("layer %d: threshold %.2f (relative error %.3f)", k, th, err)

    model.ann_forward(x, layer_hook=place)
    model.train(was_training)
    return [placed[k] for k in sorted(placed)]
