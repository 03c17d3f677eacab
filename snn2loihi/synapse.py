"""Loihi's dense and conv synapses as exact integer functions over torch tensors.

Dense (Lava ``PyDenseModelBitAcc`` after NetX's ``optimize_weight_bits``): the HDF5 weights are
shifted into the 8-bit synapse, clipped and truncated, and the accumulated sum is shifted back:
``a = (W'' . s) >> -weight_exp`` (:func:`dense_weights_as_lava`). Conv (``PyConvModelFixed``):
PyTorch cross-correlation of the raw integer weights, wrapped to 24 bits.

Integer sums are computed with float GEMMs of a deliberately chosen algorithm (oneDNN direct
convolution on CPU, im2col + matmul elsewhere; never Winograd/FFT) in float32 only where the
result is provably exact, else in float64:
every operand must be an integer the significand holds (TF32 on a GPU: |x| <= 2^11) and every
partial sum below 2^24 (:func:`exact_float32`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from snn2loihi.neuron import wrap_signed
from snn2loihi.schema import UV_BITS

FP32_EXACT_SUM = 2**24  # fp32 significand: every integer below this is exact
TF32_EXACT_OPERAND = 2**11  # TF32 significand holds integers up to 2^11


def dense_weights_as_lava(weight: np.ndarray) -> tuple[np.ndarray, int]:
    """Reproduce NetX's ``optimize_weight_bits`` + Lava's clip/truncate of dense weights.

    Args:
        weight: integer (Nout, Nin) matrix from the HDF5 file (validated, not all zero).

    Returns:
        ``(w_eff, weight_exp)``: the int64 weights the synapse holds and the exponent such that
        ``a = (w_eff @ s) >> -weight_exp`` (``<<`` when positive).
    """
    w = np.asarray(weight, dtype=np.int64)
    wmax, wmin = int(w.max()), int(w.min())
    if (wmax > 254 and wmin < 0) or (wmin < -256 and wmax > 0):
        w = np.clip(w, -256, 254)
        wmax, wmin = int(w.max()), int(w.min())
    if wmax < 0:
        mode, scale = "inhibitory", -256 / wmin
    elif wmin >= 0:
        mode, scale = "excitatory", 255 / wmax
    else:
        mode, scale = "mixed", min(127 / wmax, -128 / wmin)
    mixed = int(mode == "mixed")
    scale_bits = int(np.floor(np.log2(scale))) + mixed
    n = 8
    while n > 0 and np.any(w % (2**n)):
        n -= 1
    n -= mixed
    num_weight_bits = 8 - scale_bits - n
    w = w << scale_bits if scale_bits >= 0 else w >> -scale_bits
    # Lava's first run_spk: clip to 8 bits by sign mode, then truncate to num_weight_bits.
    sign = -1 if mode == "inhibitory" else 1
    w = w * sign
    w = np.clip(w, -256 * mixed, 255)
    k = 8 - num_weight_bits + mixed
    w = (w >> k) << k
    return w * sign, -scale_bits


def exact_float32(weight_row_abs_sum: float, input_max: float, max_abs_weight: float) -> bool:
    """True when a float32/TF32 GEMM of these integer operands is exact.

    Every partial sum is bounded by ``max_row(sum |w|) * max|x|`` (< 2^24) and every operand by
    2^11 (TF32 significand), so neither rounding of products nor of sums can occur.
    """
    return (
        weight_row_abs_sum * input_max < FP32_EXACT_SUM
        and max_abs_weight <= TF32_EXACT_OPERAND
        and input_max <= TF32_EXACT_OPERAND
    )


@dataclass(frozen=True)
class ConvGeometry:
    """Conv hyper-parameters in (H, W) order, as in the HDF5 file and PyTorch."""

    stride: tuple[int, int]
    padding: tuple[int, int]
    dilation: tuple[int, int]
    groups: int


class IntegerSynapse:
    """One layer's synapse: integer weights prepared on a device, applied exactly to a batch.

    ``kind`` is ``"dense"`` (weights (Nout, Nin), Lava's dense weight processing applied) or
    ``"conv"`` (weights (Cout, Cin/groups, kH, kW), output wrapped to 24 bits).
    ``input_max`` is the largest input value (1 for spikes, 255 for graded input); it decides
    whether the fast float32 path is exact.
    """

    def __init__(
        self,
        kind: str,
        weight: np.ndarray,
        *,
        input_max: int,
        geometry: ConvGeometry | None = None,
        device: torch.device | str = "cpu",
    ):
        self.kind = kind
        self.geometry = geometry
        self.shift = 0
        w = np.asarray(weight, dtype=np.int64)
        if kind == "dense":
            w, self.shift = dense_weights_as_lava(w)
        elif kind != "conv":
            raise ValueError(f"unknown synapse kind {kind!r}")
        rows = np.abs(w).reshape(w.shape[0], -1).sum(axis=1)
        bound = int(rows.max()) * int(input_max)
        self._conv_may_wrap = kind == "conv" and bound >= 2 ** (UV_BITS - 1)
        if kind == "conv":
            bound = min(bound, 2 ** (UV_BITS - 1))  # wrapped to 24 bits
        elif self.shift < 0:
            bound = (bound >> -self.shift) + 1  # arithmetic shift rounds toward -inf
        else:
            bound = bound << self.shift
        self._max_abs_output = bound
        self.exact_fp32 = exact_float32(float(rows.max()), float(input_max), float(np.abs(w).max()))
        self.dtype = torch.float32 if self.exact_fp32 else torch.float64
        self.weight = torch.as_tensor(w, dtype=self.dtype, device=device)
        self.int_weight_shape = tuple(w.shape)

    def __call__(self, s: torch.Tensor) -> torch.Tensor:
        """Synaptic input ``a`` (exact integers; int32 or int64) for a batch of presynaptic values.

        ``s``: (B, Nin) for dense or (B, Cin, H, W) for conv, non-negative integers or bool.
        Returns (B, Nout) or (B, Cout, Hout, Wout).
        """
        x = s.to(self.dtype)
        if self.kind == "dense":
            acc = (x @ self.weight.T).to(torch.int64)
            return acc >> -self.shift if self.shift <= 0 else acc << self.shift
        acc = self._conv(x)
        if self._conv_may_wrap:
            return wrap_signed(acc.to(torch.int64), UV_BITS)
        return acc.to(torch.int32 if self.exact_fp32 else torch.int64)

    @property
    def max_abs_output(self) -> int:
        """Bound on ``|a|``: the largest row sum of ``|w|`` times the largest input."""
        return self._max_abs_output

    def _conv(self, x: torch.Tensor) -> torch.Tensor:
        """Cross-correlation with a deliberately chosen exact algorithm.

        CPU float32: oneDNN's direct convolution (``torch.mkldnn_convolution``), never NNPACK's
        Winograd/FFT. Elsewhere (GPU, or float64): im2col + GEMM, never cuDNN's choice.
        Exact because every product and partial sum is an integer below 2^24 (float32) or 2^53.
        """
        g = self.geometry
        if x.device.type == "cpu" and self.dtype == torch.float32:
            x = x.contiguous(memory_format=torch.channels_last)
            out = torch.mkldnn_convolution(
                x, self.weight, None, list(g.padding), list(g.stride), list(g.dilation), g.groups
            )
            return out.contiguous()
        cout, cin_g, kh, kw = self.int_weight_shape
        b, _, h, w = x.shape
        cols = F.unfold(x, (kh, kw), dilation=g.dilation, padding=g.padding, stride=g.stride)
        hout = (h + 2 * g.padding[0] - g.dilation[0] * (kh - 1) - 1) // g.stride[0] + 1
        wout = (w + 2 * g.padding[1] - g.dilation[1] * (kw - 1) - 1) // g.stride[1] + 1
        k = cin_g * kh * kw
        cols = cols.view(b, g.groups, k, hout * wout)
        wg = self.weight.reshape(g.groups, cout // g.groups, k)
        out = torch.cat([torch.matmul(wg[i], cols[:, i]) for i in range(g.groups)], dim=1)
        return out.reshape(b, cout, hout, wout)
