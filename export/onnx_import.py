"""Read a plain ONNX conv/dense ReLU network into layer records (weights as float64 arrays).

Supported ops: Conv (any square kernel, equal strides, symmetric padding, see
:mod:`snn2loihi.export.onnx_geometry`), Gemm, MatMul (+ Add of a constant bias), Relu, Clip
(min 0), BatchNormalization (folded into the preceding Conv/Gemm), AveragePool (k x k, stride k,
folded into the next Conv of any stride; any unpadded window before Flatten + Gemm/MatMul, folded
into the dense weight), GlobalAveragePool (before Flatten + Gemm/MatMul), Flatten, and a leading
Mul/Add of constants on the graph input (an input affine such as snn2loihi's own ONNX export
writes). The graph must be one chain: anything else, such as a residual Add or MaxPool, is
refused naming op and node. The activation shape is tracked from the graph input's (C, H, W).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from snn2loihi.export import onnx_geometry as geo
from snn2loihi.export.errors import CheckpointError, NotDeployableError
from snn2loihi.export.onnx_checks import check_onnx_model

_HINTS = {
    "MaxPool": "use AveragePool (k x k, stride k; folded into the next conv)",
    "Add": "residual adds cannot run on NetX; use a plain conv stack",
    "Concat": "concatenation cannot run on NetX; use a plain conv stack",
}


@dataclass
class OnnxLayer:
    """One synapse: ``weight`` (Cout, Cin, k, k) or (Nout, Nin); ``bias`` (Cout,).

    Conv ``stride`` and ``padding`` are in units of the pooled input; ``pool`` is the factor of
    the k x k / stride k average pooling folded into the conv (1: none).
    """

    kind: str
    weight: np.ndarray
    bias: np.ndarray
    node: str
    stride: int = 1
    pool: int = 1
    relu: bool = False
    clip_max: float | None = None
    padding: int = 0


@dataclass
class OnnxNet:
    """The chain: input shape (C, H, W) or (F,), input affine ``x * gain + offset``, layers."""

    input_shape: tuple[int, ...]
    layers: list[OnnxLayer] = field(default_factory=list)
    gain: np.ndarray | None = None  # per channel, on the graph input
    offset: np.ndarray | None = None
    flatten_index: int | None = None
    shape: tuple[int, ...] | None = None  # the current activation's (C, H, W) or (F,)
    pools: list[geo.Pool] = field(default_factory=list)  # AveragePools waiting for a synapse
    pool_in_shape: tuple[int, ...] | None = None  # the activation shape before ``pools``

    def __post_init__(self):
        if self.shape is None and self.input_shape and min(self.input_shape) > 0:
            self.shape = tuple(self.input_shape)


def _attrs(node) -> dict:
    import onnx

    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


class _Reader:
    def __init__(self, graph):
        from onnx import numpy_helper

        self.consts = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
        for node in graph.node:
            if node.op_type == "Constant":
                self.consts[node.output[0]] = numpy_helper.to_array(_attrs(node)["value"])

    def const(self, node, index: int, what: str) -> np.ndarray:
        if len(node.input) <= index or node.input[index] == "":
            raise geo.refuse(node, f"missing {what}")
        name = node.input[index]
        if name not in self.consts:
            raise geo.refuse(node, f"{what} '{name}' is computed, expected a constant")
        return np.asarray(self.consts[name], dtype=np.float64)

    def has(self, node, index: int) -> bool:
        return len(node.input) > index and node.input[index] in self.consts


def read_onnx(path: str | Path) -> OnnxNet:
    """Parse ``path`` into an :class:`OnnxNet`; raise on unsupported ops or graph shapes."""
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # noqa: BLE001 - any protobuf failure means a bad file
        raise CheckpointError(f"'{path}' is not a readable ONNX model ({exc})") from None
    check_onnx_model(model, path)  # sizes, dtypes, finite values, ranks, names
    graph = model.graph
    r = _Reader(graph)
    inputs = [i for i in graph.input if i.name not in r.consts]
    if len(inputs) != 1:
        raise NotDeployableError(f"'{path}': expected one graph input, found {len(inputs)}")
    dims = [d.dim_value for d in inputs[0].type.tensor_type.shape.dim][1:]
    net = OnnxNet(input_shape=tuple(int(d) for d in dims))
    current = inputs[0].name
    for node in graph.node:
        if node.op_type == "Constant":
            continue
        if not node.input or node.input[0] != current:
            if node.op_type in _HINTS:
                raise geo.refuse(node, _HINTS[node.op_type])
            raise geo.refuse(node, "the graph is not a single chain (branch or residual input)")
        _apply(node, r, net)
        current = node.output[0]
    if not net.layers:
        raise NotDeployableError(f"'{path}': no Conv/Gemm/MatMul layer found")
    if net.pools:
        raise NotDeployableError(
            f"'{path}': AveragePool '{net.pools[-1].node}' is not followed by a Conv, Gemm or MatMul"
        )
    return net


def _last(node, net: OnnxNet) -> OnnxLayer:
    if not net.layers:
        raise geo.refuse(node, "must follow a Conv, Gemm or MatMul")
    return net.layers[-1]


def _apply(node, r: _Reader, net: OnnxNet) -> None:
    """Fold one node into ``net`` (one handler per supported op)."""
    op, a = node.op_type, _attrs(node)
    if op in ("Mul", "Add") and not net.layers and r.has(node, 1):
        _input_affine(node, r, net)
        return
    if op == "Add" and net.layers and r.has(node, 1) and net.layers[-1].kind == "dense":
        ly = _last(node, net)
        if ly.relu:
            raise geo.refuse(node, "a bias after the activation cannot be folded")
        ly.bias = ly.bias + r.const(node, 1, "bias").reshape(-1)
        return
    if op not in SUPPORTED_OPS:
        hint = _HINTS.get(op, f"supported: {', '.join(SUPPORTED_OPS)}")
        raise geo.refuse(node, f"op '{op}' cannot be converted; {hint}")
    if net.pools and op in ("BatchNormalization", "Relu", "Clip"):
        raise geo.refuse(node, f"must come before AveragePool '{net.pools[-1].node}', not after it")
    _HANDLERS[op](node, a, r, net)


def _input_affine(node, r: _Reader, net: OnnxNet) -> None:
    """A per-channel ``Mul``/``Add`` before the first layer: the input's gain and offset."""
    value = r.const(node, 1, "constant").reshape(-1)
    c = net.input_shape[0] if net.input_shape else 1
    if value.size not in (1, c):
        raise geo.refuse(node, "input affine must be per channel")
    value = np.broadcast_to(value, (c,)).copy()
    if node.op_type == "Mul":
        net.gain = value if net.gain is None else net.gain * value
        net.offset = None if net.offset is None else net.offset * value
    else:
        net.offset = value if net.offset is None else net.offset + value
    if net.gain is None:
        net.gain = np.ones_like(value)


