"""Checks that a :class:`NetXNetwork` is consistent and inside Loihi's hardware ranges.

Every error names the file, the layer index, the field and the offending value.
"""

from __future__ import annotations

import logging
import math

import numpy as np

from snn2loihi.errors import NetXValidationError, where
from snn2loihi.loihi import (
    BIAS_MAX,
    BIAS_MIN,
    CONV_PARAM_MAX,
    DECAY_MAX,
    DECAY_MIN,
    GRADED_INPUT_MAX,
    INT32_MAX,
    VTH_MAX,
    VTH_MIN,
    WEIGHT_MAX,
    WEIGHT_MIN,
)
from snn2loihi.schema import (
    MAX_DELAY,
    ConvLayer,
    CubaNeuron,
    DenseLayer,
    FlattenLayer,
    InputLayer,
    NetXNetwork,
    Neuron,
    RecurrentDenseLayer,
    Shortcut,
    SigmaDeltaNeuron,
    conv_output_hw,
)

SDNN_VTH_MAX = (INT32_MAX >> 12) // 2  # vThMant << 12 and the deltas it gates stay in int32

log = logging.getLogger(__name__)


def _fail(path, layer, kind, field, msg) -> NetXValidationError:
    return NetXValidationError(f"{where(path, layer)} ({kind}): field '{field}' {msg}")


def _check_range(arr, lo, hi, path, layer, kind, field) -> None:
    arr = np.asarray(arr)
    if arr.size == 0:
        return
    bad = np.flatnonzero((arr < lo) | (arr > hi))
    if bad.size:
        idx = np.unravel_index(bad[0], arr.shape)
        raise _fail(
            path,
            layer,
            kind,
            field,
            f"value {arr[idx]} at index {tuple(int(i) for i in idx)} is outside the hardware "
            f"range [{lo}, {hi}] ({bad.size} values out of range)",
        )


def _check_neuron(n: Neuron, path, layer, kind) -> None:
    if isinstance(n, SigmaDeltaNeuron):
        if not 0 <= n.vth_mant <= SDNN_VTH_MAX:
            raise _fail(
                path,
                layer,
                kind,
                "neuron/vThMant",
                f"= {n.vth_mant} is outside [0, {SDNN_VTH_MAX}]",
            )
        if n.activation.lower() != "relu":
            log.warning(
                "%s (%s): SDNN activation '%s' is ignored by NetX, which always applies ReLU",
                where(path, layer),
                kind,
                n.activation,
            )
        return
    vth_max = n.vth_mant if n.netx_default else VTH_MAX  # NetX's default is 1 << 17
    for name, value, lo, hi in (
        ("neuron/iDecay", n.i_decay, DECAY_MIN, DECAY_MAX),
        ("neuron/vDecay", n.v_decay, DECAY_MIN, DECAY_MAX),
        ("neuron/vThMant", n.vth_mant, VTH_MIN, vth_max),
    ):
        if not lo <= value <= hi:
            raise _fail(path, layer, kind, name, f"= {value} is outside [{lo}, {hi}]")


def _check_common(ly: ConvLayer | DenseLayer, path, i) -> None:
    _check_neuron(ly.neuron, path, i, ly.kind)
    _check_range(ly.weight, WEIGHT_MIN, WEIGHT_MAX, path, i, ly.kind, "weight")
    if ly.bias is not None:
        if ly.bias.shape != (ly.weight.shape[0],):
            raise _fail(
                path,
                i,
                ly.kind,
                "bias",
                f"has shape {ly.bias.shape}, expected ({ly.weight.shape[0]},)",
            )
        _check_range(ly.bias, BIAS_MIN, BIAS_MAX, path, i, ly.kind, "bias")
    if isinstance(ly, RecurrentDenseLayer):
        _check_range(ly.weight_rec, WEIGHT_MIN, WEIGHT_MAX, path, i, ly.kind, "weight_rec")


