"""Loihi's integer neuron (:func:`snn2loihi.neuron.cuba_step`) through time: one layer's T
steps from rest (:func:`integrate`), in blocks of neurons that keep each step's temporaries in
cache, optionally as one compiled kernel per :data:`STEP_CHUNK` steps (the same integers).

Tensors as in :mod:`snn2loihi.neuron`; any shape, on CPU or GPU.
"""

from __future__ import annotations

import math

import torch

from snn2loihi import neuron_compile
from snn2loihi.loihi import ACT_SHIFT, DECAY_UNITY
from snn2loihi.neuron import (
    step_int32_safe,
    step_int64,
    u_stays_in_24_bits,
    u_wrap_spared,
)
from snn2loihi.schema import CubaNeuron

# neurons per block of the CPU's eager time loop: each step's temporaries (512 KiB of int32
# each) stay in cache, and the per-op overhead is spread over enough neurons; the value is the
# fastest measured (bench/results/tuned_constants.md)
NEURON_BLOCK = 2**17


def channels_last_order(a: torch.Tensor) -> bool:
    """True when ``a`` (N, T, C, H, W) holds its channels innermost in memory (as channels-last
    convolutions leave it): then the neurons step over the (N, T, H, W, C) view, whose steps are
    dense, and no layout conversion is needed before or after."""
    return a.ndim == 5 and a.shape[2] > 1 and a.stride(2) == 1 and a.stride(4) == a.shape[2]