def _batch_norm(node, a: dict, r: _Reader, net: OnnxNet) -> None:
    """BatchNormalization folded into the layer before it."""
    ly = _last(node, net)
    if ly.relu:
        raise geo.refuse(node, "BatchNormalization after the activation cannot be folded")
    gamma, beta = r.const(node, 1, "scale"), r.const(node, 2, "B")
    mean, var = r.const(node, 3, "mean"), r.const(node, 4, "var")
    k = gamma / np.sqrt(var + a.get("epsilon", 1e-5))
    ly.weight = ly.weight * k.reshape((-1,) + (1,) * (ly.weight.ndim - 1))
    ly.bias = k * (ly.bias - mean) + beta


def _activation(node, a: dict, r: _Reader, net: OnnxNet) -> None:
    """``Relu`` or ``Clip(0, max)``: the layer before it spikes."""
    ly = _last(node, net)
    if node.op_type == "Clip":
        lo = r.const(node, 1, "min") if r.has(node, 1) else a.get("min", None)
        hi = r.const(node, 2, "max") if r.has(node, 2) else a.get("max", None)
        if lo is None or float(np.asarray(lo)) != 0.0:
            raise geo.refuse(node, f"Clip min {lo}: only Clip(0, max) acts like ReLU")
        ly.clip_max = None if hi is None else float(np.asarray(hi))
    ly.relu = True


