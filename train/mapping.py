"""Spiking mapping units: replace an ANN activation by the SNN spike count, straight through.

``act``: the ANN branch's ReLU output (any shape); ``counts``: the SNN layer's spike counts over
the T steps (same shape, 0..T). The forward value is the count, the gradient w.r.t. ``act`` is 1.
"""

from __future__ import annotations

import torch

MAPPING_UNITS = ("stsu", "resu")


def stsu(act: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """Straight-through spiking unit: forward ``counts``, backward ``d/d act = 1``."""
    return act + (counts.to(act.dtype) - act).detach()


def resu(act: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """ReLU spiking unit: forward ``counts * [act > 0]``, backward ``d/d act = 1``."""
    target = counts.to(act.dtype) * (act > 0).to(act.dtype)
    return act + (target - act).detach()


class _ReluMapped(torch.autograd.Function):
    """``mapping(relu(a), counts)`` with the gradient of that composition (ReLU's: zero where
    ``a <= 0``), holding only ``a`` for backward (which BN made anyway), not the ReLU's output
    (why not a one-byte mask of ``a > 0``: bench/results/tuned_constants.md)."""

    @staticmethod
    def forward(ctx, a, counts, mapping):
        ctx.save_for_backward(a)
        return mapping(torch.relu(a), counts)  # the same values as outside a Function

    @staticmethod
    def backward(ctx, grad):
        (a,) = ctx.saved_tensors
        # ReLU's own backward kernel: zero where a <= 0, grad elsewhere (NaN passes), in one
        # vectorized pass (torch.where is slower: bench/results/tuned_constants.md)
        return torch.ops.aten.threshold_backward(grad, a, 0), None, None


def relu_mapped(a: torch.Tensor, counts: torch.Tensor, mapping=stsu) -> torch.Tensor:
    """``mapping(relu(a), counts)``: the same values and gradients, but the ReLU's output (one
    activation-sized tensor per layer) is not held until the backward pass; ``a`` is."""
    return _ReluMapped.apply(a, counts, mapping)


def mapping_unit(name: str):
    """The mapping function called ``name`` (``"stsu"`` or ``"resu"``)."""
    if name == "stsu":
        return stsu
    if name == "resu":
        return resu
    raise ValueError(f"unknown mapping unit {name!r}; expected one of {MAPPING_UNITS}")