def integrate(
    a: torch.Tensor,
    bias_mant: torch.Tensor | int,
    neuron: CubaNeuron,
    *,
    int32_safe: bool = False,
    record_state: bool = False,
    compiled: bool = False,
    counts: torch.Tensor | None = None,
    input_bound: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """Run one layer's neurons from rest (``u = v = 0``) through T steps of input.

    Args:
        a: synaptic input (N, T, *shape), int32 if ``int32_safe`` else int64; a broadcast view
            (e.g. one current expanded over T) is fine.
        bias_mant: per-neuron bias mantissa broadcastable to (N, *shape), or an int.
        neuron, int32_safe: as for :func:`cuba_step`.
        record_state: also return ``u`` and ``v`` after every step.
        compiled: on the CPU, run the steps as one fused kernel per :data:`STEP_CHUNK` steps
            (:func:`compiled_steps`: this module's own step function, compiled by
            ``torch.compile``; the same integers). Not with ``record_state``.
        counts: a zeroed (N, *shape) integer tensor (:func:`count_dtype` of T) on ``a``'s
            device, in ``a``'s layout; each neuron's number of spikes is added to it, step
            chunk by step chunk while the chunk is in cache (no second pass over the spikes).
        input_bound: a proven bound on ``|a|`` (a synapse's ``max_abs_output``), if known:
            where it already proves that u's 24-bit wrap cannot fire
            (:func:`u_stays_in_24_bits`), ``a`` is not scanned for its largest value.

    Returns:
        ``(spikes, u, v)``: spikes (N, T, *shape) bool on ``a``'s device; ``u``, ``v``
        (N, T, *shape) int32 on the CPU when ``record_state``, else None. When ``a`` is
        channels-last (:func:`channels_last_order`), so are the results (same values).
    """
    bias = torch.as_tensor(bias_mant, dtype=a.dtype, device=a.device)
    if channels_last_order(a) and (bias.ndim >= 3 or bias.numel() == 1):
        if bias.ndim >= 3:  # e.g. (C, 1, 1) or (C, H, W) -> (1, 1, C) or (H, W, C)
            bias = bias.movedim(-3, -1)
        if counts is not None:
            counts = counts.permute(0, 2, 3, 1)
        a = a.permute(0, 1, 3, 4, 2)
        out = _integrate(a, bias, neuron, int32_safe, record_state, compiled, counts, input_bound)
        return tuple(None if t is None else t.permute(0, 1, 4, 2, 3) for t in out)
    return _integrate(a, bias, neuron, int32_safe, record_state, compiled, counts, input_bound)


def integrate_counting(
    a: torch.Tensor,
    bias_mant: torch.Tensor | int,
    neuron: CubaNeuron,
    *,
    int32_safe: bool = False,
    compiled: bool = False,
    input_bound: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`integrate`'s spikes (N, T, *shape) bool and each neuron's number of spikes
    (N, *shape) (:func:`count_dtype` of T, in ``a``'s memory layout), counted while each step
    chunk is in cache instead of in a second pass over the spikes."""
    n, steps = a.shape[:2]
    dtype = count_dtype(steps)
    if channels_last_order(a):
        c, h, w = a.shape[2:]
        counts = torch.zeros((n, h, w, c), dtype=dtype, device=a.device).permute(0, 3, 1, 2)
    else:
        counts = torch.zeros((n, *a.shape[2:]), dtype=dtype, device=a.device)
    spikes = integrate(
        a,
        bias_mant,
        neuron,
        int32_safe=int32_safe,
        compiled=compiled,
        counts=counts,
        input_bound=input_bound,
    )[0]
    return spikes, counts


def count_dtype(steps: int) -> torch.dtype:
    """The narrowest dtype of a spike count over ``steps`` steps: uint8 below 256 steps."""
    return torch.uint8 if steps < 256 else torch.int32


def abs_max(a: torch.Tensor) -> int:
    """``max |a|`` of a non-empty integer tensor in one pass, without a temporary."""
    lo, hi = torch.aminmax(a)
    return max(int(hi), -int(lo))


def _steps(a, u, v, bias, neuron, int32_safe, u_in_range):
    """``a.shape[1]`` steps of :func:`cuba_step` for ``a`` (n, k, ...): with ``int32_safe``
    :func:`step_int32_safe` (``bias`` is ``bias_mant << 6``), else :func:`step_int64`
    (``bias`` is ``bias_mant``). Returns ``(spikes, u, v)``, spikes (n, k, ...) uint8 0/1."""
    spikes = []
    last = a.shape[1] - 1
    for t in range(a.shape[1]):
        s, u, v = step_any(a[:, t], u, v, bias, neuron, int32_safe, u_in_range, t == last)
        spikes.append(s)
    return torch.stack(spikes, 1), u, v


def step_any(a_t, u, v, bias, neuron, int32_safe, u_in_range, need_u=True):
    """One step of :func:`_steps`; a float32 ``a_t`` holding exact integers (as a float
    kernel leaves them) is converted here, inside a compiled kernel in registers.
    ``need_u``: as for :func:`step_int32_safe` (the time loops need only the last step's)."""
    if int32_safe:
        a_t = a_t.to(torch.int32) if a_t.is_floating_point() else a_t
        return step_int32_safe(a_t, u, v, bias, neuron, u_in_range, need_u)
    return step_int64(a_t, u, v, bias, neuron)


def steps_time_major(a, u, v, bias, counts, neuron, int32_safe, u_in_range):
    """:func:`_steps` over time-major ``a`` (k, n, m): returns (spikes (k, n, m) uint8, u,
    v, ``counts`` (n, m) plus the spikes, or None where ``counts`` is None)."""
    spikes = []
    last = a.shape[0] - 1
    for t in range(a.shape[0]):
        s, u, v = step_any(a[t], u, v, bias, neuron, int32_safe, u_in_range, t == last)
        spikes.append(s)
        if counts is not None:
            counts = counts + s
    return torch.stack(spikes), u, v, counts


FUSED_BLOCK = 2**18  # neurons per block of the compiled time loop (u, v: 2 MiB)
STEP_CHUNK = 4  # steps per call of the compiled kernel (unrolled in it; u, v stay in registers)


def compiled_steps():
    """:func:`_steps` through ``torch.compile`` (dynamic shapes; one kernel per neuron kind,
    compiled on first use and cached on disk by PyTorch). Its speed against the eager step:
    ``bench/neuron_step.py``."""
    return neuron_compile.compiled("steps", _steps)


def _flat_neurons(a: torch.Tensor) -> torch.Tensor | None:
    """``a`` (N, T, *shape) as an (N, T, prod(shape)) view (so the compiled kernel is the same
    3-D loop for every layer shape), or None where its neurons are not one dense run in memory."""
    try:
        return a.view(a.shape[0], a.shape[1], -1)
    except RuntimeError:
        return None


def _time_loop(step, chunk, a, sub, spikes_u8, record, counts=None):
    """The time loop of :func:`_integrate` over blocks of ``sub`` samples: ``step(a_k, u, v)``
    gives (uint8 spikes, u, v) for ``a_k`` (n, k, *shape), ``k <= chunk`` steps at once;
    ``counts`` (n, *shape), if given, gains each chunk's spikes."""
    n, steps = a.shape[:2]
    shape = tuple(a.shape[2:])
    u_tr = torch.empty((n, steps, *shape), dtype=torch.int32) if record else None
    v_tr = torch.empty_like(u_tr) if record else None
    for lo in range(0, n, sub):
        hi = min(n, lo + sub)
        u = torch.zeros((hi - lo, *shape), dtype=a.dtype, device=a.device)
        v = torch.zeros_like(u)
        for t in range(0, steps, chunk):
            k = min(chunk, steps - t)
            s, u, v = step(a[lo:hi, t : t + k], u, v)
            spikes_u8[lo:hi, t : t + k] = s
            if counts is not None:
                counts[lo:hi] += s.sum(1, dtype=counts.dtype)
            if record:
                u_tr[lo:hi, t] = u.to(torch.int32).cpu()
                v_tr[lo:hi, t] = v.to(torch.int32).cpu()
    return u_tr, v_tr


def _integrate(
    a, bias, neuron, int32_safe, record_state, compiled=False, counts=None, input_bound=None
):
    """:func:`integrate` over ``a``'s dimensions as they are."""
    n, steps = a.shape[:2]
    shape = tuple(a.shape[2:])
    spikes = torch.empty((n, steps, *shape), dtype=torch.bool, device=a.device)
    size = max(1, math.prod(shape))
    # the 24-bit wrap of u is skipped where this input cannot reach it (one pass over a)
    u_in_range = u_wrap_spared(neuron, int32_safe, steps, input_bound) or (
        int32_safe
        and neuron.i_decay != DECAY_UNITY
        and a.numel() > 0
        and u_stays_in_24_bits(abs_max(a), steps, neuron.i_decay)
    )
    # int32-safe: cuba_step's int32 path with the bias shifted once, not every step
    bias = bias << ACT_SHIFT if int32_safe else bias
    flat = _flat_neurons(a) if compiled and not record_state and not a.is_cuda else None
    flat_counts = None  # counts (n, neurons), as flat lays out the neurons
    if counts is not None and flat is not None:
        flat_counts = _flat_neurons(counts.unsqueeze(1))
        if flat_counts is None:
            flat = None  # the counts do not lie as the input's neurons do: the eager loop
        else:
            flat_counts = flat_counts[:, 0]
    if flat is not None and bias.ndim <= len(shape) and size > 1:
        # one fused kernel per STEP_CHUNK steps: no temporaries, so blocks can be larger
        bias_flat = bias.expand(shape).reshape(size)
        fn = compiled_steps()

        def fused(a_k, u, v):  # a_k detached: see NeuronGroup.advance
            args = (a_k.detach(), u, v, bias_flat, neuron, int32_safe, u_in_range)
            if a_k.shape[1] != STEP_CHUNK:
                return _steps(*args)
            return neuron_compile.run_compiled(fn, _steps, *args)

        sub = max(1, FUSED_BLOCK // size)
        spikes_u8 = spikes.view(torch.uint8).view(flat.shape)
        _time_loop(fused, STEP_CHUNK, flat, sub, spikes_u8, False, flat_counts)
        return spikes, None, None

    def step(a_k, u, v):
        return _steps(a_k, u, v, bias, neuron, int32_safe, u_in_range)

    # On the CPU, blocks of about NEURON_BLOCK neurons keep each step's temporaries in cache.
    sub = n if a.is_cuda else max(1, NEURON_BLOCK // size)
    chunk = 1 if record_state else STEP_CHUNK
    u_tr, v_tr = _time_loop(step, chunk, a, sub, spikes.view(torch.uint8), record_state, counts)
    return spikes, u_tr, v_tr
