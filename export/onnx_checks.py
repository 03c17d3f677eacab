"""Validation of a loaded ONNX model before the importer touches it.

:func:`check_onnx_model` runs on the ``ModelProto`` right after parsing, before any tensor is
decoded by the importer, so a hostile or corrupt file fails with one specific error naming the
file, the node or initializer and the value, never deep inside onnx or numpy:

- :class:`CheckpointError`: the file is malformed or its values are unusable (absurd sizes,
  undecodable or non-finite tensors, dangling names, wrong ranks, external data, failed
  ``onnx.checker``);
- :class:`NotDeployableError`: a well-formed graph NetX cannot take (input rank, dtype).
"""

from __future__ import annotations

import numpy as np

from snn2loihi.export.errors import CheckpointError, NotDeployableError
from snn2loihi.export.onnx_geometry import node_name

MAX_NODES = 4096  # a NetX chain has at most a few hundred nodes
MAX_INITIALIZERS = 4096
MAX_TENSOR_VALUES = 1 << 26  # values per initializer (256 MiB of float32)
MAX_TOTAL_VALUES = 1 << 28  # values over all initializers and constants
MAX_INPUT_VALUES = 1 << 24  # C * H * W (or F) of the graph input
MAX_NAME_CHARS = 1024  # names and op types
MAX_ABS_VALUE = 1e15  # larger weights overflow float32 once scaled; no trained ANN has them

# Inputs the importer reads as constants, by op: input index -> role.
CONST_SLOTS = {
    "Conv": {1: "weight", 2: "bias"},
    "Gemm": {1: "weight", 2: "bias"},
    "MatMul": {1: "weight"},
    "BatchNormalization": {1: "scale", 2: "B", 3: "mean", 4: "var"},
    "Clip": {1: "min", 2: "max"},
    "Mul": {1: "constant"},
    "Add": {1: "constant"},
}
WEIGHT_RANK = {"Conv": 4, "Gemm": 2, "MatMul": 2}


def _float_types() -> dict[int, str]:
    from onnx import TensorProto

    return {TensorProto.FLOAT: "float", TensorProto.DOUBLE: "double", TensorProto.FLOAT16: "half"}


def _numeric_types() -> set[int]:
    from onnx import TensorProto as T

    ints = {T.INT8, T.INT16, T.INT32, T.INT64, T.UINT8, T.UINT16, T.UINT32, T.UINT64, T.BOOL}
    return ints | set(_float_types())


def _type_name(data_type: int) -> str:
    from onnx import TensorProto

    try:
        return TensorProto.DataType.Name(data_type)
    except ValueError:
        return f"unknown type {data_type}"


def _at(node) -> str:
    return f"node '{node_name(node)}' ({node.op_type})"


def check_onnx_model(model, path) -> None:
    """Validate ``model`` (an ``onnx.ModelProto`` read from ``path``); raise on the first fault."""
    graph = model.graph
    _check_counts(graph, path)
    _check_text(graph, path)
    consts = _decode_constants(graph, path)
    _check_names(graph, consts, path)
    _run_checker(model, path)
    _check_input(graph, consts, path)
    producers = {name: node for node in graph.node for name in node.output}
    for node in graph.node:
        _check_node(node, producers, consts, path)


def _check_counts(graph, path) -> None:
    if len(graph.node) > MAX_NODES:
        raise CheckpointError(
            f"'{path}': {len(graph.node)} nodes, more than the {MAX_NODES} allowed"
        )
    if len(graph.initializer) > MAX_INITIALIZERS:
        raise CheckpointError(
            f"'{path}': {len(graph.initializer)} initializers, more than the "
            f"{MAX_INITIALIZERS} allowed"
        )


def _texts(graph):
    """``(what, text)`` of every name and op type in the graph."""
    for v in (*graph.input, *graph.output):
        yield "graph input/output name", v.name
    for t in graph.initializer:
        yield "initializer name", t.name
    for i, node in enumerate(graph.node):
        yield f"node {i} name", node.name
        yield f"node {i} op type", node.op_type
        for name in (*node.input, *node.output):
            yield f"node {i} input/output name", name
        for a in node.attribute:
            yield f"node {i} attribute name", a.name


def _check_text(graph, path) -> None:
    """Names must be printable and short, so that every message naming them stays one line."""
    for what, text in _texts(graph):
        if isinstance(text, bytes):  # protobuf hands out invalid UTF-8 as bytes
            raise CheckpointError(f"'{path}': {what} {text[:60]!r} is not UTF-8 text")
        if not text.isprintable() or len(text) > MAX_NAME_CHARS:
            raise CheckpointError(
                f"'{path}': {what} {text[:60]!r} has control characters or more than "
                f"{MAX_NAME_CHARS} characters"
            )


