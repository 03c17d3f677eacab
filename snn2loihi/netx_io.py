"""Read and write NetX HDF5 (``.net``) files as :class:`~snn2loihi.schema.NetXNetwork` records.

The writer produces files that ``lava.lib.dl.netx.hdf5.Network`` loads; the reader accepts those
and files written by lava-dl's slayer ``export_hdf5``. ``read_network(write_network(net))`` equals
``net`` exactly. Both validate against hardware ranges (:func:`snn2loihi.validate.validate_network`).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import h5py
import numpy as np

from snn2loihi.arrays import BUDGET_ENV, memory_budget, size_text
from snn2loihi.atomic import atomic_path
from snn2loihi.errors import (
    NetXFormatError,
    NetXValidationError,
    Snn2LoihiError,
    UnsupportedLayerError,
    where,
)
from snn2loihi.schema import (
    CUBA_TYPES,
    FORMAT_ATTR,
    REFUSED_TYPES,
    RESIDUAL_FORMAT,
    RESIDUAL_TYPE,
    SDNN_TYPE,
    SUPPORTED_TYPES,
    ConvLayer,
    CubaNeuron,
    DenseLayer,
    FlattenLayer,
    InputLayer,
    Layer,
    NetXNetwork,
    Neuron,
    RecurrentDenseLayer,
    Shortcut,
    SigmaDeltaNeuron,
)
from snn2loihi.validate import validate_network

_T = TypeVar("_T")

MAX_LAYERS = 4096
MAX_ELEMENTS = 2**27  # refuse datasets larger than this (hostile files)
MAX_STRING_BYTES = 256  # layer and neuron type names are a few characters
log = logging.getLogger(__name__)

STEPS_ATTR = "steps"  # root attribute: the time steps T the network was trained for
SIMULATION_GROUP = "simulation"  # slayer's export: Ts (time step) and tSample (sample length)
MAX_STEPS = 4096  # train.steps' upper bound


# ----------------------------------------------------------------------------------------- writer
def _put_type(g: h5py.Group, kind: str) -> None:
    g.create_dataset("type", (1,), "S10", [kind.encode("ascii")])


def _put_neuron(g: h5py.Group, n: Neuron) -> None:
    if isinstance(n, CubaNeuron) and n.netx_default:
        return  # no group: NetX builds its default neuron
    ng = g.create_group("neuron")
    if isinstance(n, SigmaDeltaNeuron):
        ng.create_dataset("type", data=SDNN_TYPE)
        ng.create_dataset("activation", data=n.activation)
        ng.create_dataset("vThMant", data=np.int64(n.vth_mant))
        if n.sigma_output:
            ng.create_dataset("sigma_output", data=np.bool_(True))
        return
    ng.create_dataset("type", data=n.type_name)
    ng.create_dataset("iDecay", data=np.int64(n.i_decay))
    ng.create_dataset("vDecay", data=np.int64(n.v_decay))
    ng.create_dataset("vThMant", data=np.int64(n.vth_mant))
    ng.create_dataset("refDelay", data=np.int64(n.ref_delay))
    ng.create_dataset("gradedSpike", data=np.bool_(n.graded_spike))


# weights of at least this many values are written gzip-compressed (level 4): an 8-bit weight
# in int32 compresses about 3.6x, and h5py (lava-dl's NetX reader too) decompresses on read
COMPRESS_MIN_VALUES = 4096


def _put_weight(g: h5py.Group, name: str, weight: np.ndarray) -> None:
    """``weight`` as the int32 dataset ``name``; gzip-compressed when it is large."""
    w = weight.astype(np.int32)
    opts = {"compression": "gzip", "compression_opts": 4} if w.size >= COMPRESS_MIN_VALUES else {}
    g.create_dataset(name, data=w, **opts)


def _put_geometry(g: h5py.Group, syn: ConvLayer | Shortcut) -> None:
    """A convolution's stride, padding, dilation (H, W) and groups, as NetX reads them."""
    g.create_dataset("stride", data=np.asarray(syn.stride, dtype=np.int64))
    g.create_dataset("padding", data=np.asarray(syn.padding, dtype=np.int64))
    g.create_dataset("dilation", data=np.asarray(syn.dilation, dtype=np.int64))
    g.create_dataset("groups", data=np.int64(syn.groups))


