"""Read a NIR graph file (HDF5, as ``nir.write`` lays it out) as untrusted input.

The file is read with h5py alone (the ``nir`` package is not needed to convert): every node
type, field name, dtype, shape and size is checked before a value is used, NaN and infinities
are refused (time constants may be ``+inf``: no leak), and sizes are bounded. Errors are
:class:`~snn2loihi.export.errors.NirFormatError` naming the file, the node and the field.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from snn2loihi.export.errors import NirFormatError

MAX_NODES = 1024
MAX_EDGES = 4096
MAX_ELEMENTS = 1 << 26  # values in one field
MAX_TOTAL = 1 << 27  # values in the whole graph
MAX_NAME = 256
MAX_META = 64  # graph metadata entries read

_REQ, _OPT = True, False
# node type -> field -> required; tau fields may be +inf
FIELDS: dict[str, dict[str, bool]] = {
    "Input": {"shape": _REQ},
    "Output": {"shape": _REQ},
    "Affine": {"weight": _REQ, "bias": _REQ},
    "Linear": {"weight": _REQ},
    "Conv2d": {
        "weight": _REQ,
        "bias": _OPT,
        "stride": _OPT,
        "padding": _OPT,
        "dilation": _OPT,
        "groups": _OPT,
        "input_shape": _OPT,
    },
    "Flatten": {"start_dim": _OPT, "end_dim": _OPT, "input_type": _OPT},
    "SumPool2d": {"kernel_size": _REQ, "stride": _OPT, "padding": _OPT},
    "AvgPool2d": {"kernel_size": _REQ, "stride": _OPT, "padding": _OPT},
    "Scale": {"scale": _REQ},
    "Threshold": {"threshold": _REQ},
    "I": {"r": _REQ},
    "IF": {"r": _REQ, "v_threshold": _REQ, "v_reset": _OPT},
    "LI": {"tau": _REQ, "r": _REQ, "v_leak": _REQ},
    "LIF": {"tau": _REQ, "r": _REQ, "v_leak": _REQ, "v_threshold": _REQ, "v_reset": _OPT},
    "CubaLI": {"tau_syn": _REQ, "tau_mem": _REQ, "r": _REQ, "v_leak": _REQ, "w_in": _OPT},
    "CubaLIF": {
        "tau_syn": _REQ,
        "tau_mem": _REQ,
        "r": _REQ,
        "v_leak": _REQ,
        "v_threshold": _REQ,
        "v_reset": _OPT,
        "w_in": _OPT,
    },
}
# Types NIR defines that have no Loihi form here: refused naming the node.
REFUSED = {
    "NIRGraph": "nested graphs (subgraphs, e.g. recurrent blocks) are not supported",
    "Conv1d": "1-D convolutions are not supported",
    "Delay": "delays are not supported",
}
TAU_FIELDS = ("tau", "tau_syn", "tau_mem")


@dataclass
class NirNode:
    """One node: its NIR type and its fields as float64 (or string) arrays."""

    name: str
    kind: str
    fields: dict[str, np.ndarray]


@dataclass
class NirGraphFile:
    """The nodes, edges and graph metadata of a NIR file."""

    path: str
    nodes: dict[str, NirNode]
    edges: list[tuple[str, str]]
    metadata: dict = field(default_factory=dict)


def _text(ds, what: str) -> str:
    if not hasattr(ds, "shape") or ds.shape not in ((), (1,)) or ds.dtype.kind not in "SOU":
        raise NirFormatError(f"{what} must be a string")
    value = ds[()]
    if isinstance(value, np.ndarray):
        value = value.reshape(-1)[0]
    if isinstance(value, bytes):
        try:
            value = value.decode("utf8")
        except UnicodeDecodeError:
            raise NirFormatError(f"{what} is not UTF-8 text") from None
    if not isinstance(value, str) or len(value) > MAX_NAME:
        raise NirFormatError(f"{what} must be a string of at most {MAX_NAME} characters")
    return value


def _values(ds, where: str, name: str, budget: list[int]) -> np.ndarray:
    import h5py

    if not isinstance(ds, h5py.Dataset):
        raise NirFormatError(f"{where}: field '{name}' is a group, not a dataset")
    if ds.dtype.kind in "SOU":
        if name == "padding":  # Conv2d padding may be 'same' or 'valid'
            return np.array(_text(ds, f"{where}: field 'padding'"))
        raise NirFormatError(f"{where}: field '{name}' holds text, not numbers")
    if ds.dtype.kind not in "biuf" or ds.dtype.itemsize > 8:
        raise NirFormatError(f"{where}: field '{name}' has dtype {ds.dtype}; numbers expected")
    size = math.prod(ds.shape)
    if size > MAX_ELEMENTS or ds.ndim > 6:
        raise NirFormatError(f"{where}: field '{name}' of shape {ds.shape} is too large")
    budget[0] += size
    if budget[0] > MAX_TOTAL:
        raise NirFormatError(f"{where}: the graph holds more than {MAX_TOTAL} values")
    a = np.asarray(ds[()], dtype=np.float64)
    bad = np.isnan(a) | (np.isinf(a) & ~((name in TAU_FIELDS) & (a > 0)))
    if bad.any():
        idx = tuple(int(i) for i in np.argwhere(bad)[0])
        raise NirFormatError(
            f"{where}: field '{name}'{list(idx) if idx else ''} = {a[bad].flat[0]} (NaN and "
            "infinities are refused; only time constants may be +inf)"
        )
    return a


def _node(group, name: str, where: str, budget: list[int]) -> NirNode:
    import h5py

    if not isinstance(group, h5py.Group) or "type" not in group:
        raise NirFormatError(f"{where}: not a NIR node (no 'type')")
    kind = _text(group["type"], f"{where}: field 'type'")
    if kind in REFUSED:
        raise NirFormatError(f"{where} ({kind}): {REFUSED[kind]}")
    if kind not in FIELDS:
        raise NirFormatError(
            f"{where}: node type '{kind}' is not supported ({', '.join(sorted(FIELDS))})"
        )
    spec = FIELDS[kind]
    fields = {}
    for key in group:
        if key in ("type", "metadata") or key not in spec:
            continue
        fields[key] = _values(group[key], f"{where} ({kind})", key, budget)
    for key, required in spec.items():
        if required and key not in fields:
            raise NirFormatError(f"{where} ({kind}): missing field '{key}'")
    return NirNode(name, kind, fields)


def _metadata(group) -> dict:
    import h5py

    out: dict = {}
    if "metadata" not in group or not isinstance(group["metadata"], h5py.Group):
        return out
    for key in list(group["metadata"])[:MAX_META]:
        ds = group["metadata"][key]
        if not isinstance(ds, h5py.Dataset) or ds.shape != ():
            continue
        if ds.dtype.kind in "SOU":
            try:
                out[key] = _text(ds, "metadata")
            except NirFormatError:
                continue
        elif ds.dtype.kind in "biuf":
            out[key] = float(ds[()])  # NaN/inf kept: the reader of a key refuses them
    return out


def read_nir(path: str | Path) -> NirGraphFile:
    """The graph of the NIR file ``path``, checked; raises :class:`NirFormatError`."""
    import h5py

    path = str(path)
    try:
        fh = h5py.File(path, "r")
    except FileNotFoundError:
        raise NirFormatError(f"{path}: no such file") from None
    except OSError as exc:
        raise NirFormatError(f"{path}: not an HDF5 file ({exc})") from None
    try:
        with fh:
            return _read_graph(fh, path)
    except NirFormatError as exc:
        raise NirFormatError(f"{path}: {exc}") from None
    except (OSError, KeyError, ValueError, TypeError, RuntimeError) as exc:
        raise NirFormatError(f"{path}: unreadable NIR file ({type(exc).__name__}: {exc})") from None


def _read_graph(fh, path: str) -> NirGraphFile:
    import h5py

    root = fh.get("node")
    if not isinstance(root, h5py.Group) or "type" not in root:
        raise NirFormatError("no NIR graph (group 'node' with a 'type')")
    if _text(root["type"], "graph type") != "NIRGraph":
        raise NirFormatError("the top node is not a NIRGraph")
    nodes_group = root.get("nodes")
    if not isinstance(nodes_group, h5py.Group):
        raise NirFormatError("graph has no 'nodes' group")
    names = list(nodes_group)
    if len(names) > MAX_NODES:
        raise NirFormatError(f"graph has {len(names)} nodes (at most {MAX_NODES})")
    budget = [0]
    nodes = {}
    for name in names:
        if len(name) > MAX_NAME:
            raise NirFormatError(f"node name of {len(name)} characters is too long")
        nodes[name] = _node(nodes_group[name], name, f"node '{name}'", budget)
    ds = root.get("edges")
    if not isinstance(ds, h5py.Dataset) or ds.dtype.kind not in "SOU":
        raise NirFormatError("graph has no 'edges' dataset of node names")
    if ds.size == 0:
        raise NirFormatError("graph has no edges")
    if ds.ndim != 2 or ds.shape[1] != 2 or ds.shape[0] > MAX_EDGES:
        raise NirFormatError(f"'edges' has shape {ds.shape}; expected (E <= {MAX_EDGES}, 2)")
    edges = []
    for a, b in ds[()]:
        pair = tuple(
            x.decode("utf8", "replace") if isinstance(x, bytes) else str(x) for x in (a, b)
        )
        for end in pair:
            if end not in nodes:
                raise NirFormatError(f"edge {pair[0]!r} -> {pair[1]!r} names no node {end!r}")
        edges.append(pair)
    return NirGraphFile(path, nodes, edges, _metadata(root))
