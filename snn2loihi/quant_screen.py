"""Float32 screens for the float64 quantizer: which rows need the exact float64 computation.

:func:`snn2loihi.quant.quantize_layer` works in float64 so that training's SNN branch and export
give the same integers. Most of that work can be done in float32 (half the bytes, twice the SIMD
width) with a bound on its rounding error: these screens do it, and return the rows (of the
largest row sum) and the values (of the rounding) whose float32 result could differ from the
float64 one. The caller computes those in float64, so every result is the float64
composition's, bit for bit.

``rows``: a layer's float32 weights (Cout, fan_in), contiguous, on the CPU; ``ratio``: the
per-row float64 factor (Cout,) that the float64 path multiplies each row by (all positive and
finite), or None for none. ``row_scale``: a float32 factor (Cout,) that the weights as
quantized carry per row (BatchNorm's, folded by the caller's convention ``rows * row_scale``
in float32): each block is scaled while it is in cache, into the same floats as the whole
product would give; None for none.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

U32 = 2.0**-24  # unit roundoff of float32
U64 = 2.0**-53  # unit roundoff of float64
MIN_WEIGHTS = 2**19  # smaller layers: the float64 path (a block or two) is as fast
MAX_FAN_IN = 2**18  # longer rows: the float32 sum bound gets loose (m * U32 -> 1)
BRACKET = 2.0**-21  # relative widening of the rounding bracket (4x float32's 2^-23 error)
FACTOR_RANGE = (2.0**-100, 2.0**100)  # per-row factors whose float32 products stay normal
SCREEN_BLOCK = 2**19  # float32 weights per row block of the passes (2 MiB: stays in cache)


def usable(rows: torch.Tensor, ratio: torch.Tensor | None) -> bool:
    """Whether the screens apply and pay: float32 rows (contiguous, on the CPU, at least
    :data:`MIN_WEIGHTS` weights, rows at most :data:`MAX_FAN_IN` long) and a positive finite
    ``ratio``."""
    return (
        rows.dtype == torch.float32
        and rows.device.type == "cpu"
        and rows.is_contiguous()
        and rows.numel() >= MIN_WEIGHTS
        and rows.shape[1] <= MAX_FAN_IN
        and (ratio is None or bool(((ratio > 0) & torch.isfinite(ratio)).all()))
    )


@dataclass
class RowSummary:
    """Per row of float32 ``rows`` (Cout, fan_in), float32 (Cout,): the largest ``|w|`` (exact),
    ``sum |w|`` and ``sum w`` (float32 sums, any order)."""

    abs_max: torch.Tensor
    abs_sum: torch.Tensor
    total: torch.Tensor


def scaled_rows(
    rows: torch.Tensor, row_scale: torch.Tensor | None, lo: int, hi: int, out: torch.Tensor
) -> torch.Tensor:
    """Rows ``lo..hi`` of ``rows * row_scale.view(-1, 1)`` (each product one float32 rounding,
    as in the whole product), written into ``out`` (at least ``hi - lo`` rows); the rows
    themselves (a view) when ``row_scale`` is None."""
    if row_scale is None:
        return rows[lo:hi]
    return torch.mul(rows[lo:hi], row_scale[lo:hi].view(-1, 1), out=out[: hi - lo])


def summarize(rows: torch.Tensor, row_scale: torch.Tensor | None = None) -> RowSummary:
    """:class:`RowSummary` of ``rows`` (times ``row_scale``), block by block of about
    :data:`SCREEN_BLOCK` weights: the reductions read each block (and its ``|w|``) while it
    is in cache."""
    n, m = rows.shape
    abs_max, abs_sum, total = (torch.empty(n, dtype=torch.float32) for _ in range(3))
    step = max(1, SCREEN_BLOCK // m)
    scratch = torch.empty((min(step, n), m), dtype=torch.float32)
    scaled = None if row_scale is None else torch.empty_like(scratch)
    for lo in range(0, n, step):
        hi = min(n, lo + step)
        block = scaled_rows(rows, row_scale, lo, hi, scaled)
        torch.sum(block, 1, out=total[lo:hi])
        magnitude = torch.abs(block, out=scratch[: hi - lo])
        torch.amax(magnitude, 1, out=abs_max[lo:hi])
        torch.sum(magnitude, 1, out=abs_sum[lo:hi])
    return RowSummary(abs_max, abs_sum, total)


def largest_magnitude(summary: RowSummary, ratio: torch.Tensor | None) -> float:
    """The largest ``|rows.double() * ratio|``, exactly: a positive factor and float64 rounding
    are monotone, so each row's largest is its float32 largest times it."""
    top = summary.abs_max.double()
    return float((top if ratio is None else top * ratio).max())