def _constant_tensors(graph, path):
    """``(name, TensorProto, description)`` of every initializer and Constant node."""
    for t in graph.initializer:
        yield t.name, t, f"initializer '{t.name}'"
    for node in graph.node:
        if node.op_type != "Constant":
            continue
        attrs = [a for a in node.attribute if a.name == "value" and a.HasField("t")]
        if len(node.attribute) != 1 or not attrs or len(node.output) != 1:
            names = [a.name for a in node.attribute]
            raise CheckpointError(
                f"'{path}': {_at(node)} has attributes {names}; only a 'value' tensor is supported"
            )
        yield node.output[0], attrs[0].t, f"constant '{node.output[0]}' of {_at(node)}"


def _decode_constants(graph, path) -> dict[str, np.ndarray]:
    """Decode every constant after checking its location, dtype and size; values finite."""
    from onnx import TensorProto, numpy_helper

    out: dict[str, np.ndarray] = {}
    total = 0
    for name, t, what in _constant_tensors(graph, path):
        if t.data_location == TensorProto.EXTERNAL or t.external_data:
            raise CheckpointError(
                f"'{path}': {what} keeps its data in an external file; save the model "
                "with its weights inside (onnx.save(..., save_as_external_data=False))"
            )
        if t.data_type not in _numeric_types():
            raise CheckpointError(f"'{path}': {what} has dtype {_type_name(t.data_type)}")
        dims = list(t.dims)
        if any(d < 0 for d in dims):
            raise CheckpointError(f"'{path}': {what} has negative dims {dims}")
        size = int(np.prod(dims, dtype=object)) if dims else 1
        total += size
        if size > MAX_TENSOR_VALUES or total > MAX_TOTAL_VALUES:
            raise CheckpointError(
                f"'{path}': {what} has dims {dims} ({size} values); the limit is "
                f"{MAX_TENSOR_VALUES} per tensor and {MAX_TOTAL_VALUES} in all"
            )
        try:
            value = np.asarray(numpy_helper.to_array(t))
        except Exception as exc:  # noqa: BLE001 - any decoding failure means a corrupt tensor
            raise CheckpointError(
                f"'{path}': {what} (dims {dims}, {_type_name(t.data_type)}) cannot be decoded "
                f"({type(exc).__name__}: {str(exc)[:120]})"
            ) from None
        if value.size != size:
            raise CheckpointError(f"'{path}': {what} holds {value.size} values for dims {dims}")
        if t.data_type in _float_types():
            _check_finite(value, what, path)
        out[name] = value
    return out


def _check_finite(value: np.ndarray, what: str, path) -> None:
    bad = ~np.isfinite(value) | (np.abs(value) > MAX_ABS_VALUE)
    if bad.any():
        index = np.unravel_index(int(np.argmax(bad)), value.shape) if value.ndim else ()
        v = value[index] if value.ndim else value[()]
        raise CheckpointError(
            f"'{path}': {what} holds {str(v)} at index {tuple(int(i) for i in index)} "
            f"({int(bad.sum())} bad values); values must be finite with |v| <= {MAX_ABS_VALUE:g}"
        )


def _check_names(graph, consts: dict, path) -> None:
    """Every node has an output and reads only graph inputs, constants or earlier outputs."""
    known = {i.name for i in graph.input} | set(consts)
    for node in graph.node:
        if not node.output or not node.output[0]:
            raise CheckpointError(f"'{path}': {_at(node)} has no output")
        for k, name in enumerate(node.input):
            if name and name not in known:
                raise CheckpointError(
                    f"'{path}': {_at(node)}: input {k} '{name}' is not a graph input, an "
                    "initializer or the output of an earlier node (missing initializer?)"
                )
        for name in node.output:
            if name and name in known and node.op_type != "Constant":
                raise CheckpointError(f"'{path}': {_at(node)}: output '{name}' is defined twice")
            known.add(name)


def _run_checker(model, path) -> None:
    """``onnx.checker`` as a backstop for what the checks above do not cover (schemas, attrs)."""
    import onnx

    try:
        onnx.checker.check_model(model)
    except Exception as exc:  # noqa: BLE001 - ValidationError, or ValueError for odd protos
        detail = " ".join(str(exc).split())[:300]
        raise CheckpointError(f"'{path}' is not a valid ONNX model ({detail})") from None


def _check_input(graph, consts: dict, path) -> None:
    """One float graph input of fixed shape (N, C, H, W) or (N, F)."""
    inputs = [i for i in graph.input if i.name not in consts]
    if len(inputs) != 1:
        names = [i.name for i in inputs]
        raise NotDeployableError(f"'{path}': expected one graph input, found {names}")
    inp = inputs[0]
    tensor = inp.type.tensor_type
    if not inp.type.HasField("tensor_type") or tensor.elem_type not in _float_types():
        what = _type_name(tensor.elem_type) if inp.type.HasField("tensor_type") else "no tensor"
        raise NotDeployableError(f"'{path}': graph input '{inp.name}' is {what}; expected float")
    if not tensor.HasField("shape"):
        raise NotDeployableError(f"'{path}': graph input '{inp.name}' has no shape")
    dims = tensor.shape.dim
    if len(dims) not in (2, 4):
        raise NotDeployableError(
            f"'{path}': graph input '{inp.name}' has rank {len(dims)}; expected (N, C, H, W) "
            "or (N, F)"
        )
    shape = [d.dim_value if d.HasField("dim_value") else d.dim_param or "?" for d in dims]
    fixed = [v for v in shape[1:] if isinstance(v, int) and v >= 1]
    if len(fixed) != len(shape) - 1 or int(np.prod(fixed, dtype=object)) > MAX_INPUT_VALUES:
        raise NotDeployableError(
            f"'{path}': graph input '{inp.name}' has shape {shape}; all but the batch "
            f"dimension must be fixed positive sizes of at most {MAX_INPUT_VALUES} values"
        )


