"""A NIR graph (one chain with its side edges, :mod:`.nir_graph`) -> float layers in two forms:
the NIR semantics and Loihi's form.

Each synapse (Affine/Linear/Conv2d, with Scale and pooling folded in) is followed by one neuron
node. Discretization (forward Euler with step ``dt``; ``dialect='norse'``: Norse's current jump
``I += w_in * x``): per step

    I = a_u * I + g_u * (W.s + b);  v = a_v * v + g_v * I + c;  spike if v > th: v = v_reset

with, for CubaLIF, ``a_u = 1 - dt/tau_syn``, ``g_u = dt w_in / tau_syn`` (Norse: ``w_in``, and
every ``tau`` read as ``tau / dt``: Norse's exporter writes ``dt / tau_inv``),
``a_v = 1 - dt/tau_mem``, ``g_v = dt r / tau_mem``, ``c = dt v_leak / tau_mem``; LIF/LI the same
without current state (``a_u = 0, g_u = 1``); IF/I ``a_v = 1, g_v = dt r, c = 0``; Threshold
``a_v = 0``. Loihi's CUBA neuron is ``u = a_u u + W'.s; v = a_v v + u + bias``: ``W' = g_u g_v W``,
per-channel thresholds folded into the weights, one decay per layer, reset to 0. What has no
exact Loihi form is changed and listed in ``changes``. A neuron node with several inputs sums
them: its shortcuts (#33, identity or one Conv2d from an earlier spiking layer's spikes of the
same step) enter ``W.s`` with the same gains and threshold folding as ``W``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from functools import partial

import numpy as np

from snn2loihi.export.errors import NotDeployableError
from snn2loihi.export.nir_graph import NEURONS, READOUTS, SYNAPSES, GraphShortcut, topology
from snn2loihi.export.nir_read import NirGraphFile, NirNode
from snn2loihi.schema import conv_output_hw

POOLS = ("SumPool2d", "AvgPool2d")
DIALECTS = ("euler", "norse")


@dataclass
class FloatShortcut:
    """A residual synapse into a conv layer: the spikes of the earlier float layer ``source``
    (index in the layer list) of the same step through a convolution, summed with the layer's
    own synaptic input. ``weight``: (Cout, Csource/groups, kH, kW), gains as the main weight."""

    name: str  # the synapse node, or "<source> (identity)"
    source: int
    weight: np.ndarray
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1


@dataclass
class FloatLayer:
    """One synapse + neuron in float: the dynamics of the module docstring, per channel."""

    name: str  # "synapse -> neuron" node names
    kind: str  # "conv" or "dense"
    weight: np.ndarray  # (Cout, Cin/g, kH, kW) as run (pooling expanded) or (Nout, Nin)
    bias: np.ndarray  # (Cout,): enters I (NIR) or v (Loihi form)
    a_u: np.ndarray
    g_u: np.ndarray
    a_v: np.ndarray
    g_v: np.ndarray
    c: np.ndarray
    threshold: np.ndarray | None  # None: a non-spiking readout
    v_reset: np.ndarray
    shape: tuple[int, ...] = ()
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1
    bias_in_current: bool = True
    # (Nout, Nout): the layer's own spikes of the previous step into its current (NetX dense_rec)
    weight_rec: np.ndarray | None = None
    # residual synapses: earlier layers' spikes of the same step into the current (#33)
    shortcuts: tuple[FloatShortcut, ...] = ()


@dataclass
class LoweredGraph:
    """The chain as NIR float layers and as Loihi-form float layers; what was changed."""

    input_shape: tuple[int, ...]  # CHW (or (N,)) of the images the network reads
    reference: list[FloatLayer]
    loihi: list[FloatLayer]
    changes: list[str] = field(default_factory=list)


_ZERO_ALLOWED = ("padding",)  # every other pair (stride, dilation, kernel, groups) is >= 1


def _pair(v, name: str, node: NirNode, default: int) -> tuple[int, int]:
    if v is None:
        return (default, default)
    a = np.asarray(v, dtype=np.float64).reshape(-1)
    if a.size == 1:
        a = np.repeat(a, 2)
    low = 0 if name in _ZERO_ALLOWED else 1
    if a.size != 2 or not np.all(a == np.round(a)) or a.min() < low or a.max() > 127:
        raise NotDeployableError(
            f"node '{node.name}' ({node.kind}): {name} {a.tolist()} is not 1 or 2 integers in "
            f"{low}..127"
        )
    return int(a[0]), int(a[1])


def _per_channel(v: np.ndarray, n: int, node: NirNode, name: str) -> np.ndarray:
    a = np.asarray(v, dtype=np.float64)
    if a.size == 1:
        return np.full(n, float(a.reshape(-1)[0]))
    if a.size == n:
        return a.reshape(n)
    if a.size and a.size % n == 0 and a.ndim >= 1 and a.shape[0] == n:
        flat = a.reshape(n, -1)
        if np.all(flat == flat[:, :1]):
            return flat[:, 0].copy()
    raise NotDeployableError(
        f"node '{node.name}' ({node.kind}): field '{name}' of shape {a.shape} does not match "
        f"the {n} channels it acts on"
    )


def _channel(node: NirNode, n: int, key: str, default=None) -> np.ndarray:
    """Field ``key`` of ``node`` per channel (n,), else ``default`` on every channel."""
    return (
        _per_channel(node.fields[key], n, node, key) if key in node.fields else np.full(n, default)
    )


def _conv_fields(node: NirNode, shape: tuple[int, ...]):
    """``(weight, stride, padding, dilation, groups)`` of Conv2d ``node`` on input ``shape``
    (C, H, W), checked ('same' padding only where it is symmetric)."""
    f = node.fields
    w = f["weight"]
    if w.ndim != 4 or len(shape) != 3:
        raise NotDeployableError(
            f"node '{node.name}' ({node.kind}): weight {w.shape} on input {shape}: a 2-D conv "
            "on (C, H, W) expected"
        )
    stride = _pair(f.get("stride"), "stride", node, 1)
    dilation = _pair(f.get("dilation"), "dilation", node, 1)
    groups = _pair(f.get("groups"), "groups", node, 1)
    if groups[0] != groups[1]:
        raise NotDeployableError(
            f"node '{node.name}' ({node.kind}): groups {list(groups)} is not one integer"
        )
    groups = groups[0]
    pad = f.get("padding")
    if pad is not None and pad.dtype.kind == "U":
        if str(pad) == "valid":
            padding = (0, 0)
        elif str(pad) == "same" and stride == (1, 1) and all(k % 2 for k in w.shape[2:]):
            padding = tuple(dilation[i] * (w.shape[2 + i] - 1) // 2 for i in range(2))
        else:
            raise NotDeployableError(
                f"node '{node.name}' ({node.kind}): padding '{pad}' has no symmetric zero "
                "padding form"
            )
    else:
        padding = _pair(pad, "padding", node, 0)
    if groups < 1 or shape[0] % groups or w.shape[1] * groups != shape[0]:
        raise NotDeployableError(
            f"node '{node.name}' ({node.kind}): weight {w.shape} with groups {groups} does not "
            f"fit input channels {shape[0]}"
        )
    return w, stride, padding, dilation, groups


class _Lowering:
    def __init__(self, g: NirGraphFile, image_shape, input_scale: float, dt: float, dialect: str):
        self.g, self.dt, self.dialect = g, dt, dialect
        # Norse's exporter writes tau = dt / tau_inv = dt * tau (norse/torch/utils/export_nir.py)
        self.tau_unit = dt if dialect == "norse" else 1.0
        self.changes: list[str] = []
        self.layers: list[FloatLayer] = []
        self.shape = image_shape
        self.in_scale: np.ndarray | float = input_scale  # multiplies the next synapse's input
        self.pool: tuple[NirNode, int, float] | None = None
        self.pending: dict | None = None  # synapse waiting for its neuron
        self.layer_of: dict[str, int] = {}  # neuron node name -> its layer's index

    def where(self, node: NirNode) -> str:
        return f"{self.g.path}: node '{node.name}' ({node.kind})"

    def refuse(self, node: NirNode, why: str):
        raise NotDeployableError(f"{self.where(node)}: {why}")

    # -- synapses ------------------------------------------------------------------------
    def _input_scale_flat(self, n_in: int, node: NirNode) -> np.ndarray:
        s = np.asarray(self.in_scale, dtype=np.float64)
        if s.size == 1:
            return np.full(n_in, float(s.reshape(-1)[0]))
        if s.size == n_in:
            return s.reshape(-1)
        c = self.shape[0] if len(self.shape) == 3 else None
        if c is not None and s.size == c:
            return np.repeat(s.reshape(-1), n_in // c)
        self.refuse(node, f"a Scale of shape {s.shape} before it does not fit its input {n_in}")

    def dense(self, node: NirNode):
        w = node.fields["weight"]
        if w.ndim != 2:
            self.refuse(node, f"weight of shape {w.shape}; (out, in) expected")
        n_in = math.prod(self.shape)
        if self.pool is not None:
            w = self._pool_dense(w, node)
            n_in = math.prod(self.shape)
        if w.shape[1] != n_in:
            self.refuse(
                node, f"weight {w.shape} does not fit its input of {n_in} values {self.shape}"
            )
        w = w * self._input_scale_flat(n_in, node)[None, :]
        b = node.fields.get("bias", np.zeros(w.shape[0]))
        b = _per_channel(b, w.shape[0], node, "bias")
        self._synapse(node, "dense", w, b, shape=(w.shape[0],))

    def _pool_dense(self, w: np.ndarray, node: NirNode) -> np.ndarray:
        pnode, p, factor = self.pool
        c, h, wd = self.pool_in
        if w.shape[1] != c * (h // p) * (wd // p):
            self.refuse(node, f"weight {w.shape} does not fit the pooled input of '{pnode.name}'")
        w4 = w.reshape(w.shape[0], c, h // p, wd // p)
        w4 = np.repeat(np.repeat(w4, p, axis=2), p, axis=3) * factor
        self.pool, self.shape = None, (c, h, wd)
        return w4.reshape(w.shape[0], -1)

    def conv(self, node: NirNode):
        w, stride, padding, dilation, groups = _conv_fields(node, self.shape)
        s = np.asarray(self.in_scale, dtype=np.float64)
        if s.size not in (1, self.shape[0]):
            if s.size == math.prod(self.shape) and np.all(
                s.reshape(self.shape[0], -1) == s.reshape(self.shape[0], -1)[:, :1]
            ):
                s = s.reshape(self.shape[0], -1)[:, 0]
            else:
                self.refuse(node, f"a Scale of shape {s.shape} before a conv must be per channel")
        if s.size > 1:  # per input channel, grouped
            idx = np.arange(w.shape[1])
            cols = [s[(o // (w.shape[0] // groups)) * w.shape[1] + idx] for o in range(w.shape[0])]
            w = w * np.stack(cols)[:, :, None, None]
        else:
            w = w * float(s.reshape(-1)[0])
        if self.pool is not None:
            pnode, p, factor = self.pool
            if dilation != (1, 1) or self.shape[1] % p or self.shape[2] % p:
                self.refuse(
                    pnode,
                    f"pooling {p}x{p} folds into the next conv only without dilation on an input divisible by {p}",
                )
            w = np.repeat(np.repeat(w, p, axis=2), p, axis=3) * factor
            stride = (stride[0] * p, stride[1] * p)
            padding = (padding[0] * p, padding[1] * p)
            self.shape = self.pool_in
            self.pool = None
        hw = conv_output_hw(self.shape[1:], tuple(w.shape[2:]), stride, padding, dilation)
        if min(hw) < 1:
            self.refuse(node, f"input {self.shape} is too small for this conv")
        b = _per_channel(node.fields.get("bias", np.zeros(w.shape[0])), w.shape[0], node, "bias")
        self._synapse(
            node,
            "conv",
            w,
            b,
            shape=(w.shape[0], *hw),
            stride=stride,
            padding=padding,
            dilation=dilation,
            groups=groups,
        )

    def _synapse(self, node, kind, w, b, **geometry):
        if self.pending is not None:
            self.refuse(
                node, f"follows synapse '{self.pending['name']}' without a neuron in between"
            )
        if self.pool is not None:
            self.refuse(self.pool[0], "pooling must be followed by a conv or Flatten + Affine")
        self.pending = dict(name=node.name, kind=kind, weight=w, bias=b, **geometry)
        self.in_scale = 1.0
        self.shape = geometry["shape"]

    # -- other nodes ---------------------------------------------------------------------
    def pool_node(self, node: NirNode):
        f = node.fields
        k = _pair(f["kernel_size"], "kernel_size", node, 1)
        stride = _pair(f.get("stride"), "stride", node, k[0])
        padding = _pair(f.get("padding"), "padding", node, 0)
        if k[0] != k[1] or stride != k or padding != (0, 0) or len(self.shape) != 3:
            self.refuse(
                node,
                f"only square k x k pooling with stride k and no padding on (C, H, W) folds (kernel {k}, stride {stride}, padding {padding})",
            )
        if self.pending is not None or self.pool is not None:
            self.refuse(node, "pooling must follow a neuron (spikes) or the input")
        p = k[0]
        if self.shape[1] % p or self.shape[2] % p:
            self.refuse(node, f"input {self.shape} is not divisible by the pooling {p}")
        self.pool = (node, p, 1.0 / (p * p) if node.kind == "AvgPool2d" else 1.0)
        self.pool_in = self.shape
        self.shape = (self.shape[0], self.shape[1] // p, self.shape[2] // p)

    def scale(self, node: NirNode):
        s = node.fields["scale"]
        if self.pending is not None:  # after a synapse: scales its output rows
            n = self.pending["weight"].shape[0]
            sc = _per_channel(s, n, node, "scale")
            shape = (-1,) + (1,) * (self.pending["weight"].ndim - 1)
            self.pending["weight"] = self.pending["weight"] * sc.reshape(shape)
            self.pending["bias"] = self.pending["bias"] * sc
        else:
            self.in_scale = np.asarray(self.in_scale) * s

    def recurrent(self, node: NirNode, rec: NirNode, last: bool):
        """The recurrent synapse ``rec`` onto neuron ``node``: (weight_rec, bias_rec)."""
        syn = self.pending
        if last:
            self.refuse(node, f"recurrent synapse '{rec.name}' onto the readout (last neuron)")
        if syn is None or syn["kind"] != "dense":
            self.refuse(node, f"recurrent synapse '{rec.name}' needs an Affine/Linear before it")
        n = syn["weight"].shape[0]
        w = rec.fields["weight"]
        if w.shape != (n, n):
            self.refuse(rec, f"weight of shape {w.shape}; ({n}, {n}) expected (recurrent)")
        b = _per_channel(rec.fields.get("bias", np.zeros(n)), n, rec, "bias")
        return w, b

    def shortcut(self, node: NirNode, sc: GraphShortcut) -> FloatShortcut:
        """Shortcut ``sc`` onto neuron ``node`` (whose synapse is pending) as a float synapse;
        its bias adds to the pending synapse's bias (both enter the same current)."""
        syn = self.pending
        src = self.layer_of.get(sc.source)
        if src is None:
            self.refuse(node, f"shortcut source '{sc.source}' is not an earlier neuron layer")
        source = self.layers[src]
        if syn["kind"] != "conv" or source.kind != "conv":
            self.refuse(
                node,
                f"shortcut from '{sc.source}' ({source.kind} layer) into a {syn['kind']} layer: "
                "the residual superset carries shortcuts between conv layers only",
            )
        if sc.synapse is None:
            if tuple(source.shape) != tuple(syn["shape"]):
                self.refuse(
                    node,
                    f"identity shortcut from '{sc.source}' of shape {tuple(source.shape)} into "
                    f"shape {tuple(syn['shape'])}: the two inputs do not add",
                )
            c = source.shape[0]
            return FloatShortcut(f"{sc.source} (identity)", src, np.eye(c)[:, :, None, None])
        s = sc.synapse
        if s.kind != "Conv2d":
            self.refuse(s, "a shortcut into a conv layer must be a Conv2d (or an identity edge)")
        w, stride, padding, dilation, groups = _conv_fields(s, tuple(source.shape))
        hw = conv_output_hw(source.shape[1:], tuple(w.shape[2:]), stride, padding, dilation)
        if (w.shape[0], *hw) != tuple(syn["shape"]):
            self.refuse(
                s,
                f"field 'weight' {w.shape} (stride {list(stride)}, padding {list(padding)}) "
                f"gives shape {(w.shape[0], *hw)} from '{sc.source}', but '{node.name}' has "
                f"{tuple(syn['shape'])}: the two inputs do not add",
            )
        syn["bias"] = syn["bias"] + _per_channel(
            s.fields.get("bias", np.zeros(w.shape[0])), w.shape[0], s, "bias"
        )
        return FloatShortcut(s.name, src, w, stride, padding, dilation, groups)

    def neuron(
        self,
        node: NirNode,
        last: bool,
        rec: NirNode | None = None,
        shortcuts: list[GraphShortcut] = (),
    ):
        if self.pending is None:
            self.refuse(node, "a neuron needs a synapse (Affine, Linear or Conv2d) before it")
        weight_rec = None
        if rec is not None:
            weight_rec, bias_rec = self.recurrent(node, rec, last)
            self.pending["bias"] = self.pending["bias"] + bias_rec
        float_shortcuts = tuple(self.shortcut(node, sc) for sc in shortcuts)
        syn, self.pending = self.pending, None
        n = syn["weight"].shape[0]
        a_u, g_u, a_v, g_v, c = self.dynamics(node, n)
        k = node.kind
        ch = partial(_channel, node, n)
        th = None
        if k not in READOUTS:
            th = ch("threshold" if k == "Threshold" else "v_threshold")
        v_reset = ch("v_reset", 0.0) if k not in READOUTS else np.zeros(n)
        geometry = {
            key: syn[key]
            for key in ("shape", "stride", "padding", "dilation", "groups")
            if key in syn
        }
        self.layers.append(
            FloatLayer(
                f"{syn['name']} -> {node.name}",
                syn["kind"],
                syn["weight"],
                syn["bias"],
                a_u,
                g_u,
                a_v,
                g_v,
                c,
                th,
                v_reset,
                **geometry,
                weight_rec=weight_rec,
                shortcuts=float_shortcuts,
            )
        )
        self.layer_of[node.name] = len(self.layers) - 1

    def dynamics(self, node: NirNode, n: int):
        """``(a_u, g_u, a_v, g_v, c)`` of neuron ``node``, each (n,) per channel: the current's
        and the membrane's retention per step and input gains, and the leak's drive per step
        (the module docstring's Euler form, step ``dt``); retention outside 0..1 is refused."""
        ch, dt = partial(_channel, node, n), self.dt
        zeros, ones = np.zeros(n), np.ones(n)
        a_u, g_u, c = zeros, ones, zeros
        k = node.kind
        if k in ("IF", "I"):
            a_v, g_v = ones, dt * ch("r")
        elif k == "Threshold":
            a_v, g_v = zeros, ones
        else:
            tau = ch("tau_mem" if k.startswith("Cuba") else "tau") / self.tau_unit
            if np.any(tau <= 0):
                self.refuse(node, "time constants must be > 0")
            a_v, g_v, c = 1 - dt / tau, dt * ch("r") / tau, dt * ch("v_leak") / tau
            if k.startswith("Cuba"):
                tau_s = ch("tau_syn") / self.tau_unit
                if np.any(tau_s <= 0):
                    self.refuse(node, "time constants must be > 0")
                w_in = ch("w_in", 1.0)
                a_u = 1 - dt / tau_s
                g_u = w_in if self.dialect == "norse" else dt * w_in / tau_s
        for name, a in (("membrane", a_v), ("current", a_u)):
            if np.any(a < 0) or np.any(a > 1):
                self.refuse(
                    node, f"{name} retention 1 - dt/tau outside 0..1 (dt = {dt}); give --dt"
                )
        return a_u, g_u, a_v, g_v, c


