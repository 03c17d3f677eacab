"""Loihi's CUBA LIF neuron in integers: one pure, batched step over torch tensors.

This is the single implementation of the chip's neuron used by training's SNN branch, the
emulator and the parity check. It reproduces Lava's ``PyLifModelBitAcc`` bit for bit
(``lava/proc/lif/models.py``): round-toward-zero decays, ``a << 6`` in int32, the 24-bit wrap of
``u`` exactly as Lava codes it, saturation of ``v``, strict ``v > vThMant << 6`` and reset to 0.

All tensors are int64 holding int32 values (Lava's dtype); any shape, on CPU or GPU.
"""

from __future__ import annotations

import math

import torch

from snn2loihi.loihi import ACT_SHIFT, DECAY_BITS, DECAY_UNITY, UV_LIMIT
from snn2loihi.schema import CubaNeuron


def wrap_int32(x: torch.Tensor) -> torch.Tensor:
    """Two's-complement wrap of an int64 tensor into int32 (numpy int32 overflow)."""
    return ((x + 2**31) & (2**32 - 1)) - 2**31


def wrap_signed(x: torch.Tensor, bits: int) -> torch.Tensor:
    """Signed wrap into ``bits`` bits: ``((x + 2^(b-1)) mod 2^b) - 2^(b-1)`` (Lava's signed_clamp)."""
    half = 1 << (bits - 1)
    return torch.remainder(x + half, 1 << bits) - half


def negative_mask(x: torch.Tensor) -> torch.Tensor:
    """-1 where ``x < 0``, else 0 (an arithmetic shift: no compare, no select)."""
    return x >> (31 if x.dtype == torch.int32 else 63)


def decay_unwrapped(x: torch.Tensor, decay_const: int) -> torch.Tensor:
    """``sign(x) * (|x * (4096 - d)| >> 12)`` in int64: the decay rounded toward zero.

    Branch-free: toward zero is a floor for ``y >= 0`` and ``(y + 4095) >> 12`` for ``y < 0``.
    """
    if decay_const == 0:
        return x
    if decay_const == DECAY_UNITY:
        return torch.zeros_like(x)
    y = x.to(torch.int64) * (DECAY_UNITY - decay_const)
    return (y + (negative_mask(y) & (DECAY_UNITY - 1))) >> DECAY_BITS


def decay(x: torch.Tensor, decay_const: int) -> torch.Tensor:
    """Lava's decay of u or v: :func:`decay_unwrapped` wrapped to int32 like Lava's ``np.int32``
    cast (dtype kept; for the int32 values of u and v the decay never grows ``|x|``).

    int32 ``x`` never leaves int32: with ``x = h 2^12 + l`` (``h = x >> 12``, ``0 <= l < 2^12``),
    ``x m / 2^12 = h m + l m / 2^12`` and rounding toward zero rounds ``l m / 2^12`` down for
    ``x >= 0`` and up for ``x < 0``; ``|h m| < 2^31`` and ``l m < 2^24``.
    """
    if decay_const in (0, DECAY_UNITY):
        return decay_unwrapped(x, decay_const)
    if x.dtype == torch.int32:
        m = DECAY_UNITY - decay_const
        low = (x & (DECAY_UNITY - 1)).mul_(m).add_(negative_mask(x) & (DECAY_UNITY - 1))
        return (x >> DECAY_BITS).mul_(m).add_(low >> DECAY_BITS)
    return wrap_int32(decay_unwrapped(x, decay_const)).to(x.dtype)


def wrap_uv(u: torch.Tensor) -> torch.Tensor:
    """Lava's 24-bit wrap of ``u`` as it codes it: ``u > 2^23`` loses ``2^24``; else
    ``u <= -2^23`` gains ``2^24`` (the second test reads the already wrapped value, which for
    ``u > 2^23`` is above ``-2^23``). ``u`` holds int32 values; branch-free masks."""
    over = negative_mask(UV_LIMIT - u) & (-2 * UV_LIMIT)  # u > 2^23
    under = negative_mask(u + (UV_LIMIT - 1)) & (2 * UV_LIMIT)  # u <= -2^23
    return u + over + under


def threshold(neuron: CubaNeuron) -> int:
    """Effective threshold compared with v: ``vThMant << 6``."""
    return neuron.vth_mant << ACT_SHIFT