def _check_node(node, producers: dict, consts: dict, path) -> None:
    """Dtypes and ranks of the constants the importer reads; finite float attributes."""
    for a in node.attribute:
        values = list(a.floats) + ([a.f] if a.HasField("f") else [])
        if not np.isfinite(values).all():
            raise CheckpointError(f"'{path}': {_at(node)}: attribute '{a.name}' = {values}")
    slots = CONST_SLOTS.get(node.op_type, {})
    for k, role in slots.items():
        if k < len(node.input) and node.input[k] in consts:
            value = consts[node.input[k]]
            if value.dtype.kind != "f":
                raise CheckpointError(
                    f"'{path}': {_at(node)}: {role} '{node.input[k]}' is {value.dtype}; "
                    "expected float (float32)"
                )
    if node.op_type in WEIGHT_RANK:
        _check_weight(node, consts, path)
    elif node.op_type == "BatchNormalization":
        _check_batchnorm(node, producers, consts, path)
    elif node.op_type == "Clip":
        for k in (1, 2):
            v = _const(node, k, consts)
            if v is not None and v.size != 1:
                raise CheckpointError(
                    f"'{path}': {_at(node)}: {slots[k]} '{node.input[k]}' has shape {v.shape}; "
                    "expected a scalar"
                )
    elif node.op_type == "Add":
        _check_dense_bias_add(node, producers, consts, path)


def _const(node, k: int, consts: dict) -> np.ndarray | None:
    return consts.get(node.input[k]) if k < len(node.input) else None


def _out_features(node, consts: dict) -> int | None:
    """Output channels / features of a Conv, Gemm or MatMul with a constant weight."""
    w = _const(node, 1, consts)
    if w is None or node.op_type not in WEIGHT_RANK or w.ndim != WEIGHT_RANK[node.op_type]:
        return None
    if node.op_type == "Gemm":
        trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
        return int(w.shape[0] if trans_b else w.shape[1])
    return int(w.shape[1] if node.op_type == "MatMul" else w.shape[0])


def _check_weight(node, consts: dict, path) -> None:
    w = _const(node, 1, consts)
    if w is None:
        return  # the importer refuses a computed or missing weight by node
    rank = WEIGHT_RANK[node.op_type]
    if w.ndim != rank or 0 in w.shape:
        raise CheckpointError(
            f"'{path}': {_at(node)}: weight '{node.input[1]}' has shape {w.shape}; expected "
            f"{rank} non-empty dimensions"
        )
    b = _const(node, 2, consts)
    n = _out_features(node, consts)
    if b is not None and b.size not in ((n,) if node.op_type == "Conv" else (1, n)):
        raise CheckpointError(
            f"'{path}': {_at(node)}: bias '{node.input[2]}' has shape {b.shape}; the weight "
            f"{w.shape} has {n} outputs"
        )


def _check_batchnorm(node, producers: dict, consts: dict, path) -> None:
    params = [_const(node, k, consts) for k in (1, 2, 3, 4)]
    if any(p is None for p in params):
        return  # the importer refuses missing or computed parameters by node
    sizes = {p.size for p in params}
    prev = producers.get(node.input[0]) if node.input else None
    n = None if prev is None else _out_features(prev, consts)
    if len(sizes) != 1 or any(p.ndim != 1 for p in params) or (n is not None and sizes != {n}):
        shapes = [p.shape for p in params]
        raise CheckpointError(
            f"'{path}': {_at(node)}: scale/B/mean/var shapes {shapes} must all be ({n or 'C'},)"
        )
    eps = next((a.f for a in node.attribute if a.name == "epsilon"), 1e-5)
    var = params[3]
    bad = (var < 0) | (var + eps <= 0)
    if eps < 0 or bad.any():
        i = int(np.argmax(bad))
        raise CheckpointError(
            f"'{path}': {_at(node)}: var '{node.input[4]}' = {str(var[i])} at index {i} with "
            f"epsilon {eps}; variances must be >= 0 and var + epsilon > 0"
        )


def _check_dense_bias_add(node, producers: dict, consts: dict, path) -> None:
    """An Add of a constant after Gemm/MatMul is a bias: one value or one per output."""
    b = _const(node, 1, consts)
    prev = producers.get(node.input[0]) if b is not None and node.input else None
    n = None if prev is None else _out_features(prev, consts)
    if n is not None and prev.op_type != "Conv" and b.size not in (1, n):
        raise CheckpointError(
            f"'{path}': {_at(node)}: bias '{node.input[1]}' has shape {b.shape}; "
            f"'{node_name(prev)}' has {n} outputs"
        )