def _input_shape(node: NirNode, image_shape) -> tuple[int, ...]:
    s = node.fields["shape"].reshape(-1)
    if (
        s.size > 4
        or not np.all(s == np.round(s))
        or s.min(initial=1) < 1
        or s.max(initial=1) > 1 << 24
    ):
        raise NotDeployableError(
            f"node '{node.name}' (Input): shape {s.tolist()} is not a (C, H, W) or (N,) shape"
        )
    shape = tuple(int(v) for v in s)
    while len(shape) > 1 and shape[0] == 1 and len(shape) in (2, 4):  # a batch dimension
        shape = shape[1:]
    if image_shape is not None:
        if shape != tuple(image_shape) and math.prod(shape) != math.prod(image_shape):
            raise NotDeployableError(
                f"node '{node.name}' (Input): shape {shape} does not fit the calibration images {tuple(image_shape)}"
            )
        # a flat graph input reads the images flattened in CHW order (NetX's dense input)
        return shape if len(shape) == 1 else tuple(image_shape)
    if len(shape) not in (1, 3):
        raise NotDeployableError(
            f"node '{node.name}' (Input): shape {shape}; (C, H, W) or (N,) expected"
        )
    return shape


def graph_input_shape(g: NirGraphFile) -> tuple[int, ...] | None:
    """The (C, H, W) or (N,) shape the graph's Input node declares, or None where it declares
    none of them (lowering then says why)."""
    try:
        return _input_shape(topology(g).chain[0], None)
    except NotDeployableError:
        return None


