"""Worst-case 24-bit headroom of every layer of a NetX network (Loihi's ``u`` and ``v``).

Per output channel, the synaptic input of one step is bounded by the sum of its positive (or
negative) weights times the largest input ``s`` (255 for the graded first layer, 1 for spikes):
``a = W.s``, entering ``u`` as ``a << 6``. ``u`` wraps at 2^23 (24-bit signed); ``v`` saturates
at 2^23 - 1. ``v`` is bounded over T steps by ``T * (u + bias << 6)`` (negative side: no reset),
and above by one step past the threshold for spiking layers. All figures are in the units of
the 24-bit registers unless named ``*_mant`` (weight units, before ``<< 6``).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch

from snn2loihi.loihi import (
    ACT_SHIFT,
    DECAY_UNITY,
    GRADED_INPUT_MAX,
    SPIKE_MAX,
    UV_LIMIT,
    VTH_MAX,
    row_sums,
)
from snn2loihi.neuron import decay_unwrapped
from snn2loihi.schema import ConvLayer, NetXNetwork, RecurrentDenseLayer
from snn2loihi.synapse import dense_weights_as_lava


@dataclass
class LayerHeadroom:
    """Worst-case figures of one conv/dense layer; ``warnings`` lists what can go wrong."""

    layer: int
    kind: str
    input_max: int
    a_max_mant: int  # largest |W.s| of one step (weight units)
    u_peak: int  # largest |u| (24-bit units)
    v_peak_pos: int
    v_peak_neg: int
    limit: int
    u_can_wrap: bool
    v_can_saturate: bool
    headroom_bits: float  # log2(limit / largest peak); negative when a wrap/saturation can happen
    warnings: list[str]

    def to_dict(self) -> dict:
        return asdict(self)


def _row_sums(ly, input_max: int) -> tuple[np.ndarray, np.ndarray]:
    """Largest positive and negative synaptic input per output channel (weight units, >= 0).
    A recurrent dense layer adds its ``weight_rec`` columns (its own spikes, 0 or 1); netx
    optimizes both matrices together (one exponent). A residual conv adds its shortcuts'
    kernels (their sources' spikes enter the same ``a``; a residual layer reads spikes)."""
    w = np.asarray(ly.weight, dtype=np.int64)
    shift = 0
    n_in = w.reshape(w.shape[0], -1).shape[1]
    if isinstance(ly, ConvLayer) and ly.shortcuts:
        parts = [w.reshape(w.shape[0], -1)]
        parts += [np.asarray(sc.weight, np.int64).reshape(w.shape[0], -1) for sc in ly.shortcuts]
        w = np.hstack(parts)
    if isinstance(ly, RecurrentDenseLayer):
        w = np.hstack([w, np.asarray(ly.weight_rec, dtype=np.int64)])
    if not isinstance(ly, ConvLayer):
        w, shift = dense_weights_as_lava(w)  # what Lava's dense synapse really holds
    if isinstance(ly, RecurrentDenseLayer):
        fwd, rec = row_sums(w[:, :n_in]), row_sums(w[:, n_in:])
        pos, neg = (f * input_max + r for f, r in zip(fwd, rec, strict=True))
    else:
        pos, neg = (r * input_max for r in row_sums(w))
    if shift >= 0:
        return pos << shift, neg << shift
    return pos >> -shift, (neg + (1 << -shift) - 1) >> -shift


def _u_bound(a: np.ndarray, i_decay: int, steps: int) -> np.ndarray:
    """Largest |u| over ``steps`` steps for a constant worst-case input ``a << 6`` (>= 0):
    the neuron's own u recurrence (:func:`snn2loihi.neuron.decay_unwrapped`) without the wrap."""
    act = torch.as_tensor(np.asarray(a, dtype=np.int64)) << ACT_SHIFT
    u = torch.zeros_like(act)
    peak = torch.zeros_like(act)
    for _ in range(steps):
        u = decay_unwrapped(u, i_decay) + act
        peak = torch.maximum(peak, u)
        if i_decay == DECAY_UNITY:
            break
    return peak.numpy()


def layer_headroom(index: int, ly, input_max: int, steps: int) -> LayerHeadroom:
    """Headroom of one synaptic layer run for ``steps`` steps with inputs in 0..input_max."""
    pos, neg = _row_sums(ly, input_max)
    n = ly.neuron
    u_pos, u_neg = _u_bound(pos, n.i_decay, steps), _u_bound(neg, n.i_decay, steps)
    bias = np.zeros_like(pos) if ly.bias is None else np.asarray(ly.bias, dtype=np.int64)
    b_pos = np.clip(bias, 0, None) << ACT_SHIFT
    b_neg = np.clip(-bias, 0, None) << ACT_SHIFT
    v_pos = steps * (u_pos + b_pos)
    if n.vth_mant < VTH_MAX:  # a spiking layer resets once v passes the threshold
        v_pos = np.minimum(v_pos, (n.vth_mant << ACT_SHIFT) + u_pos + b_pos)
    v_neg = steps * (u_neg + b_neg)
    u_peak = int(max(u_pos.max(), u_neg.max()))
    vp, vn = int(v_pos.max()), int(v_neg.max())
    u_wrap = u_peak >= UV_LIMIT
    v_sat = max(vp, vn) > UV_LIMIT - 1
    warnings = []
    if u_wrap:
        warnings.append(
            f"layer {index} ({ly.kind}): u can reach {u_peak} >= 2^23 and wrap (24-bit); "
            "lower the weights or the input range"
        )
    if v_sat:
        side = "positive" if vp >= vn else "negative"
        warnings.append(
            f"layer {index} ({ly.kind}): {side} v can reach {max(vp, vn)} over {steps} steps "
            "and saturate at 2^23 - 1"
        )
    peak = max(u_peak, vp, vn, 1)
    return LayerHeadroom(
        layer=index,
        kind=ly.kind,
        input_max=input_max,
        a_max_mant=int(max(pos.max(), neg.max())),
        u_peak=u_peak,
        v_peak_pos=vp,
        v_peak_neg=vn,
        limit=UV_LIMIT,
        u_can_wrap=u_wrap,
        v_can_saturate=v_sat,
        headroom_bits=round(math.log2(UV_LIMIT / peak), 3),
        warnings=warnings,
    )


def network_headroom(
    net: NetXNetwork, steps: int, *, graded_input: bool = True
) -> list[LayerHeadroom]:
    """Headroom of every conv/dense layer (file index order) for T = ``steps``."""
    out = []
    for k, (i, ly) in enumerate(net.synaptic_layers):
        input_max = GRADED_INPUT_MAX if (k == 0 and graded_input) else SPIKE_MAX
        out.append(layer_headroom(i, ly, input_max, steps))
    return out