def _check_conv(
    ly: ConvLayer | Shortcut,
    in_shape: tuple[int, ...],
    out: tuple[ConvLayer, str],
    path,
    i,
) -> tuple[int, ...]:
    """The output shape of the convolution ``ly`` of input ``in_shape``; ``out``: the layer
    whose neurons it feeds and the prefix of the fields named (``"shortcut/0/"``)."""
    target, prefix = out

    def fail(field: str, message: str):
        return _fail(path, i, target.kind, prefix + field, message)

    if len(in_shape) != 3:
        raise fail("shape", f"needs a CHW input but the previous layer gives {in_shape}")
    if ly.weight.ndim != 4:
        raise fail("weight", f"has shape {ly.weight.shape}, expected (Cout, Cin/groups, kH, kW)")
    for name, val, lo in (
        ("stride", ly.stride, 1),
        ("padding", ly.padding, 0),
        ("dilation", ly.dilation, 1),
    ):
        if len(val) != 2 or min(val) < lo or max(val) > CONV_PARAM_MAX:
            raise fail(name, f"= {tuple(val)} must be two integers in [{lo}, {CONV_PARAM_MAX}]")
    cout, cin_g, kh, kw = ly.weight.shape
    cin = in_shape[0]
    if not 1 <= ly.groups <= CONV_PARAM_MAX or cin % ly.groups or cout % ly.groups:
        raise fail("groups", f"= {ly.groups} must divide in channels {cin} and out channels {cout}")
    if cin_g * ly.groups != cin:
        raise fail(
            "weight",
            f"has {cin_g} input channels per group x {ly.groups} groups, but the input has {cin} channels",
        )
    hw = conv_output_hw(in_shape[1:], (kh, kw), ly.stride, ly.padding, ly.dilation)
    expected = (cout, *hw)
    if min(hw) < 1 or tuple(target.shape) != expected:
        raise fail("shape", f"= {tuple(target.shape)} but input {in_shape} gives {expected}")
    fan_in = cin_g * kh * kw
    if (
        isinstance(target.neuron, CubaNeuron)
        and max(-WEIGHT_MIN, WEIGHT_MAX) * GRADED_INPUT_MAX * fan_in > INT32_MAX
    ):  # Lava's conv casts its sum to int32
        raise fail("weight", f"fan-in {fan_in} can overflow Lava's int32 accumulator")
    return expected


def _check_dense(
    ly: DenseLayer, in_shape: tuple[int, ...], flattened: bool, path, i
) -> tuple[int, ...]:
    kind = ly.kind
    if len(in_shape) == 3 and not flattened:
        raise _fail(
            path, i, kind, "type", f"follows a CHW layer {in_shape} without a flatten layer"
        )
    if ly.weight.ndim != 2:
        raise _fail(path, i, kind, "weight", f"has shape {ly.weight.shape}, expected (Nout, Nin)")
    n_in = math.prod(in_shape)
    if ly.weight.shape[1] != n_in:
        raise _fail(
            path,
            i,
            kind,
            "weight",
            f"has {ly.weight.shape[1]} inputs but the previous layer has {n_in}",
        )
    if math.prod(ly.shape) != ly.weight.shape[0]:
        raise _fail(
            path,
            i,
            kind,
            "shape",
            f"= {tuple(ly.shape)} but weight has {ly.weight.shape[0]} outputs",
        )
    if ly.delay is not None:
        d = np.asarray(ly.delay)
        if d.size not in (1, ly.weight.shape[0], ly.weight.shape[1], ly.weight.size):
            raise _fail(
                path,
                i,
                kind,
                "delay",
                f"has shape {d.shape}, which NetX cannot match to weight {ly.weight.shape}",
            )
        if d.max(initial=0) > 62:
            log.warning(
                "%s (dense): delays up to %d are clamped to 62 by NetX", where(path, i), d.max()
            )
    if not np.any(ly.weight) and not (
        isinstance(ly, RecurrentDenseLayer) and np.any(ly.weight_rec)
    ):
        raise _fail(
            path,
            i,
            kind,
            "weight",
            "is all zero, which Lava's dense weight optimizer cannot encode",
        )
    if ly.weight.max() > 254 and ly.weight.min() < 0:
        log.warning(
            "%s (dense): mixed-sign weights above 254 are clipped to 254 by Lava", where(path, i)
        )
    return (ly.weight.shape[0],)


