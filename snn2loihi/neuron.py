"""Loihi's CUBA LIF neuron in integers: one pure, batched step over torch tensors.

This is the single implementation of the chip's neuron used by training's SNN branch, the
emulator and the parity check; :mod:`snn2loihi.neuron_loop` runs it through time (a layer's T
steps, blocked for the cache, optionally compiled) and :mod:`snn2loihi.deploy.neuron_group`
steps the emulator's layers chunk by chunk. It reproduces Lava's ``PyLifModelBitAcc`` bit for bit
(``lava/proc/lif/models.py``): round-toward-zero decays, ``a << 6`` in int32, the 24-bit wrap of
``u`` exactly as Lava codes it, saturation of ``v``, strict ``v > vThMant << 6`` and reset to 0.

All tensors are int64 holding int32 values (Lava's dtype); any shape, on CPU or GPU.
"""

from __future__ import annotations

import torch

from snn2loihi.loihi import ACT_SHIFT, DECAY_BITS, DECAY_UNITY, UV_LIMIT
from snn2loihi.schema import CubaNeuron

_CONSTANTS: dict[tuple, torch.Tensor] = {}


def const(value: int, like: torch.Tensor) -> torch.Tensor:
    """``value`` as a 0-d tensor of ``like``'s dtype and device (cached). Python-int operands
    are wrapped into a new tensor by every shift, ``&`` or ``*`` (about 10 us each on the CPU,
    as much as the op on 65,536 neurons); a ready 0-d tensor of the same dtype is not."""
    if torch.compiler.is_compiling():  # traced: a plain int becomes a constant of the kernel
        return value
    key = (value, like.dtype, like.device)
    c = _CONSTANTS.get(key)
    if c is None:
        c = _CONSTANTS[key] = torch.tensor(value, dtype=like.dtype, device=like.device)
    return c


def wrap_int32(x: torch.Tensor) -> torch.Tensor:
    """Two's-complement wrap of an int64 tensor into int32 (numpy int32 overflow)."""
    return ((x + 2**31) & (2**32 - 1)) - 2**31


def wrap_signed(x: torch.Tensor, bits: int) -> torch.Tensor:
    """Signed wrap into ``bits`` bits: ``((x + 2^(b-1)) mod 2^b) - 2^(b-1)`` (Lava's signed_clamp)."""
    half = 1 << (bits - 1)
    return torch.remainder(x + half, 1 << bits) - half


def negative_mask(x: torch.Tensor) -> torch.Tensor:
    """-1 where ``x < 0``, else 0 (an arithmetic shift: no compare, no select)."""
    return x >> const(31 if x.dtype == torch.int32 else 63, x)


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
        m, low_bits, shift = (const(k, x) for k in (DECAY_UNITY - decay_const, DECAY_UNITY - 1, DECAY_BITS))  # fmt: skip
        low = (x & low_bits).mul_(m).add_(negative_mask(x).bitwise_and_(low_bits))
        return (x >> shift).mul_(m).add_(low.bitwise_right_shift_(shift))
    return wrap_int32(decay_unwrapped(x, decay_const)).to(x.dtype)


SMALL_DECAY = 256  # an odd factor below this times |x| <= 2^23 stays inside int32


def small_decay_split(decay_const: int) -> tuple[int, int] | None:
    """``(odd, bits)`` with ``decay_const = odd * 2^(12 - bits)`` where :func:`decay_small`
    applies (``0 < decay_const < 4096`` and ``odd < SMALL_DECAY``: e.g. 1024 = 1 * 2^10,
    lava-dl's usual current decay of 0.25), else None."""
    if not 0 < decay_const < DECAY_UNITY:
        return None
    zeros = (decay_const & -decay_const).bit_length() - 1
    odd = decay_const >> zeros
    return (odd, DECAY_BITS - zeros) if odd < SMALL_DECAY else None


def decay_small(x: torch.Tensor, decay_const: int) -> torch.Tensor:
    """:func:`decay` for int32 ``|x| <= 2^23`` (u and v always are) where
    :func:`small_decay_split` gives ``decay_const = odd * 2^(12 - b)``, in 6 ops (7 for
    ``odd > 1``) instead of 9: ``x (4096 - d) / 2^12`` rounded toward zero is
    ``x - sign(x) ceil(|x| odd / 2^b)``, and ``|x odd| + 2^b < 2^31``."""
    odd, bits = small_decay_split(decay_const)
    mask = (1 << bits) - 1
    y = x * const(odd, x) if odd > 1 else x
    # y < 0: floor (y - mask + mask) >> b; else ceil (y + mask) >> b; y (when it is x) unwritten
    y = negative_mask(y).bitwise_and_(const(-mask, x)).add_(y)
    y.add_(const(mask, x)).bitwise_right_shift_(const(bits, x))
    return torch.sub(x, y, out=y)


def decay_uv(x: torch.Tensor, decay_const: int) -> torch.Tensor:
    """The decay of u or v (int32 holding 24-bit values, or int64): :func:`decay_small`
    where it applies, else :func:`decay`."""
    if x.dtype == torch.int32 and small_decay_split(decay_const) is not None:
        return decay_small(x, decay_const)
    return decay(x, decay_const)


