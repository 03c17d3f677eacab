"""Weight-shared layers: one conv or linear synapse (+ BatchNorm) used by both branches.

A layer's parameters are ordinary ANN parameters. ``affine()`` gives the synapse as it runs on
chip: average pooling before a conv is folded into one strided conv (exact, see ``pool``), so the
ANN branch, the SNN branches and export all use the same linear map.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def expand_pooled_kernel(weight: torch.Tensor, pool: int) -> torch.Tensor:
    """Kernel of ``avg_pool(pool) -> conv(weight)`` as one conv with stride ``pool``.

    ``weight``: (Cout, Cin, k, k) -> (Cout, Cin, pool*k, pool*k) with ``w'[m] = w[m // pool] / pool^2``.
    """
    if pool == 1:
        return weight
    return weight.repeat_interleave(pool, dim=2).repeat_interleave(pool, dim=3) / pool**2


class SynapticLayer(nn.Module):
    """Conv (``kind="conv"``) or dense synapse; spiking layers also own BatchNorm and thresholds.

    Args:
        kind: ``"conv"`` or ``"dense"``.
        in_size: input channels (conv) or features (dense).
        out_size: output channels / features.
        kernel, stride, padding: conv geometry of the trainable kernel (padding defaults to k//2).
        pool: average-pooling factor applied before the conv, folded into it (stride = pool).
        spiking: False for the readout layer (no BN, no threshold, never spikes).
        threshold: initial firing threshold of every output channel (float units).
    """

    def __init__(
        self,
        kind: str,
        in_size: int,
        out_size: int,
        *,
        kernel: int = 3,
        stride: int = 1,
        padding: int | None = None,
        pool: int = 1,
        spiking: bool = True,
        threshold: float = 1.0,
    ):
        super().__init__()
        if kind not in ("conv", "dense"):
            raise ValueError(f"unknown layer kind {kind!r}")
        if pool > 1 and (kind != "conv" or stride != 1):
            raise ValueError("pooling folds only into a stride-1 conv")
        self.kind = kind
        self.kernel = kernel
        self.stride = stride
        self.padding = kernel // 2 if padding is None else padding
        self.pool = pool
        self.spiking = spiking
        shape = (out_size, in_size, kernel, kernel) if kind == "conv" else (out_size, in_size)
        self.weight = nn.Parameter(torch.empty(shape))
        self.bias = nn.Parameter(torch.zeros(out_size))
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if spiking:
            bn = nn.BatchNorm2d if kind == "conv" else nn.BatchNorm1d
            self.bn = bn(out_size)
            self.register_buffer("thresholds", torch.full((out_size,), float(threshold)))
        else:
            self.bn = None

    @property
    def out_size(self) -> int:
        return self.weight.shape[0]

    @property
    def geometry(self) -> tuple[int, int]:
        """``(stride, padding)`` of the conv as it runs (pooling folded in)."""
        if self.pool > 1:
            return self.pool, self.pool * self.padding
        return self.stride, self.padding

    def output_hw(self, in_hw: tuple[int, int]) -> tuple[int, int]:
        """Output (H, W) of the conv for an input of ``in_hw``."""
        stride, padding = self.geometry
        k = self.kernel * self.pool
        return tuple((n + 2 * padding - k) // stride + 1 for n in in_hw)  # type: ignore[return-value]

    def affine(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(weight, bias)`` of the synapse as run (pool-expanded kernel), before BatchNorm."""
        w = expand_pooled_kernel(self.weight, self.pool) if self.kind == "conv" else self.weight
        return w, self.bias

    def synapse(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None):
        """Apply the synapse with the given (possibly folded) weight and bias.

        ``x``: (B, Cin, H, W) for conv or (B, Nin) for dense.
        """
        if self.kind == "conv":
            stride, padding = self.geometry
            return F.conv2d(x, weight, bias, stride=stride, padding=padding)
        return F.linear(x, weight, bias)

    def extra_repr(self) -> str:
        return (
            f"{self.kind}, {self.weight.shape[1]}->{self.out_size}, pool={self.pool}, "
            f"stride={self.stride}, spiking={self.spiking}"
        )
