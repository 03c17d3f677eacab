"""Loihi's CUBA LIF neuron in integers: one pure, batched step over torch tensors.

This is the single implementation of the chip's neuron used by training's SNN branch, the
emulator and the parity check. It reproduces Lava's ``PyLifModelBitAcc`` bit for bit
(``lava/proc/lif/models.py``): round-toward-zero decays, ``a << 6`` in int32, the 24-bit wrap of
``u`` exactly as Lava codes it, saturation of ``v``, strict ``v > vThMant << 6`` and reset to 0.

All tensors are int64 holding int32 values (Lava's dtype); any shape, on CPU or GPU.
"""

from __future__ import annotations

import logging
import math

import torch

from snn2loihi.loihi import ACT_SHIFT, DECAY_BITS, DECAY_UNITY, UV_LIMIT
from snn2loihi.schema import CubaNeuron

_CONSTANTS: dict[tuple, torch.Tensor] = {}
log = logging.getLogger(__name__)


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
        spikes, u, v = _step_int32_safe(a, u, v, bias << ACT_SHIFT, neuron, u_in_range)
    else:
        spikes, u, v = _step_int64(a, u, v, bias, neuron)
    return spikes.view(torch.bool), u, v


def _step_int64(a, u, v, bias_mant, neuron):
    """:func:`cuba_step` without ``int32_safe``: int64 tensors, every int32 overflow of Lava
    reproduced; spikes uint8."""
    act = wrap_int32(wrap_int32(a) << ACT_SHIFT)
    u = wrap_uv(wrap_int32(decay(u, neuron.i_decay) + act))
    v = wrap_int32(wrap_int32(decay(v, neuron.v_decay) + u) + wrap_int32(bias_mant << ACT_SHIFT))
    return _fire(u, v, neuron)


