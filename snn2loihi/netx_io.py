"""Read and write NetX HDF5 (``.net``) files as :class:`~snn2loihi.schema.NetXNetwork` records.

The writer produces files that ``lava.lib.dl.netx.hdf5.Network`` loads; the reader accepts those
and files written by lava-dl's slayer ``export_hdf5``. ``read_network(write_network(net))`` equals
``net`` exactly. Both validate against hardware ranges (:func:`snn2loihi.validate.validate_network`).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import h5py
import numpy as np

from snn2loihi.atomic import atomic_path
from snn2loihi.errors import (
    NetXFormatError,
    NetXValidationError,
    Snn2LoihiError,
    UnsupportedLayerError,
    where,
)
from snn2loihi.schema import (
    REFUSED_TYPES,
    SUPPORTED_TYPES,
    ConvLayer,
    CubaNeuron,
    DenseLayer,
    FlattenLayer,
    InputLayer,
    Layer,
    NetXNetwork,
)
from snn2loihi.validate import validate_network

MAX_LAYERS = 4096
MAX_ELEMENTS = 2**27  # refuse datasets larger than this (hostile files)
MAX_STRING_BYTES = 256  # layer and neuron type names are a few characters


# ----------------------------------------------------------------------------------------- writer
def _put_type(g: h5py.Group, kind: str) -> None:
    g.create_dataset("type", (1,), "S10", [kind.encode("ascii")])


def _put_neuron(g: h5py.Group, n: CubaNeuron) -> None:
    ng = g.create_group("neuron")
    ng.create_dataset("type", data="CUBA")
    ng.create_dataset("iDecay", data=np.int64(n.i_decay))
    ng.create_dataset("vDecay", data=np.int64(n.v_decay))
    ng.create_dataset("vThMant", data=np.int64(n.vth_mant))
    ng.create_dataset("refDelay", data=np.int64(n.ref_delay))
    ng.create_dataset("gradedSpike", data=np.bool_(n.graded_spike))


def _write_layer(g: h5py.Group, ly: Layer) -> None:
    _put_type(g, ly.kind)
    g.create_dataset("shape", data=np.asarray(ly.shape, dtype=np.int64))
    if isinstance(ly, ConvLayer):
        g.create_dataset("weight", data=ly.weight.astype(np.int32))
        g.create_dataset("stride", data=np.asarray(ly.stride, dtype=np.int64))
        g.create_dataset("padding", data=np.asarray(ly.padding, dtype=np.int64))
        g.create_dataset("dilation", data=np.asarray(ly.dilation, dtype=np.int64))
        g.create_dataset("groups", data=np.int64(ly.groups))
    elif isinstance(ly, DenseLayer):
        g.create_dataset("weight", data=ly.weight.astype(np.int32))
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
    net = NetXNetwork(layers=layers, input_shape=tuple(net.input_shape))
    validate_network(net, path)
    with atomic_path(path, overwrite=overwrite) as tmp:
        with h5py.File(tmp, "w") as f:
            lg = f.create_group("layer")
            for i, ly in enumerate(net.layers):
                _write_layer(lg.create_group(str(i)), ly)
    return path


# ----------------------------------------------------------------------------------------- reader
class _LayerReader:
    """Reads typed fields of one layer group, raising errors that name file, layer and field."""

    def __init__(self, g: h5py.Group, path: Path, index: int, kind: str):
        self.g, self.path, self.index, self.kind = g, path, index, kind

    def error(self, field: str, msg: str) -> NetXFormatError:
        return NetXFormatError(
            f"{where(self.path, self.index)} ({self.kind}): field '{field}' {msg}"
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
        try:
            data = np.asarray(ds[()])
        except (OSError, ValueError, TypeError) as exc:
            raise self.error(key, f"cannot be read ({exc})") from None
        if data.dtype.kind == "f":
            if not np.all(np.isfinite(data)):
                raise self.error(key, "holds NaN or infinite values")
            if integer and not np.all(data == np.trunc(data)):
                bad = data[data != np.trunc(data)].flat[0]
                raise self.error(
                    key, f"holds the non-integer value {bad}; NetX truncates it, quantize first"
                )
            if integer and np.abs(data).max(initial=0) > 2**53:
                raise self.error(key, "holds values too large for an integer")
        return data.astype(np.int64) if integer else data

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

    def neuron(self) -> CubaNeuron:
        if "neuron" not in self.g:
            raise self.error(
                "neuron",
                "is missing; NetX's default neuron has vThMant 131072, outside the 17-bit range",
            )
        ntype = _read_string(self, "neuron/type")
        if ntype.upper() not in ("CUBA", "LOIHI"):
            raise UnsupportedLayerError(
                f"{where(self.path, self.index)} ({self.kind}): neuron type '{ntype}' is not "
                "supported; only CUBA (LIF) neurons can be emulated"
            )
        return CubaNeuron(
            i_decay=self.scalar("neuron/iDecay"),
            v_decay=self.scalar("neuron/vDecay"),
            vth_mant=self.scalar("neuron/vThMant"),
            ref_delay=self.scalar("neuron/refDelay") if self.has("neuron/refDelay") else 1,
            graded_spike=bool(self.scalar("neuron/gradedSpike"))
            if self.has("neuron/gradedSpike")
            else False,
        )

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
                f"{where(self.path, self.index)} ({self.kind}): synaptic delays are not supported"
            )


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


def _read_layer(g: h5py.Group, path: Path, index: int) -> Layer:
    r = _LayerReader(g, path, index, "?")
    kind = _read_string(r, "type")
    r.kind = kind
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
        if r.has("neuron"):
            raise UnsupportedLayerError(
                f"{where(path, index)} (input): an input layer with a neuron (slayer Input block) "
                "is not supported; export the network without an input neuron"
            )
        return InputLayer(shape=shape)
    if kind == "flatten":
        return FlattenLayer(shape=shape)
    if kind == "conv":
        r.no_delay()
        if r.has("weight/imag"):
            raise UnsupportedLayerError(
                f"{where(path, index)} (conv): complex weights are not supported"
            )
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
    # dense
    r.no_delay()
    if r.has("weight/imag"):
        raise UnsupportedLayerError(
            f"{where(path, index)} (dense): complex weights are not supported"
        )
    w = r.array("weight")
    n_out = math.prod(shape)
    if w.ndim == 1:
        if w.size % n_out:
            raise r.error("weight", f"has {w.size} values, not a multiple of {n_out} outputs")
        w = w.reshape(n_out, -1)
    elif w.ndim > 2 and all(s == 1 for s in w.shape[2:]):
        w = w.reshape(w.shape[0], w.shape[1])
    if w.ndim != 2:
        raise r.error("weight", f"has shape {w.shape}, expected (Nout, Nin)")
    return DenseLayer(shape=shape, weight=w, neuron=r.neuron(), bias=r.bias(w.shape[0]))


def _read_layers(f: h5py.File, path: Path) -> list[Layer]:
    """Read every layer group in numeric order (h5py errors propagate to the caller)."""
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
    layers = []
    for i in range(len(names)):
        g = f["layer"][str(i)]
        if not isinstance(g, h5py.Group):
            raise NetXFormatError(f"{where(path, i)}: is a dataset, expected a group")
        layers.append(_read_layer(g, path, i))
    return layers


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
    if not path.is_file():
        raise NetXFormatError(f"{path}: no such file")
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise NetXFormatError(f"{path}: not a readable HDF5 file ({exc})") from None
    with f:
        try:
            layers = _read_layers(f, path)
        except Snn2LoihiError:
            raise
        except (OSError, RuntimeError, KeyError, ValueError, TypeError) as exc:
            raise NetXFormatError(
                f"{path}: corrupt or unreadable HDF5 content ({type(exc).__name__}: {exc})"
            ) from None
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
    net = NetXNetwork(layers=tuple(layers), input_shape=tuple(in_shape))
    validate_network(net, path)
    return net