def _put_shortcuts(g: h5py.Group, ly: ConvLayer) -> None:
    """A residual layer's fields beyond NetX: ``main`` (its own synapse's type) and one group
    ``shortcut/<k>`` per shortcut (docs/netx-format.md, the residual superset)."""
    g.create_dataset("main", data=ly.kind)
    for k, sc in enumerate(ly.shortcuts):
        sg = g.create_group(f"shortcut/{k}")
        sg.create_dataset("source", data=np.int64(sc.source))
        sg.create_dataset("delay", data=np.int64(sc.delay))
        _put_weight(sg, "weight", sc.weight)
        _put_geometry(sg, sc)


def _write_layer(g: h5py.Group, ly: Layer) -> None:
    residual = isinstance(ly, ConvLayer) and bool(ly.shortcuts)
    _put_type(g, RESIDUAL_TYPE if residual else ly.kind)
    g.create_dataset("shape", data=np.asarray(ly.shape, dtype=np.int64))
    if isinstance(ly, InputLayer):
        if ly.neuron is not None:
            _put_neuron(g, ly.neuron)
        for name in ("weight", "bias"):
            if getattr(ly, name) is not None:
                g.create_dataset(name, data=np.float32(getattr(ly, name)))
        return
    if isinstance(ly, ConvLayer):
        _put_weight(g, "weight", ly.weight)
        _put_geometry(g, ly)
        if residual:
            _put_shortcuts(g, ly)
    elif isinstance(ly, DenseLayer):
        _put_weight(g, "weight", ly.weight)
        if isinstance(ly, RecurrentDenseLayer):
            _put_weight(g, "weight_rec", ly.weight_rec)
        if ly.delay is not None:
            g.create_dataset("delay", data=np.asarray(ly.delay, dtype=np.int64))
    if isinstance(ly, ConvLayer | DenseLayer):
        if ly.bias is not None:
            g.create_dataset("bias", data=ly.bias.astype(np.int32))
        _put_neuron(g, ly.neuron)


def write_network(net: NetXNetwork, path: str | os.PathLike, *, overwrite: bool = True) -> Path:
    """Validate ``net`` and write it atomically as a NetX HDF5 file; return the path.

    A network whose first layer is not an input layer gets one, so that NetX knows the input
    shape. Raises :class:`NetXValidationError` (nothing is written) if the network is invalid.
    """
    path = Path(path)
    layers = net.layers
    if not layers or not isinstance(layers[0], InputLayer):
        layers = (InputLayer(tuple(net.input_shape)), *layers)
    net = NetXNetwork(layers=layers, input_shape=tuple(net.input_shape), steps=net.steps)
    validate_network(net, path)
    if net.steps is not None:
        _check_steps(net.steps, path)
    with atomic_path(path, overwrite=overwrite) as tmp:
        with h5py.File(tmp, "w") as f:
            if net.steps is not None:
                f.attrs[STEPS_ATTR] = np.int64(net.steps)
            if net.residual:
                f.attrs[FORMAT_ATTR] = np.int64(RESIDUAL_FORMAT)
            lg = f.create_group("layer")
            for i, ly in enumerate(net.layers):
                _write_layer(lg.create_group(str(i)), ly)
    return path


def _check_steps(steps, path: Path) -> int:
    """``steps`` as an int in 1..:data:`MAX_STEPS`, or :class:`NetXFormatError` naming it."""
    ok = isinstance(steps, int | np.integer) and not isinstance(steps, bool | np.bool_)
    if not ok or not 1 <= int(steps) <= MAX_STEPS:
        raise NetXFormatError(
            f"{path}: root attribute '{STEPS_ATTR}' = {steps!r} must be an integer in "
            f"[1, {MAX_STEPS}] (the time steps T per sample)"
        )
    return int(steps)


def _read_steps(f: h5py.File, path: Path) -> int | None:
    """The root attribute ``steps``, else slayer's ``simulation/tSample`` (the sample length
    its ``export_hdf5`` writes, in steps of ``Ts = 1``); None when the file records neither."""
    if STEPS_ATTR not in f.attrs:
        return _slayer_sample_steps(f, path)
    value = f.attrs[STEPS_ATTR]
    if isinstance(value, np.ndarray):
        value = value.item() if value.size == 1 else value
    return _check_steps(value, path)