def cuba_step(
    a: torch.Tensor,
    u: torch.Tensor,
    v: torch.Tensor,
    bias_mant: torch.Tensor | int,
    neuron: CubaNeuron,
    *,
    int32_safe: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Advance Loihi CUBA neurons by one time step.

    Args:
        a: synaptic input of this step (already delayed by the synapse), integer tensor.
        u, v: current and voltage state, same shape and dtype as ``a``.
        bias_mant: bias mantissa per neuron (applied as ``bias_mant << 6``), broadcastable to ``a``.
        neuron: the layer's CUBA parameters.
        int32_safe: the caller guarantees ``|a| <= INT32_SAFE_INPUT`` at every step. Then
            ``|a << 6| < 2^23`` keeps ``|u| <= 2^23`` and every sum below 2^26, so no int32
            overflow can occur: the wraps are skipped and int32 tensors may be used. With
            ``iDecay = 4096`` (u does not carry over) ``u = a << 6`` exactly.
            Otherwise tensors must be int64 and every int32 overflow of Lava is reproduced.

    Returns:
        ``(spikes, u, v)``: spikes as bool, new ``u`` and ``v`` (dtype of the inputs).
    """
    wrap = (lambda x: x) if int32_safe else wrap_int32
    if int32_safe and neuron.i_decay == DECAY_UNITY:
        u = a << ACT_SHIFT  # |u| < 2^23: none of the wraps below can change it
    else:
        act = wrap(wrap(a) << ACT_SHIFT)
        u = wrap_uv(wrap(decay(u, neuron.i_decay) + act))
    bias = wrap(torch.as_tensor(bias_mant, dtype=a.dtype, device=a.device) << ACT_SHIFT)
    v = wrap(wrap(decay(v, neuron.v_decay) + u) + bias)
    v = v.clamp_(-UV_LIMIT + 1, UV_LIMIT - 1)
    # Fire where v > threshold, then reset v to 0 there: with |v| < 2^23 and the threshold
    # below 2^23 + 2^6, (threshold - v) >> 31 is the mask -1/0 (compare and select cost ~10x).
    fired = negative_mask(threshold(neuron) - v)
    spikes = fired.to(torch.bool)
    v = v.bitwise_and_(fired.bitwise_not_())
    return spikes, u, v


NEURON_BLOCK = 2**16  # neurons per block of the CPU time loop (cache-sized temporaries)


def integrate(
    a: torch.Tensor,
    bias_mant: torch.Tensor | int,
    neuron: CubaNeuron,
    *,
    int32_safe: bool = False,
    record_state: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """Run one layer's neurons from rest (``u = v = 0``) through T steps of input.

    Args:
        a: synaptic input (N, T, *shape), int32 if ``int32_safe`` else int64; a broadcast view
            (e.g. one current expanded over T) is fine.
        bias_mant: per-neuron bias mantissa broadcastable to (N, *shape), or an int.
        neuron, int32_safe: as for :func:`cuba_step`.
        record_state: also return ``u`` and ``v`` after every step.

    Returns:
        ``(spikes, u, v)``: spikes (N, T, *shape) bool on ``a``'s device; ``u``, ``v``
        (N, T, *shape) int32 on the CPU when ``record_state``, else None.
    """
    n, steps = a.shape[:2]
    shape = tuple(a.shape[2:])
    spikes = torch.empty((n, steps, *shape), dtype=torch.bool, device=a.device)
    u_tr = torch.empty((n, steps, *shape), dtype=torch.int32) if record_state else None
    v_tr = torch.empty_like(u_tr) if record_state else None
    bias = torch.as_tensor(bias_mant, dtype=a.dtype, device=a.device)
    size = max(1, math.prod(shape))
    # On the CPU, blocks of about NEURON_BLOCK neurons keep each step's temporaries in cache.
    sub = n if a.is_cuda else max(1, NEURON_BLOCK // size)
    for lo in range(0, n, sub):
        hi = min(n, lo + sub)
        u = torch.zeros((hi - lo, *shape), dtype=a.dtype, device=a.device)
        v = torch.zeros_like(u)
        for t in range(steps):
            spikes[lo:hi, t], u, v = cuba_step(
                a[lo:hi, t], u, v, bias, neuron, int32_safe=int32_safe
            )
            if record_state:
                u_tr[lo:hi, t] = u.to(torch.int32).cpu()
                v_tr[lo:hi, t] = v.to(torch.int32).cpu()
    return spikes, u_tr, v_tr