def _check_shortcuts(net: NetXNetwork, i: int, depth: dict[int, int], path) -> None:
    """The shortcuts of conv layer ``i``: each reads an earlier conv layer of CUBA neurons
    (a later one or the layer itself would close a cycle), its convolution of that layer's
    shape gives layer ``i``'s shape (the two synaptic inputs add), its weights are in range,
    and its delay makes both paths arrive in the same step: ``depth[i] - depth[source] - 1``
    (``depth``: a conv/dense layer's position on the chain, 1 for the first)."""
    ly = net.layers[i]
    for k, sc in enumerate(ly.shortcuts):
        prefix = f"shortcut/{k}/"
        src = sc.source
        if not 0 <= src < len(net.layers):
            raise _fail(
                path, i, ly.kind, prefix + "source", f"= {src} names no layer of the network"
            )
        if src >= i:
            raise _fail(
                path,
                i,
                ly.kind,
                prefix + "source",
                f"= {src} is not an earlier layer: the graph would have a cycle",
            )
        source = net.layers[src]
        if not isinstance(source, ConvLayer) or not isinstance(source.neuron, CubaNeuron):
            raise _fail(
                path,
                i,
                ly.kind,
                prefix + "source",
                f"= {src} is a {source.kind} layer; a shortcut reads the spikes of an earlier "
                "conv layer of CUBA neurons",
            )
        if not isinstance(ly.neuron, CubaNeuron):
            raise _fail(path, i, ly.kind, "neuron/type", "must be CUBA on a residual layer")
        _check_conv(sc, tuple(source.shape), (ly, prefix), path, i)
        _check_range(sc.weight, WEIGHT_MIN, WEIGHT_MAX, path, i, ly.kind, prefix + "weight")
        need = depth[i] - depth[src] - 1
        if sc.delay != need or not 0 <= sc.delay <= MAX_DELAY:
            raise _fail(
                path,
                i,
                ly.kind,
                prefix + "delay",
                f"= {sc.delay}, but the spikes of layer {src} reach layer {i} in the step the "
                f"main path's do only with delay {need} (0..{MAX_DELAY})",
            )


def validate_network(net: NetXNetwork, path: object | None = None) -> None:
    """Raise :class:`NetXValidationError` unless ``net`` is consistent and within hardware ranges."""
    if not net.input_shape or min(net.input_shape) < 1 or len(net.input_shape) not in (1, 3):
        raise NetXValidationError(
            f"{where(path)}: input shape {net.input_shape} must be (C, H, W) or (N,) with positive sizes"
        )
    shape = tuple(net.input_shape)
    flattened = False
    first_built = True  # no conv or dense layer yet
    depth = {i: k + 1 for k, (i, _) in enumerate(net.synaptic_layers)}
    for i, ly in enumerate(net.layers):
        if isinstance(ly, InputLayer):
            if i != 0:
                raise _fail(path, i, ly.kind, "type", "an input layer may only be layer 0")
            if tuple(ly.shape) != shape:
                raise _fail(
                    path, i, ly.kind, "shape", f"= {ly.shape} disagrees with input shape {shape}"
                )
            if ly.neuron is not None:
                _check_neuron(ly.neuron, path, i, ly.kind)
        elif isinstance(ly, ConvLayer):
            if flattened:
                raise _fail(path, i, ly.kind, "type", "a conv layer cannot follow a flatten layer")
            _check_common(ly, path, i)
            shape = _check_conv(ly, shape, (ly, ""), path, i)
            _check_shortcuts(net, i, depth, path)
            first_built = False
        elif isinstance(ly, FlattenLayer):
            if math.prod(ly.shape) != math.prod(shape):
                raise _fail(
                    path,
                    i,
                    ly.kind,
                    "shape",
                    f"= {ly.shape} but the previous layer has shape {shape}",
                )
            flattened = True
        elif isinstance(ly, DenseLayer):
            _check_common(ly, path, i)
            # lava-dl builds a dense layer that comes first after a neuron-less input layer with
            # a flat input port (C*H*W,): it reads the CHW input flattened, flatten layer or not
            reads_flat = flattened or (first_built and net.input_neuron is None)
            shape = _check_dense(ly, shape, reads_flat, path, i)
            flattened = first_built = False
        else:  # pragma: no cover - records are closed
            raise NetXValidationError(f"{where(path, i)}: unknown record {type(ly).__name__}")
    if not net.synaptic_layers:
        raise NetXValidationError(f"{where(path)}: the network has no conv or dense layer")
    if net.residual and not net.plain:
        raise NetXValidationError(
            f"{where(path)}: a residual network runs on the per-sample clock only, so it takes "
            "CUBA neurons without an input neuron, SDNN layers, delays or recurrence"
        )