def _slayer_sample_steps(f: h5py.File, path: Path) -> int | None:
    """``simulation/tSample`` of a slayer/bootstrap export as T, when its time step ``Ts`` is 1
    and it is an integer in [1, :data:`MAX_STEPS`]; anything else is logged and ignored (NetX
    itself never reads the group, so it cannot make the file unusable)."""
    sim = f.get(SIMULATION_GROUP)
    if not isinstance(sim, h5py.Group) or "tSample" not in sim:
        return None
    try:
        t_sample = np.asarray(sim["tSample"][()]).item()
        ts = np.asarray(sim["Ts"][()]).item() if "Ts" in sim else 1
    except (TypeError, ValueError, AttributeError) as exc:
        log.warning("%s: simulation/tSample unreadable (%s): T not taken from it", path, exc)
        return None
    whole = isinstance(t_sample, int | float) and float(t_sample).is_integer()
    if ts != 1 or not whole or not 1 <= t_sample <= MAX_STEPS:
        log.warning(
            "%s: simulation/tSample = %r with Ts = %r is not a T in [1, %d] steps of 1: "
            "T not taken from it (give --steps)", path, t_sample, ts, MAX_STEPS,
        )  # fmt: skip
        return None
    return int(t_sample)


def _read_format(f: h5py.File, path: Path) -> int | None:
    """The root attribute ``snn2loihi_format``: None (plain NetX) or :data:`RESIDUAL_FORMAT`."""
    if FORMAT_ATTR not in f.attrs:
        return None
    value = f.attrs[FORMAT_ATTR]
    if isinstance(value, np.ndarray) and value.size == 1:
        value = value.item()
    integer = isinstance(value, int | np.integer) and not isinstance(value, bool | np.bool_)
    if not integer or value != RESIDUAL_FORMAT:
        raise NetXFormatError(
            f"{path}: root attribute '{FORMAT_ATTR}' = {value!r}: this snn2loihi reads format "
            f"{RESIDUAL_FORMAT} (the residual superset of NetX) and plain NetX files"
        )
    return RESIDUAL_FORMAT


# ----------------------------------------------------------------------------------------- reader
BLOCK_ELEMENTS = 2**20  # float datasets are read and checked this many values at a time


