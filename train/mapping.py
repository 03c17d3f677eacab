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


def mapping_unit(name: str):
    """The mapping function called ``name`` (``"stsu"`` or ``"resu"``)."""
    if name == "stsu":
        return stsu
    if name == "resu":
        return resu
    raise ValueError(f"unknown mapping unit {name!r}; expected one of {MAPPING_UNITS}")
