"""The integer grid shared by training's SNN branch and export: one definition, pure functions.

A float layer with per-step weights ``w`` (Cout, fan_in...), per-step bias ``b`` (Cout,) and one
threshold ``th`` becomes Loihi integers with a per-layer scale ``s`` (float units per integer):
``W = round(w / s)`` (signed ``weight_bits``), ``bias_mant = round(b / s)`` (13-bit) and
``vThMant = floor(th / s)`` (17-bit). The IF neuron then computes in integers exactly what the
float neuron computes on the rounded values: ``v += W.x + bias_mant``, spike when ``v > vThMant``.

``choose_scale`` also keeps the integer network inside the chip's 24-bit ``u``/``v``: the synaptic
input of one step stays below 2^17 (``a << 6`` < 2^23, no wrap), and a readout layer's ``v``
never reaches its threshold or saturates over the whole window.
All functions take and return torch tensors and are differentiable where the result is float.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from snn2loihi import quant_screen
from snn2loihi.loihi import (
    BIAS_MAX,
    BIAS_MIN,
    INT32_SAFE_INPUT,
    VTH_MAX,
    WEIGHT_MAX,
    worst_case_input,
)

READOUT_V_MAX = VTH_MAX - 1  # a readout neuron's |v| (mantissa units) stays at or below this
DEFAULT_WEIGHT_BITS = 8


def weight_limits(bits: int = DEFAULT_WEIGHT_BITS) -> tuple[int, int]:
    """Signed integer weight range ``(qmin, qmax)`` for ``bits`` (2..9).

    9 bits use the schema's full range, except that +255 is left out: Lava clips mixed-sign
    dense weights to 254.
    """
    if not 2 <= bits <= 9:
        raise ValueError(f"weight_bits = {bits} must be in 2..9")
    return -(2 ** (bits - 1)), min(2 ** (bits - 1) - 1, WEIGHT_MAX - 1)


def fold_input_normalization(
    weight: torch.Tensor,
    bias: torch.Tensor,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    pixel_scale: float = 1 / 255,
    repeat: int = 1,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Fold ``x_n = (x * pixel_scale - mean_c) / std_c`` into the first layer.

    ``weight``: conv (Cout, C, kH, kW) or dense (Nout, C*H*W) in CHW order; ``bias``: (Cout,).
    Returns ``(w, b)`` such that ``w . x + b == weight . x_n + bias`` on raw pixels ``x``
    (0..255). For a padded conv this holds where the kernel does not overlap the padding; the
    training model applies this folded form itself, so its padding is raw-zero pixels as on chip.
    ``repeat``: how often each weight occurs in the kernel as run (``p^2`` for the compact kernel
    of a ``p x p`` block kernel); the bias then counts every occurrence.
    """
    c = len(mean)
    m = torch.as_tensor(mean, dtype=weight.dtype, device=weight.device)
    sd = torch.as_tensor(std, dtype=weight.dtype, device=weight.device)
    # contiguous first: the bias sum must not follow the memory layout (a channels-last
    # kernel would sum in another order and round differently from the exported model's)
    grouped = weight.contiguous().reshape(weight.shape[0], c, -1)
    w = grouped * (pixel_scale / sd).view(1, c, 1)
    b = bias - (grouped * (m / sd).view(1, c, 1)).sum(dim=(1, 2)) * repeat
    return w.reshape(weight.shape), b