def _row_blocks(shape: tuple[int, ...]) -> list:
    """Index expressions that read a dataset of ``shape`` in blocks of whole rows (of about
    :data:`BLOCK_ELEMENTS` values); a scalar is one block."""
    if not shape or shape[0] == 0:
        return [()]
    rows = max(1, BLOCK_ELEMENTS // max(1, math.prod(shape[1:])))
    return [slice(lo, lo + rows) for lo in range(0, shape[0], rows)]


class _LayerReader:
    """Reads typed fields of one layer group, raising errors that name file, layer and field."""

    def __init__(self, g: h5py.Group, path: Path, index: int, kind: str, prefix: str = ""):
        self.g, self.path, self.index, self.kind = g, path, index, kind
        self.prefix = prefix  # a subgroup's fields are named from the layer: "shortcut/0/"

    def error(self, field: str, msg: str) -> NetXFormatError:
        return NetXFormatError(
            f"{where(self.path, self.index)} ({self.kind}): field '{self.prefix}{field}' {msg}"
        )

    def has(self, key: str) -> bool:
        return key in self.g

    def array(self, key: str, *, integer: bool = True) -> np.ndarray:
        if key not in self.g:
            raise self.error(key, "is missing")
        ds = self.g[key]
        if not isinstance(ds, h5py.Dataset):
            raise self.error(key, "is a group, expected a dataset")
        if ds.size > MAX_ELEMENTS:
            raise self.error(key, f"has {ds.size} elements, more than the limit {MAX_ELEMENTS}")
        if ds.dtype.kind not in "iufb":
            raise self.error(key, f"has dtype {ds.dtype}, expected numbers")
        out_dtype = np.dtype(np.int64) if integer else ds.dtype
        need, budget = ds.size * out_dtype.itemsize, memory_budget()
        if need > budget:
            raise self.error(
                key,
                f"{ds.shape} needs {size_text(need)}, more than the memory budget of "
                f"{size_text(budget)} (set {BUDGET_ENV} in bytes to change it)",
            )
        try:
            if ds.dtype.kind != "f" and not integer:
                return np.asarray(ds[()])
            out = np.empty(ds.shape, out_dtype)
            if ds.dtype.kind != "f":  # widened a block at a time: no full-size stored copy
                for block in _row_blocks(ds.shape):
                    out[block] = ds[block]
                return out
            for block in _row_blocks(ds.shape):  # bounded temporaries, whatever the size
                out[block] = self._checked_floats(key, np.asarray(ds[block]), integer)
            return out
        except (OSError, ValueError, TypeError) as exc:
            raise self.error(key, f"cannot be read ({exc})") from None

    def _checked_floats(self, key: str, data: np.ndarray, integer: bool) -> np.ndarray:
        """``data`` after refusing NaN/inf and, for ``integer`` fields, fractions and values
        beyond 2**53."""
        if not np.all(np.isfinite(data)):
            raise self.error(key, "holds NaN or infinite values")
        if integer and not np.all(data == np.trunc(data)):
            bad = data[data != np.trunc(data)].flat[0]
            raise self.error(
                key, f"holds the non-integer value {bad}; NetX truncates it, quantize first"
            )
        if integer and np.abs(data).max(initial=0) > 2**53:
            raise self.error(key, "holds values too large for an integer")
        return data

    def scalar(self, key: str) -> int:
        data = self.array(key)
        if data.size != 1:
            raise self.error(key, f"has shape {data.shape}, expected a scalar")
        return int(data.reshape(-1)[0])

    def pair(self, key: str) -> tuple[int, int]:
        data = self.array(key).reshape(-1)
        if data.size == 1:
            return (int(data[0]), int(data[0]))
        if data.size != 2:
            raise self.error(key, f"has {data.size} values, expected 2 in (H, W) order")
        return (int(data[0]), int(data[1]))

    def shape(self) -> tuple[int, ...]:
        data = self.array("shape").reshape(-1)
        if data.size == 0 or data.size > 3 or data.min() < 1:
            raise self.error("shape", f"= {data.tolist()} must hold 1 to 3 positive sizes")
        return tuple(int(v) for v in data)

    def neuron(self) -> Neuron:
        if "neuron" not in self.g:
            if self.kind == "conv":  # NetX indexes layer_config['neuron'] for a conv
                raise self.error("neuron", "is missing; NetX needs a neuron for a conv layer")
            return CubaNeuron.netx_default_neuron()
        if not isinstance(self.g["neuron"], h5py.Group):
            raise self.error("neuron", "is a dataset, expected a group")
        ntype = _read_string(self, "neuron/type")
        if self.has("neuron/messageBits"):
            raise UnsupportedLayerError(
                f"{where(self.path, self.index)} ({self.kind}): field 'neuron/messageBits' is "
                "not supported: lava-dl 0.6's NetX reader passes it on unread and cannot build "
                "the layer; remove it (CUBA spikes are binary, SDNN messages 16-bit)"
            )
        if ntype == SDNN_TYPE:
            return SigmaDeltaNeuron(
                vth_mant=self.scalar("neuron/vThMant"),
                sigma_output=self.has("neuron/sigma_output"),
                activation=_read_string(self, "neuron/activation")
                if self.has("neuron/activation")
                else "relu",
            )
        if ntype not in CUBA_TYPES:
            what = "resonate-and-fire (RF/RF_IZ)" if "RF" in ntype else "unknown"
            raise UnsupportedLayerError(
                f"{where(self.path, self.index)} ({self.kind}): neuron type '{ntype}' ({what}) "
                f"cannot be emulated; supported: {', '.join(CUBA_TYPES)}, {SDNN_TYPE}"
            )
        return CubaNeuron(
            i_decay=self.scalar("neuron/iDecay"),
            v_decay=self.scalar("neuron/vDecay"),
            vth_mant=self.scalar("neuron/vThMant"),
            ref_delay=self.scalar("neuron/refDelay") if self.has("neuron/refDelay") else 1,
            graded_spike=bool(self.scalar("neuron/gradedSpike"))
            if self.has("neuron/gradedSpike")
            else False,
            type_name=ntype,
        )

    def delay(self) -> np.ndarray | None:
        if not self.has("delay"):
            return None
        d = self.array("delay")
        if d.size and d.min() < 0:
            raise self.error("delay", f"holds the negative delay {int(d.min())}")
        return d

    def bias(self, n_out: int) -> np.ndarray | None:
        if not self.has("bias"):
            return None
        b = self.array("bias").reshape(-1)
        if b.size != n_out:
            raise self.error("bias", f"has {b.size} values, expected {n_out} (one per channel)")
        return b

    def no_delay(self) -> None:
        if self.has("delay") and np.any(self.array("delay")):
            raise UnsupportedLayerError(
                f"{where(self.path, self.index)} ({self.kind}): synaptic delays on a "
                f"{self.kind} layer are not supported (NetX ignores them)"
            )

    def transform(self, key: str) -> int | None:
        """slayer's input transform (a scalar NetX stores as ``int(value)``), or None."""
        if not self.has(key):
            return None
        data = self.array(key, integer=False).reshape(-1)
        if data.size != 1:
            raise self.error(key, f"has {data.size} values, expected one")
        return int(data[0])


def _read_string(r: _LayerReader, key: str) -> str:
    if key not in r.g or not isinstance(r.g[key], h5py.Dataset):
        raise r.error(key, "is missing")
    ds = r.g[key]
    if ds.size != 1:  # checked before reading: a forged shape must not be allocated
        raise r.error(key, f"has shape {ds.shape}, expected one string")
    vlen = h5py.check_string_dtype(ds.dtype)
    width = ds.dtype.itemsize if vlen is None or vlen.length is None else vlen.length
    if ds.dtype.kind == "S" and width > MAX_STRING_BYTES:
        raise r.error(key, f"is a {width}-byte string, longer than the limit {MAX_STRING_BYTES}")
    if vlen is not None and vlen.length is None and ds.id.get_storage_size() > MAX_STRING_BYTES:
        raise r.error(key, f"stores {ds.id.get_storage_size()} bytes for one string")
    try:
        value = ds[()]
    except (OSError, ValueError, TypeError) as exc:
        raise r.error(key, f"cannot be read ({exc})") from None
    if isinstance(value, np.ndarray):
        if value.size != 1:
            raise r.error(key, f"has shape {value.shape}, expected one string")
        value = value.reshape(-1)[0]
    if isinstance(value, bytes | np.bytes_):
        try:
            return bytes(value).decode("ascii")
        except UnicodeDecodeError:
            raise r.error(key, f"= {bytes(value)!r} is not ASCII") from None
    if isinstance(value, str):
        return value
    raise r.error(key, f"= {value!r} is not a string")


def _refuse_oversized_weight(
    r: _LayerReader, key: str, n_out: int, n_in: int | None, inputs: str = "of the previous layer"
) -> None:
    """A dense weight can hold only ``n_out`` x ``n_in`` (the previous layer's size) values:
    a larger field is refused from its header, before it is widened to int64 in memory."""
    ds = r.g[key] if key in r.g else None
    if n_in is None or not isinstance(ds, h5py.Dataset):
        return
    if ds.size > max(n_out * n_in, BLOCK_ELEMENTS):
        raise NetXValidationError(
            f"{where(r.path, r.index)} ({r.kind}): field '{key}' has shape {ds.shape}, "
            f"{ds.size} values for {n_out} outputs x {n_in} inputs {inputs} "
            "(refused before reading)"
        )


def _read_layer(
    g: h5py.Group, path: Path, index: int, n_in: int | None = None, fmt: int | None = None
) -> Layer:
    """Layer ``index``; ``n_in``: the previous layer's size (None: unknown), which bounds the
    size of a dense weight; ``fmt``: the file's ``snn2loihi_format`` (2: residual layers)."""
    r = _LayerReader(g, path, index, "?")
    kind = _read_string(r, "type")
    r.kind = kind
    if kind == RESIDUAL_TYPE and fmt == RESIDUAL_FORMAT:
        return _read_residual(r)
    if kind in REFUSED_TYPES:
        raise UnsupportedLayerError(
            f"{where(path, index)}: layer type '{kind}' cannot run on NetX "
            f"(supported: {', '.join(SUPPORTED_TYPES)}); fold pooling into a strided conv"
        )
    if kind not in SUPPORTED_TYPES:
        raise UnsupportedLayerError(
            f"{where(path, index)}: unknown layer type '{kind}' (supported: {', '.join(SUPPORTED_TYPES)})"
        )
    shape = r.shape()
    if kind == "input":
        return _read_input(r, shape)
    if kind == "flatten":
        return FlattenLayer(shape=shape)
    if r.has("weight/imag"):
        raise UnsupportedLayerError(
            f"{where(path, index)} ({kind}): complex weights are not supported"
        )
    if kind == "conv":
        return _read_conv(r, shape)
    return _read_dense(r, shape, n_in)


def _read_input(r: _LayerReader, shape: tuple[int, ...]) -> InputLayer:
    """An ``input`` group: its shape, and slayer's optional input neuron and transform."""
    if not r.has("neuron"):
        return InputLayer(shape=shape)
    neuron = r.neuron()
    if isinstance(neuron, SigmaDeltaNeuron) and neuron.sigma_output:
        raise r.error("neuron/sigma_output", "is set on an input layer (NetX builds Delta)")
    return InputLayer(
        shape=shape, neuron=neuron, weight=r.transform("weight"), bias=r.transform("bias")
    )


def _read_conv(r: _LayerReader, shape: tuple[int, ...]) -> ConvLayer:
    """A ``conv`` group (slayer's trailing time dimension of the weight dropped)."""
    r.no_delay()
    w = r.array("weight")
    if w.ndim == 5 and w.shape[-1] == 1:  # slayer's trailing time dimension
        w = w[..., 0]
    if w.ndim != 4:
        raise r.error("weight", f"has shape {w.shape}, expected (Cout, Cin/groups, kH, kW)")
    if len(shape) != 3:
        raise r.error("shape", f"= {shape} must be (C, H, W)")
    return ConvLayer(
        shape=shape,  # type: ignore[arg-type]
        weight=w,
        neuron=r.neuron(),
        bias=r.bias(w.shape[0]),
        stride=r.pair("stride"),
        padding=r.pair("padding"),
        dilation=r.pair("dilation"),
        groups=r.scalar("groups"),
    )


def _read_residual(r: _LayerReader) -> ConvLayer:
    """A residual layer (type ``concat`` in a format-2 file): its own conv synapse, read as a
    ``conv`` group, and its ``shortcut/<k>`` groups."""
    main = _read_string(r, "main")
    if main != "conv":
        raise r.error("main", f"= '{main}': only conv layers take shortcuts (format 2)")
    r.kind = main
    if r.has("weight/imag"):
        raise r.error("weight", "is complex; residual layers hold integer weights")
    layer = _read_conv(r, r.shape())
    if not r.has("shortcut") or not isinstance(r.g["shortcut"], h5py.Group):
        raise r.error("shortcut", "is missing: a residual layer holds at least one shortcut group")
    names = set(r.g["shortcut"].keys())
    if not names or names != {str(k) for k in range(len(names))}:
        raise r.error(
            "shortcut", f"groups must be named 0..{len(names) - 1}; found {sorted(names)}"
        )
    shortcuts = []
    for k in range(len(names)):
        sg = r.g[f"shortcut/{k}"]
        if not isinstance(sg, h5py.Group):
            raise r.error(f"shortcut/{k}", "is a dataset, expected a group")
        s = _LayerReader(sg, r.path, r.index, main, prefix=f"shortcut/{k}/")
        w = s.array("weight")
        if w.ndim != 4:
            raise s.error("weight", f"has shape {w.shape}, expected (Cout, Csource/groups, kH, kW)")
        shortcuts.append(
            Shortcut(
                source=s.scalar("source"),
                weight=w,
                delay=s.scalar("delay"),
                stride=s.pair("stride"),
                padding=s.pair("padding"),
                dilation=s.pair("dilation"),
                groups=s.scalar("groups"),
            )
        )
    return dataclasses.replace(layer, shortcuts=tuple(shortcuts))


def _read_dense(r: _LayerReader, shape: tuple[int, ...], n_in: int | None) -> DenseLayer:
    """A ``dense`` or ``dense_rec`` group; ``n_in`` (if known) bounds the weight's size."""
    n_out = math.prod(shape)
    _refuse_oversized_weight(r, "weight", n_out, n_in)
    if r.kind == "dense_rec":
        _refuse_oversized_weight(r, "weight_rec", n_out, n_out, "(its own outputs)")
    w = r.array("weight")
    if w.ndim == 1:
        if w.size % n_out:
            raise r.error("weight", f"has {w.size} values, not a multiple of {n_out} outputs")
        w = w.reshape(n_out, -1)
    elif w.ndim > 2 and all(s == 1 for s in w.shape[2:]):
        w = w.reshape(w.shape[0], w.shape[1])
    if w.ndim != 2:
        raise r.error("weight", f"has shape {w.shape}, expected (Nout, Nin)")
    fields = dict(
        shape=shape, weight=w, neuron=r.neuron(), bias=r.bias(w.shape[0]), delay=r.delay()
    )
    if r.kind == "dense":
        return DenseLayer(**fields)
    if fields["delay"] is not None:
        raise UnsupportedLayerError(
            f"{where(r.path, r.index)} (dense_rec): delays on a recurrent layer are not "
            "supported (lava-dl 0.6's NetX drops the weight exponent there)"
        )
    w_rec = r.array("weight_rec")
    if w_rec.ndim == 1 and w_rec.size == n_out * n_out:
        w_rec = w_rec.reshape(n_out, n_out)
    if w_rec.shape != (n_out, n_out):
        raise r.error("weight_rec", f"has shape {w_rec.shape}, expected ({n_out}, {n_out})")
    return RecurrentDenseLayer(**fields, weight_rec=w_rec)


def _read_layers(f: h5py.File, path: Path) -> list[Layer]:
    """Read every layer group in numeric order (h5py errors propagate to the caller)."""
    fmt = _read_format(f, path)
    if "layer" not in f or not isinstance(f["layer"], h5py.Group):
        raise NetXFormatError(f"{path}: no 'layer' group; not a NetX network file")
    names = list(f["layer"].keys())
    if not names:
        raise NetXFormatError(f"{path}: the 'layer' group is empty")
    if len(names) > MAX_LAYERS:
        raise NetXFormatError(f"{path}: {len(names)} layers, more than the limit {MAX_LAYERS}")
    expected = {str(i) for i in range(len(names))}
    if set(names) != expected:
        odd = sorted(set(names) - expected)
        raise NetXFormatError(
            f"{path}: layer groups must be named 0..{len(names) - 1} without gaps; found {odd}"
        )
    layers: list[Layer] = []
    for i in range(len(names)):
        g = f["layer"][str(i)]
        if not isinstance(g, h5py.Group):
            raise NetXFormatError(f"{where(path, i)}: is a dataset, expected a group")
        n_in = math.prod(layers[-1].shape) if layers else None
        layers.append(_read_layer(g, path, i, n_in, fmt))
    return layers


MAX_DEPTH = 8  # NetX nests layer/<i>/neuron/<field>: four levels
MAX_ENTRIES = MAX_LAYERS * 64


def _refuse_links(f: h5py.File, path: Path) -> None:
    """Refuse soft and external links (never followed: a cycle, a dangling target or another
    file) and hard-linked group cycles, walking the link table only; NetX writes none."""
    stack, seen = [("", f, 0)], 0
    while stack:
        name, group, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise NetXFormatError(f"{path}: '{name}' is nested deeper than {MAX_DEPTH} groups")
        for key in group:
            seen += 1
            if seen > MAX_ENTRIES:
                raise NetXFormatError(f"{path}: more than {MAX_ENTRIES} entries")
            full, link = f"{name}/{key}", group.get(key, getlink=True)
            if isinstance(link, h5py.SoftLink):
                raise NetXFormatError(
                    f"{path}: '{full}' is a soft link to '{link.path}'; links are not followed"
                )
            if isinstance(link, h5py.ExternalLink):
                raise NetXFormatError(
                    f"{path}: '{full}' is an external link to {link.filename}:{link.path}; "
                    "links are not followed"
                )
            child = group.get(key)
            if isinstance(child, h5py.Group):
                stack.append((full, child, depth + 1))


def _open(path: Path) -> h5py.File:
    """The file opened read-only with its links checked, or :class:`NetXFormatError`."""
    if not path.is_file():
        raise NetXFormatError(f"{path}: no such file")
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise NetXFormatError(f"{path}: not a readable HDF5 file ({exc})") from None
    try:
        _refuse_links(f, path)
    except NetXFormatError:
        f.close()
        raise
    except (OSError, RuntimeError, KeyError, ValueError, TypeError) as exc:
        f.close()
        raise NetXFormatError(
            f"{path}: corrupt or unreadable HDF5 content ({type(exc).__name__}: {exc})"
        ) from None
    return f


@dataclass(frozen=True)
class LayerEntry:
    """One layer group as :func:`describe_layers` finds it: the record when it can be read,
    else the type, the shape (if readable) and why the emulator cannot run it."""

    index: int
    kind: str
    record: Layer | None = None
    shape: tuple[int, ...] | None = None
    refused: str | None = None


def _read_file(path: Path, read: Callable[[h5py.File], _T]) -> _T:
    """``read(f)`` on the file opened read-only (:func:`_open`); h5py's own failures on a
    corrupt file become :class:`NetXFormatError` naming it."""
    with _open(path) as f:
        try:
            return read(f)
        except Snn2LoihiError:
            raise
        except (OSError, RuntimeError, KeyError, ValueError, TypeError) as exc:
            raise NetXFormatError(
                f"{path}: corrupt or unreadable HDF5 content ({type(exc).__name__}: {exc})"
            ) from None


def describe_layers(path: str | os.PathLike) -> list[LayerEntry]:
    """Every layer of a NetX file, also those the emulator cannot run (for ``inspect``).

    Raises :class:`NetXFormatError` only when the file itself is unreadable or not NetX.
    """
    path = Path(path)
    return _read_file(path, lambda f: _describe(f, path))


def read_steps(path: str | os.PathLike) -> int | None:
    """The T a NetX file records (root attribute ``steps``), None when it records none."""
    path = Path(path)
    return _read_file(path, lambda f: _read_steps(f, path))


def _describe(f: h5py.File, path: Path) -> list[LayerEntry]:
    fmt = _read_format(f, path)
    entries: list[LayerEntry] = []
    n_in = None  # the previous layer's size, when known
    if "layer" not in f or not isinstance(f["layer"], h5py.Group):
        raise NetXFormatError(f"{path}: no 'layer' group; not a NetX network file")
    count = len(f["layer"])
    if count > MAX_LAYERS:
        raise NetXFormatError(f"{path}: {count} layers, more than the limit {MAX_LAYERS}")
    for i in range(count):
        g = f["layer"].get(str(i))
        if not isinstance(g, h5py.Group):
            raise NetXFormatError(f"{where(path, i)}: missing or not a group")
        r = _LayerReader(g, path, i, "?")
        kind = _read_string(r, "type")
        try:
            entries.append(LayerEntry(i, kind, record=_read_layer(g, path, i, n_in, fmt)))
            n_in = math.prod(entries[-1].record.shape)
        except UnsupportedLayerError as exc:
            try:
                shape = r.shape()
            except Snn2LoihiError:
                shape = None
            reason = str(exc).split(": ", 1)[-1]
            entries.append(LayerEntry(i, kind, shape=shape, refused=reason))
            n_in = None if shape is None else math.prod(shape)
    return entries


def read_network(
    path: str | os.PathLike, *, input_shape: tuple[int, ...] | None = None
) -> NetXNetwork:
    """Read and validate a NetX HDF5 file.

    ``input_shape`` (CHW) is needed only for files without an input layer whose first layer is
    a conv (slayer exports); for a dense first layer it is inferred from the weights.
    Raises :class:`NetXFormatError` for unreadable or malformed files and
    :class:`NetXValidationError` for values outside Loihi's ranges.
    """
    path = Path(path)
    layers, steps = _read_file(path, lambda f: (_read_layers(f, path), _read_steps(f, path)))
    return network_of(path, layers, input_shape=input_shape, steps=steps)


def network_of(
    path: str | os.PathLike,
    layers: list[Layer],
    *,
    input_shape: tuple[int, ...] | None = None,
    steps: int | None = None,
) -> NetXNetwork:
    """The validated network of ``layers`` read from ``path`` (e.g. the records of
    :func:`describe_layers`, so that ``inspect`` reads a file's arrays once)."""
    path = Path(path)
    first = layers[0]
    if isinstance(first, InputLayer):
        in_shape = first.shape
    elif input_shape is not None:
        in_shape = tuple(int(s) for s in input_shape)
    elif isinstance(first, DenseLayer):
        in_shape = (first.weight.shape[1],)
    else:
        raise NetXValidationError(
            f"{where(path, 0)} ({first.kind}): the file has no input layer, so the input shape "
            "is unknown; pass input_shape (CHW), e.g. --input-shape 2,8,8"
        )
    net = NetXNetwork(layers=tuple(layers), input_shape=tuple(in_shape), steps=steps)
    validate_network(net, path)
    return net