def _flatten(node, a: dict, r: _Reader, net: OnnxNet) -> None:
    if a.get("axis", 1) != 1:
        raise geo.refuse(node, "only Flatten(axis=1) is supported")
    net.flatten_index = len(net.layers)
    if net.shape is not None:
        net.shape = (int(np.prod(net.shape)),)


def _conv(node, a: dict, r: _Reader, net: OnnxNet) -> None:
    """A Conv, with the pending AveragePools folded into it (pool factor p)."""
    w = r.const(node, 1, "weight")
    if net.flatten_index is not None:
        raise geo.refuse(node, "a conv after Flatten is not supported")
    shape = net.shape if net.shape is not None and len(net.shape) == 3 else None
    k, s, q = geo.conv_geometry(node, a, w.shape, None if shape is None else shape[1:])
    b = r.const(node, 2, "bias") if r.has(node, 2) else np.zeros(w.shape[0])
    pool = geo.conv_pool_factor(node, net.pools)
    geo.check_pool_fold(node, net.pools, net.pool_in_shape, k, s, q)
    if shape is not None:
        if w.shape[1] != shape[0]:
            raise geo.refuse(
                node, f"weight {w.shape} expects {w.shape[1]} channels, input has {shape}"
            )
        net.shape = (int(w.shape[0]), *geo.conv_out_hw(node, shape[1:], k, s, q))
    net.layers.append(OnnxLayer("conv", w, b, node.name, s, pool, padding=q))
    net.pools, net.pool_in_shape = [], None


def _dense(node, a: dict, r: _Reader, net: OnnxNet) -> None:
    """A Gemm/MatMul (Flatten implied), with pending AveragePools folded into its weight."""
    w = r.const(node, 1, "weight")
    if node.op_type == "Gemm":
        w = w if a.get("transB", 0) else w.T
        if a.get("transA", 0):
            raise geo.refuse(node, "transA is not supported")
        w = w * a.get("alpha", 1.0)
        b = r.const(node, 2, "bias") * a.get("beta", 1.0) if r.has(node, 2) else None
    else:
        w, b = w.T, None
    if net.flatten_index is None:
        net.flatten_index = len(net.layers)
    if net.shape is not None:
        n_in = int(np.prod(net.shape))
        if w.ndim != 2 or w.shape[1] != n_in:
            raise geo.refuse(node, f"weight {w.shape} does not take the {n_in} inputs {net.shape}")
    if net.pools:
        w = geo.fold_pools_into_dense(w, net.pool_in_shape, net.pools)
        net.pools, net.pool_in_shape = [], None
    b = np.zeros(w.shape[0]) if b is None else np.broadcast_to(b.reshape(-1), (w.shape[0],))
    net.layers.append(OnnxLayer("dense", w, b.astype(np.float64), node.name))
    net.shape = (int(w.shape[0]),)


def _pool(node, a: dict, net: OnnxNet) -> None:
    """Queue an AveragePool / GlobalAveragePool for the next synapse."""
    if net.layers and not net.layers[-1].relu:
        raise geo.refuse(node, "average pooling must follow the activation (Relu/Clip)")
    if net.flatten_index is not None:
        raise geo.refuse(node, "average pooling after Flatten is not supported")
    if node.op_type == "GlobalAveragePool":
        pool = geo.global_average_pool(node, net.shape)
    else:
        pool = geo.average_pool(node, a, net.shape)
    if not net.pools:
        net.pool_in_shape = net.shape
    net.pools.append(pool)
    net.shape = (net.shape[0], *pool.out_hw(net.shape[1:]))


_HANDLERS = {
    "Conv": _conv,
    "Gemm": _dense,
    "MatMul": _dense,
    "BatchNormalization": _batch_norm,
    "Relu": _activation,
    "Clip": _activation,
    "AveragePool": lambda node, a, r, net: _pool(node, a, net),
    "GlobalAveragePool": lambda node, a, r, net: _pool(node, a, net),
    "Flatten": _flatten,
}
SUPPORTED_OPS = tuple(_HANDLERS)  # what converts; the rest is refused with a hint