def _step_int32_safe(a, u, v, bias_act, neuron, u_in_range, need_u=True):
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
    :func:`_step_int32_safe` (``bias`` is ``bias_mant << 6``), else :func:`_step_int64`
    (``bias`` is ``bias_mant``). Returns ``(spikes, u, v)``, spikes (n, k, ...) uint8 0/1."""
    spikes = []
    last = a.shape[1] - 1
    for t in range(a.shape[1]):
        s, u, v = _step(a[:, t], u, v, bias, neuron, int32_safe, u_in_range, t == last)
        spikes.append(s)
    return torch.stack(spikes, 1), u, v


def _step(a_t, u, v, bias, neuron, int32_safe, u_in_range, need_u=True):
    """One step of :func:`_steps`; a float32 ``a_t`` holding exact integers (as a float
    kernel leaves them) is converted here, inside a compiled kernel in registers.
    ``need_u``: as for :func:`_step_int32_safe` (the time loops need only the last step's)."""
    if int32_safe:
        a_t = a_t.to(torch.int32) if a_t.is_floating_point() else a_t
        return _step_int32_safe(a_t, u, v, bias, neuron, u_in_range, need_u)
    return _step_int64(a_t, u, v, bias, neuron)


def _steps_time_major(a, u, v, bias, counts, neuron, int32_safe, u_in_range):
    """:func:`_steps` over time-major ``a`` (k, n, m): returns (spikes (k, n, m) uint8, u,
    v, ``counts`` (n, m) plus the spikes, or None where ``counts`` is None)."""
    spikes = []
    last = a.shape[0] - 1
    for t in range(a.shape[0]):
        s, u, v = _step(a[t], u, v, bias, neuron, int32_safe, u_in_range, t == last)
        spikes.append(s)
        if counts is not None:
            counts = counts + s
    return torch.stack(spikes), u, v, counts


RECOMPILE_LIMIT = 64  # compiled variants of the neuron loop kept per process (dynamo: 8)
FUSED_BLOCK = 2**18  # neurons per block of the compiled time loop (u, v: 2 MiB)
STEP_CHUNK = 4  # steps per call of the compiled kernel (unrolled in it; u, v stay in registers)
_COMPILED: dict[str, object] = {}


def compiled_steps():
    """:func:`_steps` through ``torch.compile`` (dynamic shapes; one kernel per neuron kind,
    compiled on first use and cached on disk by PyTorch). Its speed against the eager step:
    ``bench/neuron_step.py``."""
    return _compiled("steps", _steps)


def _compiled(name: str, fn):
    """``fn`` through ``torch.compile`` (dynamic shapes), made once per process."""
    compiled = _COMPILED.get(name)
    if compiled is None:
        compiled = _COMPILED[name] = torch.compile(fn, dynamic=True)
    return compiled


def _run_compiled(fn, eager, *args):
    """``fn(*args)``, compiling (if it must) in this process: PyTorch's default compiles in a
    pool of worker processes that outlive the call. Where compiling fails (no C++ compiler,
    say), a warning is logged once and this and every later call run ``eager(*args)``, the
    same steps uncompiled."""
    if _COMPILED.get("failed"):
        return eager(*args)
    from torch._dynamo import config as dynamo_config
    from torch._dynamo.exc import BackendCompilerFailed
    from torch._inductor import config

    # one variant per neuron kind, dtype and layer role: past dynamo's default of 8 variants
    # of a function it would run every later one uncompiled (a one-way raise, never lowered)
    if dynamo_config.recompile_limit < RECOMPILE_LIMIT:
        dynamo_config.recompile_limit = RECOMPILE_LIMIT

    saved = config.compile_threads
    config.compile_threads = 1
    try:
        return fn(*args)
    except BackendCompilerFailed as exc:
        _COMPILED["failed"] = True
        cause = getattr(exc, "inner_exception", None) or exc
        text = str(cause).strip().splitlines()
        why = f"{type(cause).__name__}: {text[0]}" if text else type(cause).__name__
        log.warning("compiling the neuron loop failed (%s); running it uncompiled", why)
        return eager(*args)
    finally:
        config.compile_threads = saved


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
            return _run_compiled(fn, _steps, *args)

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


class NeuronGroup:
    """One layer's neurons for a block of ``n`` samples, stepped from rest through time-major
    chunks of synaptic input: a pipeline can advance every layer a few steps before the next
    chunk, so each layer's input is consumed while it is in cache (the emulator's CPU loop).

    ``bias_mant``: (m,) integer tensor on the device (m neurons per sample, in the order the
    caller flattens them); ``steps``: the whole run's T (for u's 24-bit-wrap proof from
    ``input_bound``, see :func:`integrate`); ``count``: keep each neuron's spike count in
    :attr:`counts` (n, m) (:func:`count_dtype` of T; None when not kept). ``int32_safe``, ``compiled``: as for
    :func:`integrate` (compiled: one fused kernel per chunk of :data:`STEP_CHUNK` steps).
    """

    def __init__(
        self,
        n: int,
        bias_mant: torch.Tensor,
        neuron: CubaNeuron,
        *,
        steps: int,
        int32_safe: bool,
        input_bound: int | None = None,
        compiled: bool = False,
        count: bool = False,
    ):
        dtype = torch.int32 if int32_safe else torch.int64
        bias = bias_mant.to(dtype)
        self.bias = bias << ACT_SHIFT if int32_safe else bias  # as the step takes it
        self.neuron = neuron
        self.int32_safe = int32_safe
        self.compiled = compiled
        self.u_in_range = u_wrap_spared(neuron, int32_safe, steps, input_bound)
        shape = (n, bias.shape[0])
        self.u = torch.zeros(shape, dtype=dtype, device=bias.device)
        self.v = torch.zeros_like(self.u)
        # compiled, always counted: one kernel variant whether or not the counts are wanted
        counted = count or (compiled and bias.device.type == "cpu")
        self.counts = torch.zeros(shape, dtype=count_dtype(steps), device=bias.device) if counted else None  # fmt: skip

    def advance(
        self, a: torch.Tensor, record: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """Step through the k steps of ``a`` (k, n, m) (int32, or float32 holding exact
        integers, when ``int32_safe``; else int64). Returns the spikes (k, n, m) uint8 0/1 and,
        with ``record``, ``u`` and ``v`` after every step (k, n, m) int32 on the CPU.
        Compiled: one fused kernel per :data:`STEP_CHUNK` steps, a shorter tail eagerly."""
        k = a.shape[0]
        if not self.compiled or record or a.is_cuda or k < STEP_CHUNK:
            return self._eager(a, record)
        if k == STEP_CHUNK:
            return self._fused(a), None, None
        spikes = torch.empty((k, *self.u.shape), dtype=torch.uint8, device=a.device)
        whole = k - k % STEP_CHUNK
        for t in range(0, whole, STEP_CHUNK):
            spikes[t : t + STEP_CHUNK] = self._fused(a[t : t + STEP_CHUNK])
        if whole < k:
            spikes[whole:] = self._eager(a[whole:], False)[0]
        return spikes, None, None

    def _eager(self, a: torch.Tensor, record: bool):
        """:meth:`advance` step by step, uncompiled."""
        k = a.shape[0]
        n, m = self.u.shape
        spikes = torch.empty((k, n, m), dtype=torch.uint8, device=a.device)
        u_tr = torch.empty((k, n, m), dtype=torch.int32) if record else None
        v_tr = torch.empty_like(u_tr) if record else None
        # on the CPU, blocks of about NEURON_BLOCK neurons keep each step's temporaries in cache
        sub = n if a.is_cuda else max(1, NEURON_BLOCK // max(1, m))
        for lo in range(0, n, sub):
            hi = min(n, lo + sub)
            u, v = self.u[lo:hi], self.v[lo:hi]
            for t in range(k):
                need_u = record or t == k - 1  # u is kept after the last step only
                s, u, v = _step(a[t, lo:hi], u, v, self.bias, self.neuron, self.int32_safe, self.u_in_range, need_u)  # fmt: skip
                spikes[t, lo:hi] = s
                if self.counts is not None:
                    self.counts[lo:hi] += s
                if record:
                    u_tr[t, lo:hi] = u.to(torch.int32).cpu()
                    v_tr[t, lo:hi] = v.to(torch.int32).cpu()
            self.u[lo:hi], self.v[lo:hi] = u, v
        return spikes, u_tr, v_tr

    def _fused(self, a: torch.Tensor) -> torch.Tensor:
        """:data:`STEP_CHUNK` steps of ``a`` in one compiled kernel: the spikes (k, n, m)."""
        fn = _compiled("steps_time_major", _steps_time_major)
        # detach(): the same memory without view history, so the kernel's guards do not follow
        # the shape of the tensor ``a`` was cut from (one compile serves every layer)
        args = (a.detach(), self.u, self.v, self.bias, self.counts, self.neuron, self.int32_safe, self.u_in_range)  # fmt: skip
        spikes, self.u, self.v, self.counts = _run_compiled(fn, _steps_time_major, *args)
        return spikes
