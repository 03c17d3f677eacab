"""Exact int8 synapse kernels: im2col + ``int8 x int8 -> int32`` GEMM (``torch._int_mm``).

Loihi's synapse multiplies 8-bit weights by binary spikes (or small pooled spike counts) and
accumulates exactly. An int8 GEMM with int32 accumulation is exact for it whenever every
operand fits int8 and ``max_row(sum |w|) * max|x| < 2^31``; no 2^24 bound as in float32.

Convolutions with non-negative inputs up to 255 (spikes, pooled spike counts, pixels) also run
as oneDNN's int8 direct convolution (:func:`conv2d_onednn`: u8 x s8 -> s32, no im2col) where
this CPU computes it exactly (:func:`onednn_conv_exact`) and every sum is below 2^24 (its output
is float32).

Layout: activations channels-last. A conv input ``(B, C, H, W)`` is padded once in int8 as
``(B, H + 2p, W + 2p, C)``; its patches ``(B * Hout * Wout, kH * kW * C/groups)`` are gathered
in chunks of about :data:`COLS_CHUNK_BYTES` (cache-sized) and multiplied by the packed kernel
``(kH * kW * C/groups, Cout/groups)``. Outputs are int32 ``(B, Cout, Hout, Wout)`` in
channels-last memory (a permuted view; element values are what matter to the callers).
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np
import torch
import torch.nn.functional as F

INT8_MAX = 127
INT8_MIN = -128
INT8_MIN_FANIN = 64  # fan-in below which im2col costs more than int8 saves (docs/benchmarks.md)
COLS_CHUNK_BYTES = 2**22  # im2col rows gathered per GEMM: about 4 MiB of int8 patches
INT32_SUM_LIMIT = 2**31
INT8_LIMB_BITS = 7  # bits per limb: 0..127, the top limb signed -128..127
INT8_MAX_LIMBS = 3  # inputs needing more limbs than this keep the float kernels


def int8_fits(w: torch.Tensor) -> bool:
    """True when every value of ``w`` is an int8."""
    return w.numel() == 0 or (int(w.min()) >= INT8_MIN and int(w.max()) <= INT8_MAX)


def limbs_needed(largest: int) -> int:
    """How many 7-bit limbs (:func:`split_limbs`) hold inputs with ``|x| <= largest``
    (1: plain int8)."""
    if largest <= INT8_MAX:
        return 1
    return -(-int(largest).bit_length() // INT8_LIMB_BITS)


def split_limbs(s: torch.Tensor, n: int) -> torch.Tensor:
    """Integers ``s`` (B, ...) with ``-2^(7n) <= s < 2^(7n)`` -> int8 limbs (n * B, ...),
    limb-major: limb i < n - 1 is ``(s >> 7 i) & 127`` (0..127), the last ``s >> 7 (n - 1)``
    (-128..127, arithmetic shift), so ``s = sum_i limb_i << 7 i``."""
    x = s if s.dtype in (torch.int32, torch.int64) else s.to(torch.int32)
    parts = torch.empty((n, *s.shape), dtype=torch.int8, device=s.device)
    for i in range(n):  # every value written is already in int8's range (no cast rounding)
        limb = x >> (INT8_LIMB_BITS * i) if i else x
        parts[i] = limb & INT8_MAX if i < n - 1 else limb
    return parts.view(n * s.shape[0], *s.shape[1:])


def combine_limbs(out: torch.Tensor, n: int, dtype: torch.dtype) -> torch.Tensor:
    """Per-limb results (n * B, ...) int32 -> ``sum_i out_i << 7 i`` (B, ...) in ``dtype``."""
    parts = out.reshape(n, out.shape[0] // n, *out.shape[1:])
    acc = parts[n - 1].to(dtype)
    for i in range(n - 2, -1, -1):
        acc = (acc << INT8_LIMB_BITS).add_(parts[i])
    return acc


def trailing_zero_bits(w: np.ndarray | torch.Tensor, cap: int) -> int:
    """The largest ``n <= cap`` such that every integer of ``w`` is a multiple of ``2^n``
    (``cap`` when all are zero): the trailing zero bits of the bitwise OR of all values."""
    if isinstance(w, torch.Tensor):
        w = w.detach().cpu().numpy()
    w = np.asarray(w, dtype=np.int64).ravel()
    bits = int(np.bitwise_or.reduce(w)) if w.size else 0
    if bits == 0:
        return cap
    return min(cap, (bits & -bits).bit_length() - 1)


def common_shift(w: torch.Tensor) -> int:
    """The largest ``z <= 8`` with every weight a multiple of ``2^z`` (0 for all-zero ``w``)."""
    z = trailing_zero_bits(w, 8)
    return 0 if z == 8 and not bool(torch.any(w)) else z


def pack_conv(weight: torch.Tensor, groups: int) -> torch.Tensor:
    """``(Cout, Cin/g, kH, kW)`` int -> ``(g, kH * kW * Cin/g, Cout/g)`` int8, patch order
    (kH, kW, C) to match :func:`conv2d_int8`'s channels-last patches. On the CPU each group's
    matrix is the transposed view of its (Cout/g, kH * kW * Cin/g) rows, which ``_int_mm``
    takes as fast as a copy and costs a fraction of one to make (training packs every step)."""
    cout, cin_g, kh, kw = weight.shape
    w = weight.to(torch.int8).reshape(groups, cout // groups, cin_g, kh, kw)
    if w.device.type == "cpu":
        rows = w.permute(0, 1, 3, 4, 2).clone(memory_format=torch.contiguous_format)  # own copy
        return rows.view(groups, cout // groups, kh * kw * cin_g).transpose(1, 2)
    return w.permute(0, 3, 4, 2, 1).reshape(groups, kh * kw * cin_g, cout // groups).contiguous()


def as_int8(x: torch.Tensor) -> torch.Tensor:
    """``x`` as int8 values: bool reinterpreted in place (PyTorch's bool conversions are not
    vectorized: about 3 ns per element against 0.3), anything else converted."""
    return x.view(torch.int8) if x.dtype == torch.bool else x.to(torch.int8)


def pack_dense(weight: torch.Tensor) -> torch.Tensor:
    """``(Nout, Nin)`` int -> ``(Nin, Nout)`` int8 (on the CPU the transposed view of the
    contiguous rows, as :func:`pack_conv`)."""
    if weight.device.type == "cpu":  # an own copy of the rows
        return weight.to(torch.int8, memory_format=torch.contiguous_format, copy=True).t()
    return weight.to(torch.int8).t().contiguous()


def linear_int8(x: torch.Tensor, packed: torch.Tensor) -> torch.Tensor:
    """``x`` (B, Nin) int8 or bool times ``packed`` (Nin, Nout) int8 -> (B, Nout) int32."""
    return torch._int_mm(as_int8(x).contiguous(), packed)


def _padded_nhwc(x: torch.Tensor, padding: tuple[int, int]) -> torch.Tensor:
    """``x`` (B, C, H, W) -> int8 (B, H + 2 pH, W + 2 pW, C) with zero borders."""
    b, c, h, w = x.shape
    ph, pw = padding
    xn = as_int8(x.permute(0, 2, 3, 1))
    if ph == 0 and pw == 0:
        return xn.contiguous()
    out = torch.zeros((b, h + 2 * ph, w + 2 * pw, c), dtype=torch.int8, device=x.device)
    out[:, ph : ph + h, pw : pw + w] = xn
    return out


def sum_pool_nhwc(xp: torch.Tensor, p: int) -> torch.Tensor:
    """Non-overlapping ``p x p`` sums of an int8 NHWC tensor (trailing partial blocks dropped);
    the caller guarantees the sums fit int8."""
    _, h, w, _ = xp.shape
    xp = xp[:, : h - h % p, : w - w % p]
    out = xp[:, ::p, ::p].clone()
    for i in range(p):
        for j in range(p):
            if i or j:
                out += xp[:, i::p, j::p]
    return out


def conv2d_int8(
    x: torch.Tensor,
    packed: torch.Tensor,
    kernel: tuple[int, int],
    stride: tuple[int, int],
    padding: tuple[int, int],
    dilation: tuple[int, int],
    pool: int = 1,
) -> torch.Tensor:
    """Exact cross-correlation of ``x`` (B, C, H, W) (int8-valued: bool, int) with the packed
    kernel ``(groups, kH * kW * C/groups, Cout/groups)`` -> int32 (B, Cout, Hout, Wout).

    ``pool`` > 1: the kernel is the compact form of a block kernel (average pooling folded into
    the conv): the padded input is first summed over ``pool x pool`` blocks, and ``stride``
    and ``padding`` are in units of the unpooled input (multiples of ``pool``).
    """
    groups, k, cout_g = packed.shape
    kh, kw = kernel
    xp = _padded_nhwc(x, padding)
    sh, sw = stride
    if pool > 1:
        xp = sum_pool_nhwc(xp, pool)
        sh, sw = sh // pool, sw // pool
    b, hp, wp, c = xp.shape
    dh, dw = dilation
    hout = (hp - dh * (kh - 1) - 1) // sh + 1
    wout = (wp - dw * (kw - 1) - 1) // sw + 1
    cin_g = c // groups
    out = torch.empty((b, hout, wout, groups * cout_g), dtype=torch.int32, device=x.device)
    sb, s_h, s_w, sc = xp.stride()
    rows = hout * wout
    chunk = max(1, COLS_CHUNK_BYTES // max(1, rows * k))
    for lo in range(0, b, chunk):
        hi = min(b, lo + chunk)
        patches = xp[lo:hi].as_strided(
            (hi - lo, hout, wout, kh, kw, c),
            (sb, s_h * sh, s_w * sw, s_h * dh, s_w * dw, sc),
        )
        for g in range(groups):
            cols = patches[..., g * cin_g : (g + 1) * cin_g].reshape(-1, k)
            res = torch._int_mm(cols, packed[g])
            if groups == 1:
                out[lo:hi].view(-1, cout_g).copy_(res)
            else:
                out[lo:hi, ..., g * cout_g : (g + 1) * cout_g] = res.view(
                    hi - lo, hout, wout, cout_g
                )
    return out.permute(0, 3, 1, 2)


ONEDNN_SUM_LIMIT = 2**24  # oneDNN's int8 conv returns float32: exact below this
# Convs with fewer output positions per frame than this run faster as im2col + _int_mm than
# with oneDNN's direct kernel (measured: bench/results/tuned_constants.md)
ONEDNN_MIN_OUTPUT = 5
# oneDNN first reorders (prepacks) the weights, so a conv applied once (training rebuilds its
# synapses every step) takes it only where its GEMM has a row (frame x output position) per
# this many weights (measured: bench/results/tuned_constants.md)
ONEDNN_PREPACK_WEIGHTS_PER_ROW = 512


def onednn_pays_back(weights: int, rows: int) -> bool:
    """Whether oneDNN's weight prepacking pays back for one convolution of ``weights`` int8
    weights over ``rows`` output rows (frames x output positions)."""
    return rows * ONEDNN_PREPACK_WEIGHTS_PER_ROW >= weights


def pooled_geometry(geometry, pool: int):
    """The compact conv that follows ``pool x pool`` sum pooling of the padded input (see
    :func:`conv2d_int8`): stride divided by ``pool``, no padding (``geometry`` itself for 1)."""
    if pool == 1:
        return geometry
    stride = tuple(s // pool for s in geometry.stride)
    return dataclasses.replace(geometry, stride=stride, padding=(0, 0))


def onednn_prepack(weight: torch.Tensor, geometry, pool: int = 1) -> tuple[torch.Tensor, ...]:
    """``(Cout, Cin/groups, kH, kW)`` int8-valued weights -> (oneDNN's packed int8 kernel,
    per-channel scales of 1.0, zero points of 0) for :func:`conv2d_onednn` with ``geometry``
    (a ConvGeometry) and ``pool``."""
    g = pooled_geometry(geometry, pool)
    scales = torch.ones(weight.shape[0], dtype=torch.float32)
    w = weight.to(torch.int8).contiguous(memory_format=torch.channels_last)
    packed = torch.ops.onednn.qconv_prepack(
        w, scales, 1.0, 0, list(g.stride), list(g.padding), list(g.dilation), g.groups, None
    )
    return packed, scales, torch.zeros(weight.shape[0], dtype=torch.int64)


def conv2d_onednn(
    x: torch.Tensor, packed: tuple[torch.Tensor, ...], geometry, pool: int = 1
) -> torch.Tensor:
    """Exact cross-correlation of ``x`` (B, C, H, W) with values in 0..255 (bool or integer)
    by oneDNN's int8 direct convolution -> float32 (B, Cout, Hout, Wout) in channels-last
    memory; exact where every partial sum is below :data:`ONEDNN_SUM_LIMIT` (the caller's
    bound) on a CPU where :func:`onednn_conv_exact` holds. ``pool`` > 1: the packed kernel is
    the compact form of a block kernel, as for :func:`conv2d_int8` (pooled sums below 128)."""
    if pool > 1:
        x = sum_pool_nhwc(_padded_nhwc(x, geometry.padding), pool).permute(0, 3, 1, 2)
    g = pooled_geometry(geometry, pool)
    kernel, scales, zero_points = packed
    narrow = x.dtype in (torch.bool, torch.int8)  # values 0..127 here: the same bytes
    xu = x.view(torch.uint8) if narrow else x.to(torch.uint8)
    xu = xu.contiguous(memory_format=torch.channels_last)
    return torch.ops.onednn.qconv2d_pointwise(
        xu, 1.0, 0, kernel, scales, zero_points, None, list(g.stride), list(g.padding),
        list(g.dilation), g.groups, 1.0, 0, torch.float32, "none", [], "",
    )  # fmt: skip


@functools.cache
def onednn_conv_exact() -> bool:
    """Whether oneDNN's int8 convolution is present and exact on this CPU. CPUs without VNNI or
    AMX sum u8 x s8 pairs in int16 with saturation; this checks the worst case (every input
    255, weights -128 and 127, pairs far beyond int16, groups, stride, padding, dilation)
    against the float64 result, once per process."""
    from snn2loihi.synapse import ConvGeometry  # the geometry record (no cycle at import)

    if not torch.backends.mkldnn.is_available():
        return False
    w = torch.full((4, 8, 3, 3), -128, dtype=torch.int8)
    w[1::2] = 127
    w[2, :, 1] = 127
    x = torch.full((2, 16, 7, 6), 255, dtype=torch.uint8)
    x[1, :, ::2] = 3
    geometry = ConvGeometry((2, 1), (1, 2), (1, 2), 2)
    try:
        got = conv2d_onednn(x, onednn_prepack(w, geometry), geometry)
    except (AttributeError, RuntimeError, NotImplementedError):  # no such op in this build
        return False
    ref = F.conv2d(x.double(), w.double(), None, (2, 1), (1, 2), (1, 2), 2)
    return bool(torch.equal(got.double(), ref))
