"""Loihi's dense and conv synapses as exact integer functions over torch tensors.

Dense (Lava ``PyDenseModelBitAcc`` after NetX's ``optimize_weight_bits``): the HDF5 weights are
shifted into the 8-bit synapse, clipped and truncated, and the accumulated sum is shifted back:
``a = (W'' . s) >> -weight_exp`` (:func:`dense_weights_as_lava`). Conv (``PyConvModelFixed``):
PyTorch cross-correlation of the raw integer weights, wrapped to 24 bits.

Each synapse picks one exact kernel by a fixed rule (:func:`choose_kernel`, recorded as
``IntegerSynapse.kernel``):
- ``int8-onednn``: oneDNN's int8 direct convolution (u8 x s8, no im2col) for convs on the CPU
  with inputs in 0..255, int8 weights (after a common power-of-two factor) and sums below
  2^24, where this CPU computes it exactly (``int8_gemm.onednn_conv_exact``);
- ``int8``: im2col + int8 x int8 -> int32 GEMM (:mod:`snn2loihi.int8_gemm`) on the CPU, where
  every weight (after a common power-of-two factor) and every input fits int8, the sums fit
  int32, and the fan-in is at least ``INT8_MIN_FANIN`` (measured faster there);
- ``fp32`` / ``fp32-limbs`` / ``fp64``: float GEMMs of a deliberately chosen algorithm (oneDNN
  direct convolution on CPU, im2col + matmul elsewhere; never Winograd/FFT) in float32 only
  where the result is provably exact (every operand an integer the significand holds, TF32 on
  a GPU: |x| <= 2^11, every partial sum below 2^24: :func:`exact_float32`), large inputs split
  into float32 limbs, else float64.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from snn2loihi import int8_gemm
from snn2loihi.loihi import INT32_SAFE_INPUT, UV_BITS, UV_LIMIT, worst_case_input
from snn2loihi.neuron import wrap_signed
from snn2loihi.schema import conv_output_hw

FP32_EXACT_SUM = 2**24  # fp32 significand: every integer below this is exact
TF32_EXACT_OPERAND = 2**11  # TF32 significand holds integers up to 2^11
MAX_LIMBS = 4  # inputs split into more float32 limbs than this go to float64 instead


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
    if wmax == wmin == 0:  # never in a valid file; training's branch of a dead (or NaN) layer
        return w, 0
    if (wmax > 254 and wmin < 0) or (wmin < -256 and wmax > 0):
        w = np.clip(w, -256, 254)
        wmax, wmin = int(w.max()), int(w.min())
    if wmax < 0:
        mode, scale = "inhibitory", -256 / wmin
    elif wmin >= 0:
        mode, scale = "excitatory", 255 / wmax
    else:
        # numpy's 127 / 0 in NetX is inf: a mixed matrix whose largest weight is 0
        mode, scale = "mixed", min(127 / wmax if wmax else math.inf, -128 / wmin)
    mixed = int(mode == "mixed")
    scale_bits = int(np.floor(np.log2(scale))) + mixed
    n = int8_gemm.trailing_zero_bits(w, 8)  # the largest n <= 8 with every w % 2^n == 0
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

    Every partial sum is bounded by ``weight_row_abs_sum * max|x|`` (< 2^24), where the row sum
    is ``max_row(sum |w|)`` or, for non-negative inputs, ``max_row(max(sum w+, sum |w-|))``, and
    every operand by 2^11 (TF32 significand), so neither rounding of products nor of sums occurs.
    """
    return (
        weight_row_abs_sum * input_max < FP32_EXACT_SUM
        and max_abs_weight <= TF32_EXACT_OPERAND
        and input_max <= TF32_EXACT_OPERAND
    )


def _bool_as_uint8(s: torch.Tensor) -> torch.Tensor:
    """bool ``s`` as its uint8 view, anything else as it is: PyTorch's conversions from bool
    are not vectorized (about 3 ns per element against 0.3 from uint8)."""
    return s.view(torch.uint8) if s.dtype == torch.bool else s