def channel_ratios(thresholds: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel factors ``th / th_c`` (Cout,) and the layer threshold ``th = max(th_c)``
    (0-d) that :func:`fold_channel_thresholds` scales channel c's weights and bias by."""
    th = thresholds.max()
    return th / thresholds, th


def fold_channel_thresholds(
    weight: torch.Tensor, bias: torch.Tensor, thresholds: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Fold per-channel thresholds ``th_c`` (Cout,) into one layer threshold (exact for IF).

    Channel c's weights and bias are scaled by ``th / th_c`` with ``th = max(th_c)``, so a
    neuron crosses ``th`` exactly when the unscaled one crosses ``th_c``.
    Returns ``(weight, bias, th)`` with ``th`` a 0-d tensor.
    """
    ratio, th = channel_ratios(thresholds)
    shape = (-1,) + (1,) * (weight.ndim - 1)
    return weight * ratio.view(shape), bias * ratio, th


def choose_scale(
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    *,
    weight_bits: int = DEFAULT_WEIGHT_BITS,
    input_max: int = 1,
    threshold: float | None = None,
    readout_steps: int | None = None,
    repeat: int = 1,
) -> float:
    """Per-layer scale ``s`` (float units per integer unit) of a layer's integer grid.

    The smallest ``s`` such that: every weight fits ``weight_bits``; every bias fits 13 bits;
    ``threshold / s`` fits 17 bits; one step's input ``|W.x|`` stays <= ``INT32_SAFE_INPUT`` for inputs in
    ``0..input_max`` (after rounding); and, for a readout layer (``readout_steps`` = T),
    ``T * (|W.x| + |bias|)`` stays <= ``READOUT_V_MAX`` so ``v`` never spikes nor saturates.
    ``repeat``: how often each weight occurs in the kernel as run (``p^2`` for the compact
    kernel of a ``p x p`` block kernel: row sums and fan-in count every occurrence).
    """
    w = weight.detach().double().reshape(weight.shape[0], -1)
    b = torch.zeros(w.shape[0], dtype=torch.float64) if bias is None else bias.detach().double()
    stats = _RowStats(worst_case_input(w), float(w.abs().max()), w.shape[1])
    return _scale(stats, b.to(w.device), weight_bits, input_max, threshold, readout_steps, repeat)


@dataclass
class _RowStats:
    """What :func:`choose_scale` reads of a layer's float64 weights (Cout, fan_in): per row
    ``max(sum w+, sum |w-|)`` (:func:`~snn2loihi.loihi.worst_case_input` of spikes, each weight
    once), the largest ``|weight|``, and the fan-in (one row's length). Without a
    readout bound only the largest row value is read: ``row_max`` may then hold just the rows
    that can have it (:func:`quantize_layer`'s float32 screen)."""

    row_max: torch.Tensor
    w_abs_max: float
    fan_in: int


def readout_max_steps(fan_in: int, input_max: int = 1) -> int:
    """The most steps T for which :func:`choose_scale` can keep a readout of ``fan_in`` inputs
    within ``READOUT_V_MAX``: its budget per step, ``READOUT_V_MAX / T`` less the rounding slack
    ``fan_in * input_max / 2`` and 1/2, must leave at least one mantissa unit."""
    return int(READOUT_V_MAX // (0.5 * fan_in * input_max + 1.5))


def _scale(stats: _RowStats, b, weight_bits, input_max, threshold, readout_steps, repeat) -> float:
    """:func:`choose_scale` from the weights' :class:`_RowStats` and the float64 bias ``b``."""
    fan_in = stats.fan_in * repeat
    _, qmax = weight_limits(weight_bits)
    row_sum = stats.row_max * repeat  # every occurrence of each weight in the kernel as run
    round_slack = 0.5 * fan_in * input_max  # rounding can add 1/2 per weight
    candidates = [
        stats.w_abs_max / qmax,
        float(b.abs().max()) / BIAS_MAX,
        float(row_sum.max()) * input_max / max(INT32_SAFE_INPUT - round_slack, 1.0),
    ]
    if threshold is not None:
        candidates.append(float(threshold) / VTH_MAX)
    if readout_steps is not None:
        per_step = float((row_sum * input_max + b.abs()).max())
        budget = READOUT_V_MAX / readout_steps - round_slack - 0.5
        candidates.append(per_step / max(budget, 1.0))
    scale = max(candidates)
    return scale if scale > 0 and math.isfinite(scale) else 1.0


QUANT_BLOCK = 2**18  # float64 weights per row block of quantize_layer (2 MiB: stays in cache)


def quantize_layer(
    weight: torch.Tensor,
    bias: torch.Tensor,
    thresholds: torch.Tensor | None = None,
    *,
    weight_bits: int = DEFAULT_WEIGHT_BITS,
    input_max: int = 1,
    readout_steps: int | None = None,
    repeat: int = 1,
    row_scale: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, float | None, float]:
    """One layer onto the integer grid: exactly :func:`fold_channel_thresholds` (with
    per-channel ``thresholds``, else none), :func:`choose_scale`, :func:`quantize_weight` (as
    :func:`weight_dtype`) and :func:`quantize_bias` of the float64-widened ``weight`` (Cout, ...)
    and ``bias`` (Cout,), computed in row blocks of about :data:`QUANT_BLOCK` weights: each
    block is widened, folded, summed and later quantized while it is in cache, where the
    whole-tensor passes read and write the float64 layer from memory about ten times.
    Every value equals the unblocked composition's (elementwise operations, and each row's sums
    reduced in the same order). On a GPU the whole layer is one block.

    Float32 weights of a spiking layer on the CPU are screened in float32 first
    (:mod:`snn2loihi.quant_screen`): the float64 work is then done only for the blocks holding a
    row that can have the largest row sum and for the values near a rounding boundary, with the
    same results (faster: bench/results/tuned_constants.md).
    ``row_scale`` (Cout,), in ``weight``'s dtype: the layer's weights are ``weight *
    row_scale`` per output row (BatchNorm's factor, which training folds here: the product is
    formed block by block, each value the same float as in the whole product, so the folded
    layer is never made in memory).

    Returns ``(W, bias_mant, th, scale)``; ``th`` (the folded layer threshold) is None without
    ``thresholds``."""
    n = weight.shape[0]
    rows = weight.detach().reshape(n, -1)
    row_scale = _checked_row_scale(row_scale, rows)
    ratio = th = None
    b = bias.detach().double()
    if thresholds is not None:
        ratio, th_t = channel_ratios(thresholds.detach().double())
        b, th = b * ratio, float(th_t)
    step = max(1, QUANT_BLOCK // max(1, rows.shape[1])) if rows.device.type == "cpu" else n

    def block(lo: int) -> torch.Tensor:  # rows lo.. scaled, widened (and folded), float64
        part = slice(lo, lo + step)
        column = [None if t is None else t[part].view(-1, 1) for t in (row_scale, ratio)]
        return _widened(rows[part], *column)

    stats, screened = _layer_stats(rows, ratio, row_scale, step, block, readout_steps is None)
    scale = _scale(stats, b, weight_bits, input_max, th, readout_steps, repeat)
    out = _round_rows(rows, scale, weight_bits, step, block, screened, ratio, row_scale)
    return out.view(weight.shape), quantize_bias(b, scale), th, scale


def _layer_stats(rows, ratio, row_scale, step, block, screen) -> tuple[_RowStats, bool]:
    """The row statistics :func:`_scale` reads, and whether the float32 screen produced them:
    with ``screen`` (not a readout, whose scale reads every row's sum with its bias) and a
    usable screen, only the blocks holding a row that can have the largest sum are widened,
    each exactly as :func:`_row_stats` would; otherwise every block."""
    if screen and quant_screen.usable(rows, ratio):
        summary = quant_screen.summarize(rows, row_scale)
        candidates = quant_screen.top_row_candidates(rows, ratio, summary, row_scale)
        if candidates is not None:
            starts = sorted({int(i) // step * step for i in candidates})
            tops = torch.cat([worst_case_input(block(lo)) for lo in starts])
            largest = quant_screen.largest_magnitude(summary, ratio)
            return _RowStats(tops, largest, rows.shape[1]), True
    return _row_stats(rows, step, block), False


def _checked_row_scale(row_scale: torch.Tensor | None, rows: torch.Tensor):
    """``row_scale`` detached, refused unless it is (Cout,) in the dtype of ``rows`` (Cout, K)."""
    if row_scale is None:
        return None
    row_scale = row_scale.detach()
    n = rows.shape[0]
    if row_scale.shape != (n,) or row_scale.dtype != rows.dtype:
        raise ValueError(
            f"row_scale must be ({n},) {rows.dtype} like the weights' rows, "
            f"not {tuple(row_scale.shape)} {row_scale.dtype}"
        )
    return row_scale


def _round_rows(rows, scale, weight_bits, step, block, screened, ratio, row_scale):
    """The integer weights (Cout, K) of ``rows`` at ``scale``: block by block (``block(lo)``:
    rows ``lo .. lo + step`` widened), or, where the float32 screen ran (``screened``), rounded
    there and redone in float64 only for the values near a rounding boundary."""
    n = rows.shape[0]
    out = torch.empty(rows.shape, dtype=weight_dtype(weight_bits), device=rows.device)
    redo = None
    if screened:
        factor = torch.ones(n, dtype=torch.float64) if ratio is None else ratio
        limits = weight_limits(weight_bits)
        redo = quant_screen.round_scaled(rows, factor / scale, *limits, out, row_scale)
    if redo is None:
        for lo in range(0, n, step):
            out[lo : lo + step] = quantize_weight(block(lo), scale, weight_bits, out.dtype)
    elif redo[0].numel():  # the values near a rounding boundary, as the blocks compute them
        i, j = redo
        w = _widened(rows[i, j], *[None if t is None else t[i] for t in (row_scale, ratio)])
        out[i, j] = quantize_weight(w, scale, weight_bits, out.dtype)
    return out


def _widened(
    w: torch.Tensor, row_scale: torch.Tensor | None, ratio: torch.Tensor | None
) -> torch.Tensor:
    """Weights ``w`` as the float64 path quantizes them: times ``row_scale`` (in ``w``'s dtype),
    widened to float64, times ``ratio`` (float64); each factor broadcasts against ``w`` (a row
    block's column, or one factor per gathered value) or is None. One composition for the blocks
    and the values redone after the float32 screen, so both give the same floats."""
    w = w if row_scale is None else w * row_scale
    return w.double() if ratio is None else w.double() * ratio


def _row_stats(rows: torch.Tensor, step: int, block) -> _RowStats:
    """:class:`_RowStats` of every row of ``rows`` (Cout, fan_in), read through ``block(lo)``
    (rows ``lo..lo + step`` widened to float64 and folded)."""
    n = rows.shape[0]
    row_max = torch.empty(n, dtype=torch.float64, device=rows.device)
    largest = []  # per block (a NaN weight makes the layer's NaN, as it did)
    for lo in range(0, n, step):
        w = block(lo)
        row_max[lo : lo + step] = worst_case_input(w)
        largest.append(w.abs().max())
    return _RowStats(row_max, float(torch.stack(largest).max()), rows.shape[1])


def quantize_weight(
    weight: torch.Tensor,
    scale: float,
    weight_bits: int = DEFAULT_WEIGHT_BITS,
    dtype: torch.dtype = torch.int64,
) -> torch.Tensor:
    """Integer weights ``round(weight / scale)`` clipped to ``weight_bits``, as ``dtype``
    (int64; :func:`weight_dtype` is the narrowest that holds them)."""
    qmin, qmax = weight_limits(weight_bits)
    return (weight.detach() / scale).round_().clamp_(qmin, qmax).to(dtype)


def weight_dtype(weight_bits: int = DEFAULT_WEIGHT_BITS) -> torch.dtype:
    """The narrowest integer dtype of ``weight_bits``-bit weights: int8 up to 8 bits."""
    return torch.int8 if weight_bits <= 8 else torch.int16


def quantize_bias(bias: torch.Tensor, scale: float) -> torch.Tensor:
    """Per-step ``bias_mant = round(bias / scale)`` clipped to 13 bits (int64)."""
    return torch.round(bias.detach() / scale).clamp(BIAS_MIN, BIAS_MAX).to(torch.int64)


def quantize_threshold(threshold: float, scale: float) -> int:
    """``vThMant = floor(threshold / scale)``: integer v exceeds it iff ``v * scale > threshold``."""
    return int(min(max(math.floor(float(threshold) / scale), 0), VTH_MAX))