def lower(
    g: NirGraphFile, *, image_shape=None, input_scale=1 / 255, dt=1e-4, dialect="euler"
) -> LoweredGraph:
    """The chain of ``g`` as NIR float layers and Loihi-form float layers."""
    if dialect not in DIALECTS:
        raise ValueError(f"dialect {dialect!r} not in {DIALECTS}")
    graph = topology(g)
    chain, recurrent = graph.chain, graph.recurrent
    shape = _input_shape(chain[0], image_shape)
    lw = _Lowering(g, shape, input_scale, dt, dialect)
    body = chain[1:-1]
    neurons = [i for i, n in enumerate(body) if n.kind in NEURONS]
    for i, node in enumerate(body):
        if node.kind in SYNAPSES:
            lw.dense(node) if node.kind != "Conv2d" else lw.conv(node)
        elif node.kind in NEURONS:
            if node.kind in READOUTS and i != neurons[-1]:
                lw.refuse(
                    node,
                    "a non-spiking neuron (I, LI, CubaLI) converts only as the readout (last neuron)",
                )
            lw.neuron(
                node, i == neurons[-1], recurrent.get(node.name), graph.shortcuts.get(node.name, [])
            )
        elif node.kind in POOLS:
            lw.pool_node(node)
        elif node.kind == "Scale":
            lw.scale(node)
        elif node.kind == "Flatten":
            if lw.pool is None:
                lw.shape = (math.prod(lw.shape),)
        else:
            lw.refuse(node, "has no Loihi form here")
    recurrent_layer = next((ly for ly in lw.layers if ly.weight_rec is not None), None)
    if recurrent_layer is not None and any(ly.shortcuts for ly in lw.layers):
        raise NotDeployableError(
            f"{g.path}: nodes '{recurrent_layer.name}': a recurrent layer and residual shortcuts "
            "in one graph (residual networks run on the per-sample clock only, recurrent ones "
            "on the global clock only)"
        )
    if lw.pending is not None or not lw.layers:
        raise NotDeployableError(
            f"{g.path}: the graph must end with a neuron node before Output (found none after '{lw.pending['name'] if lw.pending else 'Input'}')"
        )
    loihi = [
        loihi_form(ly, lw.changes, last=k == len(lw.layers) - 1) for k, ly in enumerate(lw.layers)
    ]
    return LoweredGraph(shape, lw.layers, loihi, lw.changes)