def _relative_error(fan_in: int, unit: float) -> float:
    """A bound, relative to ``max(sum w+, sum |w-|)`` of a row times ``ratio``, on the
    difference between :func:`_approximate_tops`' estimate (sums with unit roundoff ``unit``)
    and the float64 value that :func:`snn2loihi.loihi.worst_case_input` gets (any summation
    order).

    The estimate: ``sum |w|`` and ``sum w`` are each within ``g * sum |w|`` of exact, with
    ``g = m u / (1 - m u)``, and ``max(P, N) = (sum |w| + |sum w|) / 2 >= sum |w| / 2``, so it
    is within ``2 g``, plus three float64 roundings. The float64 value: ``m`` rounded products
    summed, within ``(2 m + 2) U64``.
    """
    m = fan_in + 2
    g = m * unit / (1 - m * unit)
    return 2 * g + (2 * m + 8) * U64


def _approximate_tops(
    abs_sum: torch.Tensor, total: torch.Tensor, ratio: torch.Tensor | None
) -> torch.Tensor:
    """Per row, ``max(sum w+, sum |w-|)`` as ``(sum |w| + |sum w|) / 2`` from the sums
    ``abs_sum`` and ``total``, times ``ratio``: float64 (Cout,)."""
    tops = (abs_sum.double() + total.double().abs()) * 0.5
    return tops if ratio is None else tops * ratio


def _near_top(tops: torch.Tensor, error: float) -> torch.Tensor:
    """Indices of the rows that can hold the largest value, for estimates ``tops`` within
    ``error`` (relative, the sum of the estimate's and the float64 value's bounds) of it:
    ``t_r >= max(t) (1 - 2 e) / (1 + 2 e)``. The factor 2 covers the products of the two
    bounds and this comparison's own rounding."""
    floor = float(tops.max()) * (1 - 2 * error) / (1 + 2 * error)
    return (tops >= floor).nonzero().flatten()


def top_row_candidates(
    rows: torch.Tensor,
    ratio: torch.Tensor | None,
    summary: RowSummary,
    row_scale: torch.Tensor | None = None,
) -> torch.Tensor | None:
    """Indices (ascending) of the rows that can hold the largest float64
    ``worst_case_input(rows.double() * ratio)`` (rows times ``row_scale``), or None where a
    weight or a row sum is not finite (the float64 path then decides). Screened with the
    float32 sums of ``summary`` (:func:`summarize` of the same rows), then the survivors again
    with float64 sums of their float32 weights; usually one row is left."""
    m = rows.shape[1]
    tops = _approximate_tops(summary.abs_sum, summary.total, ratio)
    if not bool(torch.isfinite(tops).all()):
        return None
    first = _near_top(tops, _relative_error(m, U32))
    few = rows[first] if row_scale is None else rows[first] * row_scale[first].view(-1, 1)
    wide = (few.abs().sum(1, dtype=torch.float64), few.sum(1, dtype=torch.float64))
    tops = _approximate_tops(*wide, None if ratio is None else ratio[first])
    return first[_near_top(tops, _relative_error(m, U64))]


def round_scaled(
    rows: torch.Tensor,
    factor: torch.Tensor,
    qmin: int,
    qmax: int,
    out: torch.Tensor,
    row_scale: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """``out = clamp(round(rows * factor), qmin, qmax)`` (round half to even; ``rows`` times
    ``row_scale`` first, as :func:`scaled_rows`) for every value
    where that equals the float64 result of any computation within ``2^-50`` (relative) of the
    real product; returns the (row, column) indices of the other values (near a rounding
    boundary), which the caller must recompute. ``factor``: float64 (Cout,) per-row factors in
    :data:`FACTOR_RANGE` (else None is returned and ``out`` is untouched).

    Each value is bracketed by two float32 products with the factor widened by
    ``1 +- BRACKET``: where both round to the same integer, the float64 value between them
    rounds to it too (rounding is monotone). A product below float32's normal range is far
    below 1/2, as the float64 value is: all three round to 0.
    """
    lo_f, hi_f = FACTOR_RANGE
    if not bool(((factor > lo_f) & (factor < hi_f)).all()):
        return None
    n, m = rows.shape
    up = (factor * (1 + BRACKET)).float().view(-1, 1)
    down = (factor * (1 - BRACKET)).float().view(-1, 1)
    step = max(1, SCREEN_BLOCK // m)
    high = torch.empty((min(step, n), m), dtype=torch.float32)
    low = torch.empty_like(high)
    scaled = None if row_scale is None else torch.empty_like(high)
    redo_rows, redo_cols = [], []
    for lo in range(0, n, step):
        hi = min(n, lo + step)
        h, d = high[: hi - lo], low[: hi - lo]
        block = scaled_rows(rows, row_scale, lo, hi, scaled)
        torch.mul(block, up[lo:hi], out=h).round_()
        torch.mul(block, down[lo:hi], out=d).round_()
        d.sub_(h).abs_()  # NaN (inf - inf: a product beyond float32) counts as a difference
        flagged = d.sum(1).nonzero().flatten()  # a few rows; their few values found in them
        if flagged.numel():
            where = d[flagged].nonzero()
            redo_rows.append(flagged[where[:, 0]] + lo)
            redo_cols.append(where[:, 1])
        out[lo:hi] = h.clamp_(qmin, qmax)
    empty = torch.empty(0, dtype=torch.int64)
    return torch.cat([empty, *redo_rows]), torch.cat([empty, *redo_cols])
