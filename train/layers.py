"""Weight-shared layers: one conv or linear synapse (+ BatchNorm) used by both branches.

A layer's parameters are ordinary ANN parameters. ``affine()`` gives the synapse as it runs on
chip: average pooling before a conv is folded into one strided conv (see :func:`pool_fold_error`
for when that equals pooling then convolving), so the ANN branch, the SNN branches and export all
use the same linear map.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from snn2loihi.synapse import expand_blocks


def expand_pooled_kernel(weight: torch.Tensor, pool: int) -> torch.Tensor:
    """Kernel of ``avg_pool(pool) -> conv(weight, stride s, padding q)`` as one conv with
    stride ``pool * s`` and padding ``pool * q``.

    ``weight``: (Cout, Cin, k, k) -> (Cout, Cin, pool*k, pool*k) with ``w'[m] = w[m // pool] / pool^2``.
    """
    if pool == 1:
        return weight
    return expand_blocks(weight / pool**2, pool)


def conv_out_size(n: int, kernel: int, stride: int, padding: int) -> int:
    """Output length of a conv over ``n`` input rows (PyTorch's floor rule; < 1 if none)."""
    return (n + 2 * padding - kernel) // stride + 1


def pool_fold_error(n: int, pool: int, kernel: int, stride: int, padding: int) -> str | None:
    """Why ``avg_pool(pool) -> conv(kernel, stride, padding)`` over ``n`` input rows differs
    from the folded conv (kernel ``pool*kernel``, stride ``pool*stride``, padding
    ``pool*padding``); None when they are equal.

    Both give the same number of outputs. Pooling keeps ``m = n // pool`` rows and drops the
    ``n % pool`` last ones. The folded conv reads pooled row ``i`` (``-padding <= i``) as the
    input rows ``pool*i .. pool*i + pool - 1``: for ``0 <= i < m`` that is the pooled row, for
    ``i = m`` the dropped rows (then zero padding) where the pooled conv sees zero padding, and
    beyond only zero padding. So the two differ exactly when ``n % pool > 0`` and a tap
    ``stride * j + t - padding`` (output ``j``, kernel tap ``t``) equals ``m``.
    """
    m = n // pool
    out = conv_out_size(m, kernel, stride, padding)
    if out < 1:
        return (
            f"input size {n} pooled by {pool} gives {m}, too small for kernel {kernel} "
            f"with padding {padding}"
        )
    if pool == 1 or n % pool == 0:
        return None
    reads_m = any(
        (m + padding - t) % stride == 0 and 0 <= (m + padding - t) // stride < out
        for t in range(kernel)
    )
    if not reads_m:
        return None
    return (
        f"input size {n} is not a multiple of pool {pool} (pooled size {m}, {n % pool} rows "
        f"dropped) and with padding {padding} the folded conv would read the dropped rows; "
        f"use padding 0 or an input size divisible by {pool}"
    )


class SynapticLayer(nn.Module):
    """Conv (``kind="conv"``) or dense synapse; spiking layers also own BatchNorm and thresholds.

    Args:
        kind: ``"conv"`` or ``"dense"``.
        in_size: input channels (conv) or features (dense).
        out_size: output channels / features.
        kernel, stride, padding: conv geometry of the trainable kernel, applied to the pooled
            input (padding defaults to ``kernel // 2``).
        pool: average-pooling factor (``pool x pool`` window, stride ``pool``) applied before the
            conv and folded into it: kernel ``pool*kernel``, stride ``pool*stride``, padding
            ``pool*padding`` (:meth:`geometry`).
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
        bn_momentum: float = 0.1,
    ):
        super().__init__()
        if kind not in ("conv", "dense"):
            raise ValueError(f"unknown layer kind {kind!r}")
        check_geometry(kind, kernel, stride, padding, pool)
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
            self.bn = bn(out_size, momentum=bn_momentum)
            self.register_buffer("thresholds", torch.full((out_size,), float(threshold)))
        else:
            self.bn = None

    @property
    def out_size(self) -> int:
        return self.weight.shape[0]

    @property
    def geometry(self) -> tuple[int, int]:
        """``(stride, padding)`` of the conv as it runs (pooling folded in)."""
        return self.pool * self.stride, self.pool * self.padding

    def output_hw(self, in_hw: tuple[int, int]) -> tuple[int, int]:
        """Output (H, W) of the conv for an input of ``in_hw``."""
        stride, padding = self.geometry
        k = self.kernel * self.pool
        return tuple(conv_out_size(n, k, stride, padding) for n in in_hw)  # type: ignore[return-value]

    def pool_fold_error(self, in_hw: tuple[int, int]) -> str | None:
        """Why the folded conv differs from ``avg_pool -> conv`` on ``in_hw`` (None: equal)."""
        for n in in_hw:
            why = pool_fold_error(n, self.pool, self.kernel, self.stride, self.padding)
            if why is not None:
                return why
        return None

    @property
    def repeat(self) -> int:
        """How often each weight of the compact kernel occurs in the kernel as run (``pool^2``)."""
        return self.pool**2  # dense layers have pool 1

    def affine(self, compact: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """``(weight, bias)`` of the synapse as run (pool-expanded kernel), before BatchNorm.

        ``compact``: the (Cout, Cin, k, k) kernel ``weight / pool^2`` instead, whose
        ``pool x pool`` blocks (:func:`snn2loihi.synapse.expand_blocks`) make the kernel as run.
        """
        if self.pool == 1:  # always for dense layers
            return self.weight, self.bias
        w = self.weight / self.pool**2
        return (w if compact else expand_blocks(w, self.pool)), self.bias

    def synapse(
        self,
        x: torch.Tensor,
        weight: torch.Tensor,
        bias: torch.Tensor | None,
        compact: bool = False,
    ) -> torch.Tensor:
        """Apply the synapse with the given (possibly folded) weight and bias.

        ``x``: (B, Cin, H, W) for conv or (B, Nin) for dense. ``compact``: ``weight`` is the
        compact kernel (:meth:`affine`); where pooling folds exactly (:meth:`pool_fold_error`),
        the input is then sum-pooled and convolved with it (``pool^2`` fewer products, the same
        linear map), else the kernel is expanded.
        """
        if self.kind != "conv":
            return F.linear(x, weight, bias)
        stride, padding = self.geometry
        if compact and self.pool > 1:
            if self.pool_fold_error(tuple(x.shape[2:])) is None:
                x = F.avg_pool2d(x, self.pool, divisor_override=1)
                return F.conv2d(x, weight, bias, stride=self.stride, padding=self.padding)
            weight = expand_blocks(weight, self.pool)
        return F.conv2d(x, weight, bias, stride=stride, padding=padding)

    def extra_repr(self) -> str:
        geometry = ""
        if self.kind == "conv":
            geometry = (
                f"kernel={self.kernel}, stride={self.stride}, padding={self.padding}, "
                f"pool={self.pool}, "
            )
        return f"{self.kind}, {self.weight.shape[1]}->{self.out_size}, {geometry}spiking={self.spiking}"


def check_geometry(kind: str, kernel: int, stride: int, padding: int | None, pool: int) -> None:
    """Raise ValueError for a geometry no conv (or dense layer) can have (``padding`` None:
    the default ``kernel // 2``)."""
    for name, value, low in (("kernel", kernel, 1), ("stride", stride, 1), ("pool", pool, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{name} = {value!r} must be an integer >= {low}")
    if padding is not None and (
        isinstance(padding, bool) or not isinstance(padding, int) or padding < 0
    ):
        raise ValueError(f"padding = {padding!r} must be an integer >= 0")
    if kind == "dense" and (pool, stride) != (1, 1):
        raise ValueError("pool and stride apply only to conv layers")