def _one(a: np.ndarray, what: str, ly: FloatLayer, changes: list[str]) -> float:
    if np.ptp(a) > 1e-9 * max(1.0, float(np.abs(a).max())):
        changes.append(
            f"{ly.name}: per-neuron {what} {float(a.min()):.6g}..{float(a.max()):.6g} replaced by their mean {float(a.mean()):.6g} (Loihi: one per layer)"
        )
    return float(a.mean())


def _rows(sc: FloatShortcut, factor: np.ndarray) -> FloatShortcut:
    """Shortcut ``sc`` with its output rows (the target layer's neurons) times ``factor``."""
    return replace(sc, weight=sc.weight * factor.reshape(-1, 1, 1, 1))


def loihi_form(ly: FloatLayer, changes: list[str], last: bool) -> FloatLayer:
    """``ly`` in Loihi's form (scalar decays, current gain 1, bias into v, reset to 0)."""
    n = ly.weight.shape[0]
    a_u = _one(ly.a_u, "current retention (tau_syn)", ly, changes)
    a_v = _one(ly.a_v, "membrane retention (tau_mem)", ly, changes)
    gain = ly.g_u * ly.g_v
    shape = (-1,) + (1,) * (ly.weight.ndim - 1)
    w = ly.weight * gain.reshape(shape)
    w_rec = None if ly.weight_rec is None else ly.weight_rec * gain[:, None]
    shortcuts = [_rows(sc, gain) for sc in ly.shortcuts]
    b = ly.bias * gain
    if a_u > 0 and np.any(ly.bias != 0):
        b = b / (1 - a_u) if a_u < 1 else b
        changes.append(
            f"{ly.name}: the bias enters the synaptic current in NIR; on Loihi it enters v (scaled by 1/(1 - {a_u:.6g}) to keep its steady state)"
        )
    b = b + ly.c
    th = ly.threshold
    if th is not None and np.any(ly.v_reset != 0):
        changes.append(
            f"{ly.name}: reset to v_reset {float(ly.v_reset.min()):.6g}..{float(ly.v_reset.max()):.6g} replaced by Loihi's reset to 0"
        )
    if th is not None:
        if np.any(th <= 0):
            raise NotDeployableError(
                f"{ly.name}: v_threshold {float(th.min())} must be > 0 on Loihi"
            )
        top = float(th.max())
        ratio = top / th
        w, b = w * ratio.reshape(shape), b * ratio
        w_rec = None if w_rec is None else w_rec * ratio[:, None]
        shortcuts = [_rows(sc, ratio) for sc in shortcuts]
        th = np.full(n, top)
    one = np.ones(n)
    return replace(
        ly,
        weight=w,
        weight_rec=w_rec,
        shortcuts=tuple(shortcuts),
        bias=b,
        a_u=one * a_u,
        g_u=one,
        a_v=one * a_v,
        g_v=one,
        c=np.zeros(n),
        threshold=th,
        v_reset=np.zeros(n),
        bias_in_current=False,
    )


def as_readout(ly: FloatLayer, changes: list[str]) -> FloatLayer:
    """The last layer as a non-spiking readout (argmax of v after the last step)."""
    if ly.threshold is not None:
        changes.append(
            f"{ly.name}: the last spiking layer is read out by its membrane v (threshold and reset dropped; prediction argmax v after the last step)"
        )
    return replace(ly, threshold=None)