KERNELS = ("int8-onednn", "int8", "int8-limbs", "fp32", "fp32-limbs", "fp64")


def choose_kernel(
    *,
    device: torch.device,
    weights_fit_int8: bool,
    limbs: int,
    gemm_bound: int,
    fan_in: int,
    float_kernel: str,
) -> str:
    """The synapse kernel. ``int8`` (``int8-limbs``: inputs beyond int8 split into ``limbs``
    7-bit limbs) on the CPU when it is exact: int8 weights, at most ``INT8_MAX_LIMBS`` limbs,
    every GEMM's sums below 2^31 (``gemm_bound``), and a fan-in of at least ``INT8_MIN_FANIN``
    (where it measured faster than the float kernels); else the exact float kernel."""
    if (
        device.type == "cpu"
        and weights_fit_int8
        and 1 <= limbs <= int8_gemm.INT8_MAX_LIMBS
        and gemm_bound < int8_gemm.INT32_SUM_LIMIT
        and fan_in >= int8_gemm.INT8_MIN_FANIN
    ):
        return "int8" if limbs == 1 else "int8-limbs"
    return float_kernel


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
    ``input_max`` is the largest input value (1 for spikes, 255 for graded input; inputs are
    never negative on Loihi); it decides whether the fast float32 path is exact. ``weight`` may
    be a numpy array or an integer tensor (kept on ``device``, no host round trip).
    ``block`` = p > 1 says that ``weight`` is the compact kernel of a block kernel (the conv as
    run has kernel :func:`expand_blocks` ``(weight, p)``, stride and padding multiples of p in
    ``geometry``), so it is never materialized; by default block kernels are detected.
    ``weight_exp`` (dense only): ``weight`` is already what Lava's synapse holds (from
    :func:`dense_weights_as_lava` of a larger matrix, e.g. one delay or the recurrent part of
    a layer) and this is its exponent; by default the weights are processed here.
    ``signed``: inputs may be negative (sigma-delta messages); ``input_max`` bounds ``|x|``.
    ``onednn``: convs may take the ``int8-onednn`` kernel (False: the other kernels' rule, for
    tests and benchmarks that compare kernels). ``input_hw``: a conv's input (H, W) where the
    caller knows it; outputs of at most ``int8_gemm.ONEDNN_MIN_OUTPUT - 1`` positions then take
    the im2col ``int8`` kernel instead of oneDNN's (:meth:`_onednn_exact`). ``frames``: the
    synapse is applied once, to this many frames (training builds its synapses every step);
    with ``input_hw``, oneDNN's kernel is then taken only where its weight prepacking pays back
    (``int8_gemm.onednn_pays_back``).
    """

    def __init__(
        self,
        kind: str,
        weight: np.ndarray | torch.Tensor,
        *,
        input_max: int,
        geometry: ConvGeometry | None = None,
        device: torch.device | str = "cpu",
        block: int = 1,
        weight_exp: int | None = None,
        signed: bool = False,
        onednn: bool = True,
        input_hw: tuple[int, int] | None = None,
        frames: int | None = None,
    ):
        self.kind = kind
        self._onednn = onednn
        self._frames = frames
        self._input_hw = None if input_hw is None else tuple(int(d) for d in input_hw)
        self.geometry = geometry
        self._scratch: torch.Tensor | None = None  # the float kernel's input (CPU)
        w = self._integer_weight(weight, device, weight_exp)
        # A kernel made of p x p constant blocks (average pooling folded into a conv) runs as
        # p x p sum pooling + the compact kernel: p^2 fewer products, the same integers.
        if block > 1:
            _check_block(kind, block, geometry)
            pool, compact = block, w
        else:
            pool = block_factor(w, geometry) if kind == "conv" else 1
            compact = w[:, :, ::pool, ::pool] if pool > 1 else w
        # Inputs are non-negative, so any (partial) sum of w.x lies between -neg and +pos;
        # signed inputs in [-m, m] keep it within (pos + neg) * m <= 2 * max(pos, neg) * m.
        input_max = 2 * int(input_max) if signed else int(input_max)
        row_max, w_max = self._set_bounds(compact, pool, input_max)
        if pool > 1 and self.exact_fp32 and input_max * pool**2 > TF32_EXACT_OPERAND:
            # pooled inputs would leave the exact float32 path
            pool, compact = 1, expand_blocks(compact, pool)
        self.pool = pool
        largest = int(input_max) // 2 if signed else int(input_max)  # the largest input |x|
        self._set_limbs(row_max, w_max, largest)
        self.int_weight_shape = tuple(compact.shape)
        self.kernel = self._choose(compact, row_max, largest, signed)
        if not self.kernel.startswith("int8"):
            self.weight = compact.to(self.dtype)

    def _integer_weight(self, weight, device, weight_exp: int | None) -> torch.Tensor:
        """``weight`` as an integer tensor on ``device``, and :attr:`shift`: a dense weight
        goes through Lava's weight processing (:func:`dense_weights_as_lava`) unless
        ``weight_exp`` says it already has."""
        self.shift = 0
        if isinstance(weight, torch.Tensor):  # stays on its device (e.g. training on a GPU)
            # int8 (training's grid) stays int8: every use below is exact for it (row sums in
            # int64, bounds as Python ints); anything else is widened to int64
            narrow = weight.dtype == torch.int8
            w = weight.to(device=device, dtype=torch.int8 if narrow else torch.int64)
        else:
            w = torch.as_tensor(np.asarray(weight, dtype=np.int64), device=device)
        if self.kind == "dense" and weight_exp is not None:
            self.shift = int(weight_exp)
        elif self.kind == "dense":
            w_np, self.shift = dense_weights_as_lava(w.cpu().numpy())
            w = torch.as_tensor(w_np, device=device)
        elif self.kind != "conv":
            raise ValueError(f"unknown synapse kind {self.kind!r}")
        return w

    def _set_bounds(self, compact: torch.Tensor, pool: int, input_max: int) -> tuple[int, int]:
        """The output bounds of the kernel as run (``compact`` repeated over ``pool x pool``
        blocks) on inputs ``|x| <= input_max``, and whether float32 is exact for it; returns
        ``(row_max, w_max)``: the largest row's ``max(sum w+, sum |w-|)`` and ``max |w|``."""
        row_max = int(worst_case_input(compact, repeat=pool**2).max())  # of the kernel as run
        lo, hi = torch.aminmax(compact)
        w_max = max(int(hi), -int(lo))
        self._fits_int8 = int8_gemm.INT8_MIN <= int(lo) and int(hi) <= int8_gemm.INT8_MAX
        bound = row_max * int(input_max)
        self._raw_bound = bound  # |w . x| before any wrap or shift
        self._conv_may_wrap = self.kind == "conv" and bound >= UV_LIMIT
        if self.kind == "conv":
            bound = min(bound, UV_LIMIT)  # wrapped to 24 bits
        elif self.shift < 0:
            bound = (bound >> -self.shift) + 1  # arithmetic shift rounds toward -inf
        else:
            bound = bound << self.shift
        self._max_abs_output = bound
        self.exact_fp32 = exact_float32(float(row_max), float(input_max), float(w_max))
        return row_max, w_max

    def _set_limbs(self, row_max: int, w_max: int, largest: int) -> None:
        """Inputs too large for one exact float32 GEMM are split into limbs of
        :attr:`limb_bits` bits (each limb's products and sums stay below 2^24) when that takes
        few limbs; :attr:`dtype` is the float kernel's (float64 where neither is exact)."""
        self.limb_bits, self.limbs = 0, 1
        if not self.exact_fp32 and self.pool == 1:
            # row_max bounds |w . l| for limbs in [0, 1]; signed limbs double it
            bits = min(11, (FP32_EXACT_SUM // max(1, 2 * row_max)).bit_length() - 1)
            limbs = -(-largest.bit_length() // max(1, bits))
            if w_max <= TF32_EXACT_OPERAND and bits >= 4 and limbs <= MAX_LIMBS:
                self.limb_bits, self.limbs = bits, limbs
        self.dtype = torch.float32 if self.exact_fp32 or self.limb_bits else torch.float64

    def _choose(self, w: torch.Tensor, row_max: int, largest: int, signed: bool) -> str:
        """Pick the kernel (see :func:`choose_kernel`) and prepare int8 weights for it.
        ``row_max``: the largest row's ``max(sum w+, sum |w-|)`` of ``w`` as run (pooling
        repeats included); ``largest``: the largest input ``|x|``; ``signed``: inputs may be
        negative."""
        float_kernel = "fp32" if self.exact_fp32 else "fp32-limbs" if self.limb_bits else "fp64"
        # weights already in int8 (training's grid) need no common power-of-two factor
        z = 0 if self._fits_int8 else int8_gemm.common_shift(w)
        small = w >> z if z else w
        fits = self._fits_int8 or int8_gemm.int8_fits(small)
        if self._onednn_exact(small, fits, (row_max >> z) * largest, largest, signed):
            self.int8_shift, self.int8_limbs = z, 1
            self.int_weight_shape = tuple(small.shape)
            self.packed = int8_gemm.onednn_prepack(small, self.geometry, self.pool)
            return "int8-onednn"
        pool = self.pool
        if pool > 1 and largest * pool**2 > int8_gemm.INT8_MAX:
            pool, small = 1, expand_blocks(small, self.pool)  # pooled sums leave int8
        limbs = int8_gemm.limbs_needed(largest * pool**2)
        # |w . l| per GEMM: non-negative operands up to m give row_max * m; limbs and signed
        # operands (|l| <= 128) at most (sum w+ + sum |w-|) * 128 <= 2 * row_max * 128
        operand = largest * pool**2 if limbs == 1 and not signed else 2 * 128
        kernel = choose_kernel(
            device=small.device,
            weights_fit_int8=fits,
            limbs=limbs,
            gemm_bound=(row_max >> z) * operand,
            fan_in=int(np.prod(small.shape[1:])),
            float_kernel=float_kernel,
        )
        if kernel.startswith("int8"):
            self.pool, self.int8_shift, self.int8_limbs = pool, z, limbs
            self.int_weight_shape = tuple(small.shape)
            if self.kind == "dense":
                self.packed = int8_gemm.pack_dense(small)
            else:
                self.packed = int8_gemm.pack_conv(small, self.geometry.groups)
        return kernel

    def output_positions(self) -> int | None:
        """A conv's output positions per frame (Hout * Wout) for its ``input_hw``, else None."""
        if self.kind != "conv" or self._input_hw is None:
            return None
        g = self.geometry
        kernel = tuple(self.pool * k for k in self.int_weight_shape[2:])  # as run
        h, w = conv_output_hw(self._input_hw, kernel, g.stride, g.padding, g.dilation)
        return max(0, h) * max(0, w)

    def _onednn_exact(
        self, small: torch.Tensor, fits: bool, bound: int, largest: int, signed: bool
    ) -> bool:
        """The ``int8-onednn`` rule: a conv on the CPU, inputs in 0..255 (``largest``; sum-pooled
        inputs of a block kernel below 128), ``bound`` (the largest ``|W . x|`` of the int8
        weights ``small``) below 2^24, not a known output of fewer than
        ``int8_gemm.ONEDNN_MIN_OUTPUT`` positions (there im2col + ``_int_mm`` measured faster:
        oneDNN's direct kernels block over the output width), for a synapse applied once to a
        known number of frames only where the weight prepacking pays back
        (:func:`~snn2loihi.int8_gemm.onednn_pays_back`), and a CPU where oneDNN's int8
        convolution is exact."""
        positions = self.output_positions()
        one_shot = self._frames is not None and positions is not None
        return (
            self._onednn
            and self.kind == "conv"
            and (positions is None or positions >= int8_gemm.ONEDNN_MIN_OUTPUT)
            and (
                not one_shot or int8_gemm.onednn_pays_back(small.numel(), self._frames * positions)
            )
            and (self.pool == 1 or largest * self.pool**2 <= int8_gemm.INT8_MAX)
            and small.device.type == "cpu"
            and not signed
            and fits
            and bound < int8_gemm.ONEDNN_SUM_LIMIT
            and largest <= 255
            and int8_gemm.onednn_conv_exact()
        )

    def __call__(self, s: torch.Tensor, *, exact_float: bool = False) -> torch.Tensor:
        """Synaptic input ``a`` (exact integers; int32 or int64) for a batch of presynaptic values.

        ``s``: (B, Nin) for dense or (B, Cin, H, W) for conv, non-negative integers or bool.
        Returns (B, Nout) or (B, Cout, Hout, Wout). ``exact_float``: a conv kernel's float32
        result (every value an exact integer below 2^24) may come as it is, for a consumer
        that converts it while it reads it (the emulator's neurons): one pass fewer.
        """
        if self.kernel.startswith("int8"):
            return self._int8(s, exact_float)
        if self.limb_bits:
            acc = self._limbs(s)
        elif self.kind == "dense":
            acc = (self._float_input(s) @ self.weight.T).to(torch.int64)
        else:
            acc = self._conv(self._float_input(s))
        if self.kind == "dense":
            return acc >> -self.shift if self.shift <= 0 else acc.to(torch.int64) << self.shift
        if self._conv_may_wrap:
            return wrap_signed(acc.to(torch.int64), UV_BITS)
        if not acc.is_floating_point() or (exact_float and acc.dtype == torch.float32):
            return acc  # limbs combined in int32 or int64, or exact float32 as asked
        # exact integers converted in place (float32 -> int32, float64 -> int64): a fresh
        # multi-MiB tensor per call costs more in page faults than the conversion itself
        return acc.view(torch.int32 if acc.dtype == torch.float32 else torch.int64).copy_(acc)

    def _float_input(self, s: torch.Tensor) -> torch.Tensor:
        """``s`` in the float kernel's dtype, its memory format kept. On the CPU a dense
        (contiguous or channels-last) input is converted into a buffer this synapse keeps for
        the next call of the same layout: a fresh multi-MiB tensor per call costs more in page
        faults than the conversion. The result is only valid until the next call."""
        dense = s.is_contiguous() or (
            s.ndim == 4 and s.is_contiguous(memory_format=torch.channels_last)
        )
        if s.device.type != "cpu" or not dense:
            return _bool_as_uint8(s).to(self.dtype)
        buf = self._scratch
        if buf is None or buf.shape != s.shape or buf.stride() != s.stride():
            buf = self._scratch = torch.empty_strided(s.shape, s.stride(), dtype=self.dtype)
        return buf.copy_(_bool_as_uint8(s))

    def _int8(self, s: torch.Tensor, exact_float: bool = False) -> torch.Tensor:
        """The int8 kernels: int32 ``(W >> z) . s`` (limb by limb, combined in int32 when
        ``|W . s| < 2^31``, else int64), shifted back (and wrapped for conv); with
        ``exact_float``, oneDNN's float32 result as it is where no shift or wrap follows."""
        n = self.int8_limbs
        x = int8_gemm.split_limbs(s, n) if n > 1 else s
        if self.kernel == "int8-onednn":
            acc = int8_gemm.conv2d_onednn(x, self.packed, self.geometry, self.pool)
            if exact_float and not self.int8_shift and not self._conv_may_wrap:
                return acc
            acc = acc.view(torch.int32).copy_(acc)  # exact below 2^24, converted in place
        elif self.kind == "dense":
            acc = int8_gemm.linear_int8(x, self.packed)
        else:
            g = self.geometry
            acc = int8_gemm.conv2d_int8(
                x, self.packed, self.int_weight_shape[2:], g.stride, g.padding, g.dilation,
                self.pool,
            )  # fmt: skip
        wide = self._raw_bound >= int8_gemm.INT32_SUM_LIMIT
        if n > 1:
            acc = int8_gemm.combine_limbs(acc, n, torch.int64 if wide else torch.int32)
        dense_shift = self.shift if self.kind == "dense" else 0
        shift = self.int8_shift + dense_shift
        if shift > 0:
            wide = wide or self._raw_bound << max(0, dense_shift) >= int8_gemm.INT32_SUM_LIMIT
            acc = acc.to(torch.int64) << shift if wide else acc << shift
        elif shift < 0:
            acc = acc >> -shift
        if self._conv_may_wrap:
            return wrap_signed(acc.to(torch.int64), UV_BITS)
        return acc

    def _limbs(self, s: torch.Tensor) -> torch.Tensor:
        """``W . s`` in int64 as ``sum_i (W . l_i) << (b i)`` with signed limbs (each in
        ``(-2^b, 2^b)``, the sign of ``s``): one float32 GEMM over all limbs. The split is
        float32 arithmetic (division by ``2^b`` and truncation are exact below 2^24), else int64.
        """
        b, n = self.limb_bits, self.limbs
        if int(s.abs().max()) < FP32_EXACT_SUM:
            parts = torch.empty((n, *s.shape), dtype=torch.float32, device=s.device)
            rem, scale = s.to(torch.float32, copy=True), float(1 << b)
            for i in range(n - 1):
                torch.fmod(rem, scale, out=parts[i])  # the sign of rem, |.| < 2^b
                rem = rem.sub_(parts[i]).mul_(1.0 / scale)  # exact: a multiple of 2^b
            parts[n - 1] = rem
            parts = parts.view(n * s.shape[0], *s.shape[1:])
        else:
            x = s.to(torch.int64)
            sign, mag, mask = torch.sign(x), x.abs(), (1 << b) - 1
            parts = torch.cat([sign * ((mag >> (b * i)) & mask) for i in range(n)])
            parts = parts.to(self.dtype)
        out = parts @ self.weight.T if self.kind == "dense" else self._conv(parts)
        out = out.view(n, *s.shape[:1], *out.shape[1:])
        # every partial sum is bounded by |w . x|: int32 holds them when that is below 2^31
        dtype = torch.int32 if self._raw_bound < 2**31 else torch.int64
        acc = out[n - 1].to(dtype)
        for i in range(n - 2, -1, -1):
            acc <<= b
            acc += out[i].to(dtype)
        return acc

    @property
    def max_abs_output(self) -> int:
        """Bound on ``|a|``: the largest row's ``max(sum w+, sum |w-|)`` times the largest input."""
        return self._max_abs_output

    @property
    def int32_safe(self) -> bool:
        """Whether ``|a| <= INT32_SAFE_INPUT`` is proven from the weights: the neurons fed by
        this synapse may hold int32 state without Lava's int32 wraps
        (:func:`snn2loihi.neuron.cuba_step` ``int32_safe``)."""
        return self._max_abs_output <= INT32_SAFE_INPUT

    def _conv(self, x: torch.Tensor) -> torch.Tensor:
        """Cross-correlation with a deliberately chosen exact algorithm.

        CPU float32: oneDNN's direct convolution (``torch.mkldnn_convolution``), never NNPACK's
        Winograd/FFT. Elsewhere (GPU, or float64): im2col + GEMM, never cuDNN's choice.
        Exact because every product and partial sum is an integer below 2^24 (float32) or 2^53.
        Block kernels (``pool`` > 1) first sum-pool the input (small integers: exact).
        """
        g = self.geometry
        stride, padding = g.stride, g.padding
        if self.pool > 1:
            p = self.pool
            stride = (stride[0] // p, stride[1] // p)
            padding = (padding[0] // p, padding[1] // p)
            if x.shape[2] % p or x.shape[3] % p:  # pad first so the last pool window is right
                x = F.pad(x, (g.padding[1], g.padding[1], g.padding[0], g.padding[0]))
                padding = (0, 0)
            x = F.avg_pool2d(x, p, stride=p, divisor_override=1)
        if x.device.type == "cpu" and self.dtype == torch.float32:
            x = x.contiguous(memory_format=torch.channels_last)
            # channels-last out (NCHW values): the neurons step over it as it is
            return torch.mkldnn_convolution(
                x, self.weight, None, list(padding), list(stride), list(g.dilation), g.groups
            )
        cout, cin_g, kh, kw = self.int_weight_shape
        b, _, h, w = x.shape
        cols = F.unfold(x, (kh, kw), dilation=g.dilation, padding=padding, stride=stride)
        hout = (h + 2 * padding[0] - g.dilation[0] * (kh - 1) - 1) // stride[0] + 1
        wout = (w + 2 * padding[1] - g.dilation[1] * (kw - 1) - 1) // stride[1] + 1
        k = cin_g * kh * kw
        cols = cols.view(b, g.groups, k, hout * wout)
        wg = self.weight.reshape(g.groups, cout // g.groups, k)
        out = torch.cat([torch.matmul(wg[i], cols[:, i]) for i in range(g.groups)], dim=1)
        return out.reshape(b, cout, hout, wout)


def expand_blocks(weight: torch.Tensor, p: int) -> torch.Tensor:
    """Block kernel ``(Cout, Cin, p*kH, p*kW)`` whose ``p x p`` blocks repeat each weight of
    ``weight`` (Cout, Cin, kH, kW); the inverse of ``w[:, :, ::p, ::p]`` on a block kernel."""
    if p == 1:
        return weight
    return weight.repeat_interleave(p, dim=2).repeat_interleave(p, dim=3)


def block_factor(weight: torch.Tensor, geometry: ConvGeometry | None) -> int:
    """Largest p >= 1 such that the conv is ``p x p`` sum pooling followed by a compact conv.

    ``weight`` (Cout, Cin/groups, kH, kW) must consist of constant ``p x p`` blocks, and stride
    and padding must be multiples of p (dilation 1), so every kernel window is aligned with the
    pooling grid of the padded input.
    """
    cout, cin, kh, kw = weight.shape
    for p in range(min(kh, kw), 1, -1):
        if kh % p or kw % p or not _block_aligned(geometry, p):
            continue
        blocks = weight.reshape(cout, cin, kh // p, p, kw // p, p)
        if bool((blocks == blocks[:, :, :, :1, :, :1]).all()):
            return p
    return 1


def _block_aligned(geometry: ConvGeometry | None, p: int) -> bool:
    """Whether every window of this conv is aligned with a ``p x p`` pooling grid of its padded
    input: undilated, stride and padding multiples of p."""
    if geometry is None or geometry.dilation != (1, 1):
        return False
    return not any(d % p for d in (*geometry.stride, *geometry.padding))


def _check_block(kind: str, block: int, geometry: ConvGeometry | None) -> None:
    """A compact kernel needs an undilated conv whose stride and padding are multiples of it."""
    if kind != "conv" or not _block_aligned(geometry, block):
        raise ValueError(
            f"block = {block} needs an undilated conv geometry whose stride and padding are "
            f"multiples of it (got {geometry})"
        )