def u_stays_in_24_bits(a_max: int, steps: int, i_decay: int) -> bool:
    """True when ``|u| < 2^23`` at every one of ``steps`` steps from ``u = 0`` for ``|a| <=
    a_max``, so Lava's 24-bit wrap of u cannot fire: ``|u_t| <= A min(t, 4096 / d)`` with
    ``A = a_max << 6`` (each decay keeps at most ``(4096 - d) / 4096`` of ``|u|``)."""
    act = a_max << ACT_SHIFT
    if i_decay == 0:
        return act * steps < UV_LIMIT
    return act * min(steps * i_decay, DECAY_UNITY) < UV_LIMIT * i_decay


def u_wrap_spared(neuron: CubaNeuron, int32_safe: bool, steps: int, a_max: int | None) -> bool:
    """Whether the int32-safe step may skip u's 24-bit wrap: u carries over (``iDecay <
    4096``) and ``|a| <= a_max`` keeps it in range for ``steps`` steps
    (:func:`u_stays_in_24_bits`); False without a bound."""
    return (
        int32_safe
        and neuron.i_decay != DECAY_UNITY
        and a_max is not None
        and u_stays_in_24_bits(a_max, steps, neuron.i_decay)
    )


def wrap_uv(u: torch.Tensor) -> torch.Tensor:
    """Lava's 24-bit wrap of ``u`` as it codes it: ``u > 2^23`` loses ``2^24``; else
    ``u <= -2^23`` gains ``2^24`` (the second test reads the already wrapped value, which for
    ``u > 2^23`` is above ``-2^23``). ``u`` holds int32 values; branch-free masks."""
    over = negative_mask(const(UV_LIMIT, u) - u).bitwise_and_(const(-2 * UV_LIMIT, u))  # > 2^23
    under = negative_mask(u + const(UV_LIMIT - 1, u)).bitwise_and_(const(2 * UV_LIMIT, u))
    return over.add_(under).add_(u)  # under: u <= -2^23


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
    u_in_range: bool = False,
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
        u_in_range: with ``int32_safe``, the caller proved ``|u| < 2^23`` at every step
            (:func:`u_stays_in_24_bits`): the 24-bit wrap of u cannot fire and is skipped.

    Returns:
        ``(spikes, u, v)``: spikes as bool, new ``u`` and ``v`` (dtype of the inputs).
    """
    bias = torch.as_tensor(bias_mant, dtype=a.dtype, device=a.device)
    if int32_safe:
        spikes, u, v = step_int32_safe(a, u, v, bias << ACT_SHIFT, neuron, u_in_range)
    else:
        spikes, u, v = step_int64(a, u, v, bias, neuron)
    return spikes.view(torch.bool), u, v


def step_int64(a, u, v, bias_mant, neuron):
    """:func:`cuba_step` without ``int32_safe``: int64 tensors, every int32 overflow of Lava
    reproduced; spikes uint8."""
    act = wrap_int32(wrap_int32(a) << ACT_SHIFT)
    u = wrap_uv(wrap_int32(decay(u, neuron.i_decay) + act))
    v = wrap_int32(wrap_int32(decay(v, neuron.v_decay) + u) + wrap_int32(bias_mant << ACT_SHIFT))
    return _fire(u, v, neuron)


def step_int32_safe(a, u, v, bias_act, neuron, u_in_range, need_u=True):
    """:func:`cuba_step` with ``int32_safe``; ``bias_act`` is ``bias_mant << 6``. Every
    temporary is fresh, so ``u`` and ``v`` are never written. ``need_u=False``: the caller
    drops the returned ``u``; with ``iDecay`` 4096 (where the next step ignores it) it is then
    not made (None is returned) and ``a`` enters ``v`` in one operation."""
    shift = const(ACT_SHIFT, a)
    if neuron.i_decay == DECAY_UNITY:
        # |u| < 2^23: none of the wraps below can change it; unread, it is not made
        u = a << shift if need_u else None
    else:
        du = decay_uv(u, neuron.i_decay)
        u = (a << shift).add_(du) if du is u else du.add_(a << shift)
        u = u if u_in_range else wrap_uv(u)
    dv = decay_uv(v, neuron.v_decay)
    if u is None:  # v + (a << 6) in one operation: |a| < 2^17, so a * 64 fits int32
        v = torch.add(dv, a, alpha=1 << ACT_SHIFT) if dv is v else dv.add_(a, alpha=1 << ACT_SHIFT)
    else:
        v = (dv + u) if dv is v else dv.add_(u)
    return _fire(u, v.add_(bias_act), neuron)


def _fire(u, v, neuron):
    """Saturate ``v`` (fresh) to 24 bits, fire where it exceeds the threshold, reset there.
    Spikes come as uint8 0/1 (a bool view of them is free; compiled kernels store uint8 with
    vector instructions but bool one element at a time, about 8x slower per step)."""
    v = v.clamp_(-UV_LIMIT + 1, UV_LIMIT - 1)
    # Keep v where v <= threshold, else reset it to 0: with |v| < 2^23 and the threshold at
    # most 2^23 (vThMant <= 2^17, NetX's default), (v - threshold - 1) >> 31 is the mask -1
    # (keep) / 0 (fire) without int32 overflow, and the mask's uint8 bytes plus 1 are the
    # spikes (255 + 1 wraps to 0): compare and select cost ~10x
    keep = negative_mask(v - const(threshold(neuron) + 1, v))
    spikes = keep.to(torch.uint8)
    spikes.add_(const(1, spikes))
    v = v.bitwise_and_(keep)
    return spikes, u, v
