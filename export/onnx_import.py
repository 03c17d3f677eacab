"""Read a plain ONNX conv/dense ReLU network into layer records (weights as float64 arrays).

Supported ops: Conv (3x3, padding 1, stride 1 or 2), Gemm, MatMul (+ Add of a constant bias),
Relu, Clip (min 0), BatchNormalization (folded into the preceding Conv/Gemm), AveragePool (2x2,
stride 2, folded into the next stride-1 Conv), Flatten, and a leading Mul/Add of constants on
the graph input (an input affine such as snn2loihi's own ONNX export writes). The graph must be
one chain: anything else, such as a residual Add or MaxPool, is refused naming op and node.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from snn2loihi.export.errors import CheckpointError, NotDeployableError

SUPPORTED_OPS = (
    "Conv",
    "Gemm",
    "MatMul",
    "Relu",
    "Clip",
    "BatchNormalization",
    "AveragePool",
    "Flatten",
)
_HINTS = {
    "MaxPool": "use AveragePool 2x2 (folded into the next conv)",
    "Add": "residual adds cannot run on NetX; use a plain conv stack",
    "Concat": "concatenation cannot run on NetX; use a plain conv stack",
    "GlobalAveragePool": "use Flatten + Gemm",
}


@dataclass
class OnnxLayer:
    """One synapse: ``weight`` (Cout, Cin, 3, 3) or (Nout, Nin); ``bias`` (Cout,)."""

    kind: str
    weight: np.ndarray
    bias: np.ndarray
    node: str
    stride: int = 1
    pool: int = 1
    relu: bool = False
    clip_max: float | None = None


@dataclass
class OnnxNet:
    """The chain: input shape (C, H, W) or (F,), input affine ``x * gain + offset``, layers."""

    input_shape: tuple[int, ...]
    layers: list[OnnxLayer] = field(default_factory=list)
    gain: np.ndarray | None = None  # per channel, on the graph input
    offset: np.ndarray | None = None
    flatten_index: int | None = None
    pending_pool: int = 1  # AveragePool factor waiting for the next conv


def _attrs(node) -> dict:
    import onnx

    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _refuse(node, why: str) -> NotDeployableError:
    name = node.name or node.output[0]
    return NotDeployableError(f"ONNX node '{name}' ({node.op_type}): {why}")


class _Reader:
    def __init__(self, graph):
        from onnx import numpy_helper

        self.consts = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
        for node in graph.node:
            if node.op_type == "Constant":
                self.consts[node.output[0]] = numpy_helper.to_array(_attrs(node)["value"])

    def const(self, node, index: int, what: str) -> np.ndarray:
        if len(node.input) <= index or node.input[index] == "":
            raise _refuse(node, f"missing {what}")
        name = node.input[index]
        if name not in self.consts:
            raise _refuse(node, f"{what} '{name}' is computed, expected a constant")
        return np.asarray(self.consts[name], dtype=np.float64)

    def has(self, node, index: int) -> bool:
        return len(node.input) > index and node.input[index] in self.consts


def read_onnx(path: str | Path) -> OnnxNet:
    """Parse ``path`` into an :class:`OnnxNet`; raise on unsupported ops or graph shapes."""
    import onnx

    try:
        model = onnx.load(str(path))
    except Exception as exc:  # noqa: BLE001 - any protobuf failure means a bad file
        raise CheckpointError(f"'{path}' is not a readable ONNX model ({exc})") from None
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
                raise _refuse(node, _HINTS[node.op_type])
            raise _refuse(node, "the graph is not a single chain (branch or residual input)")
        _apply(node, r, net)
        current = node.output[0]
    if not net.layers:
        raise NotDeployableError(f"'{path}': no Conv/Gemm/MatMul layer found")
    return net


def _last(node, net: OnnxNet) -> OnnxLayer:
    if not net.layers:
        raise _refuse(node, "must follow a Conv, Gemm or MatMul")
    return net.layers[-1]


def _apply(node, r: _Reader, net: OnnxNet) -> None:
    """Fold one node into ``net`` (one branch per supported op)."""
    op, a = node.op_type, _attrs(node)
    pending_pool = net.pending_pool
    if op in ("Mul", "Add") and not net.layers and r.has(node, 1):
        value = r.const(node, 1, "constant").reshape(-1)
        c = net.input_shape[0] if net.input_shape else 1
        value = np.broadcast_to(value, (c,)).copy() if value.size in (1, c) else None
        if value is None:
            raise _refuse(node, "input affine must be per channel")
        if op == "Mul":
            net.gain = value if net.gain is None else net.gain * value
            net.offset = None if net.offset is None else net.offset * value
        else:
            net.offset = value if net.offset is None else net.offset + value
        if net.gain is None:
            net.gain = np.ones_like(value)
        return
    if op == "Add" and net.layers and r.has(node, 1) and net.layers[-1].kind == "dense":
        ly = _last(node, net)
        if ly.relu:
            raise _refuse(node, "a bias after the activation cannot be folded")
        ly.bias = ly.bias + r.const(node, 1, "bias").reshape(-1)
        return
    if op not in SUPPORTED_OPS:
        hint = _HINTS.get(op, f"supported: {', '.join(SUPPORTED_OPS)}")
        raise _refuse(node, f"op '{op}' cannot be converted; {hint}")
    if op == "Conv":
        w = r.const(node, 1, "weight")
        b = r.const(node, 2, "bias") if r.has(node, 2) else np.zeros(w.shape[0])
        stride = set(a.get("strides", [1, 1]))
        if w.shape[2:] != (3, 3) or list(a.get("pads", [1, 1, 1, 1])) != [1, 1, 1, 1]:
            raise _refuse(node, f"kernel {w.shape[2:]} / pads {a.get('pads')}: use 3x3, pads 1")
        if set(a.get("dilations", [1, 1])) != {1} or a.get("group", 1) != 1:
            raise _refuse(node, "dilated or grouped convs are not supported; use plain 3x3 convs")
        if len(stride) != 1 or stride.pop() not in (1, 2):
            raise _refuse(node, f"strides {a.get('strides')}: use 1 or 2")
        s = int(a.get("strides", [1, 1])[0])
        if pending_pool > 1 and s != 1:
            raise _refuse(node, "average pooling folds only into a stride-1 conv")
        if net.flatten_index is not None:
            raise _refuse(node, "a conv after Flatten is not supported")
        net.layers.append(OnnxLayer("conv", w, b, node.name, s, pending_pool))
        net.pending_pool = 1
        return
    if op in ("Gemm", "MatMul"):
        w = r.const(node, 1, "weight")
        if op == "Gemm":
            w = w if a.get("transB", 0) else w.T
            if a.get("transA", 0):
                raise _refuse(node, "transA is not supported")
            w = w * a.get("alpha", 1.0)
            b = r.const(node, 2, "bias") * a.get("beta", 1.0) if r.has(node, 2) else None
        else:
            w, b = w.T, None
        if pending_pool > 1:
            raise _refuse(node, "average pooling must be followed by a conv")
        if net.flatten_index is None:
            net.flatten_index = len(net.layers)
        b = np.zeros(w.shape[0]) if b is None else np.broadcast_to(b.reshape(-1), (w.shape[0],))
        net.layers.append(OnnxLayer("dense", w, b.astype(np.float64), node.name))
        return
    if op == "BatchNormalization":
        ly = _last(node, net)
        if ly.relu:
            raise _refuse(node, "BatchNormalization after the activation cannot be folded")
        gamma, beta = r.const(node, 1, "scale"), r.const(node, 2, "B")
        mean, var = r.const(node, 3, "mean"), r.const(node, 4, "var")
        k = gamma / np.sqrt(var + a.get("epsilon", 1e-5))
        ly.weight = ly.weight * k.reshape((-1,) + (1,) * (ly.weight.ndim - 1))
        ly.bias = k * (ly.bias - mean) + beta
        return
    if op in ("Relu", "Clip"):
        ly = _last(node, net)
        if op == "Clip":
            lo = r.const(node, 1, "min") if r.has(node, 1) else a.get("min", None)
            hi = r.const(node, 2, "max") if r.has(node, 2) else a.get("max", None)
            if lo is None or float(np.asarray(lo)) != 0.0:
                raise _refuse(node, f"Clip min {lo}: only Clip(0, max) acts like ReLU")
            ly.clip_max = None if hi is None else float(np.asarray(hi))
        ly.relu = True
        return
    if op == "AveragePool":
        if list(a.get("kernel_shape", [])) != [2, 2] or list(a.get("strides", [1, 1])) != [2, 2]:
            raise _refuse(node, "only 2x2 average pooling with stride 2 folds into a conv")
        if any(a.get("pads", [0])):
            raise _refuse(node, "padded average pooling is not supported")
        net.pending_pool = 2
        return
    if op == "Flatten":
        if a.get("axis", 1) != 1:
            raise _refuse(node, "only Flatten(axis=1) is supported")
        net.flatten_index = len(net.layers)
