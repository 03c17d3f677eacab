"""What runs inside the Lava child (:mod:`snn2loihi.deploy.lava_runner`): the request it reads,
the two drivers that build the NetX network in Lava and run it (per-sample clock: every sample
in one compiled run, layers reset when a sample's first input reaches them; global clock: each
sample its own run, as netx builds the network), and the result they return.

Imports Lava (lazily, inside the drivers): only the child process calls them.
"""

from __future__ import annotations

import json
import logging
import math
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from snn2loihi.deploy.lava_compat import import_netx
from snn2loihi.deploy.lava_conv import use_torch_conv
from snn2loihi.deploy.lava_recorder import attach_recorder, create_record, model_map
from snn2loihi.errors import LavaRunError, LavaUnavailableError
from snn2loihi.loihi import GRADED_MESSAGE_BITS
from snn2loihi.netx_io import read_network

log = logging.getLogger(__name__)

BACKENDS = ("lava", "loihi2")


@dataclass
class LavaResult:
    """Spikes per conv/dense layer (N, T, *shape) uint8, in network order (only the output layer
    unless all layers were probed); ``u``/``v`` (N, T, *shape) int32 when states were recorded."""

    layer_indices: list[int]
    spikes: list[np.ndarray]
    u: list[np.ndarray] = field(default_factory=list)
    v: list[np.ndarray] = field(default_factory=list)
    records: dict[str, np.ndarray] = field(default_factory=dict)  # global clock: "s3", "u3", ...

    @property
    def output(self) -> np.ndarray:
        return self.spikes[-1]


@dataclass(frozen=True)
class LavaRequest:
    """What one Lava run needs besides the samples: built once by :func:`run_lava`, sent to the
    child process as JSON. Fields as in :func:`run_lava`; ``input_shape`` CHW or (N,)."""

    path: str
    input_shape: tuple[int, ...]
    graded: bool
    probe_all: bool = False
    record_state: bool | str = False
    backend: str = "lava"
    # the global clock (see snn2loihi.deploy.timeline): each sample its own run
    clock: str = "sample"  # "sample" (pipelined, per-sample resets) or "global"
    drive: str = "input"
    steps: int = 0
    reset_interval: int | None = None
    reset_offset: int = 0
    record: tuple[str, ...] = ()

    def __post_init__(self):
        if self.record_state not in (False, True, "last"):
            raise ValueError(
                f"record_state must be False, True or 'last', not {self.record_state!r}"
            )

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> LavaRequest:
        fields = json.loads(text)
        return cls(
            **{
                **fields,
                "input_shape": tuple(fields["input_shape"]),
                "record": tuple(fields.get("record", ())),
            }
        )


def _run_config(backend: str):
    if backend == "lava":
        from lava.magma.core.run_configs import Loihi2SimCfg

        return Loihi2SimCfg(select_tag="fixed_pt")
    if backend == "loihi2":
        try:
            from lava.utils.system import Loihi2

            Loihi2.preferred_partition = "oheogulch"
            if not Loihi2.is_loihi2_available:
                raise ImportError("no Loihi 2 system is reachable")
            from lava.magma.core.run_configs import Loihi2HwCfg
        except ImportError as exc:
            raise LavaUnavailableError(
                f"backend 'loihi2' needs Intel's Loihi runtime (lava-loihi) and a Loihi 2 system: {exc}"
            ) from None
        return Loihi2HwCfg()
    raise LavaUnavailableError(f"unknown backend '{backend}' (choose from {', '.join(BACKENDS)})")


def to_lava_layout(x: np.ndarray, pad: int) -> np.ndarray:
    """(N, T, *shape) CHW -> Lava's (*shape reversed, N*T + pad) XYZ layout, zero-padded in time."""
    n, steps = x.shape[:2]
    stream = x.reshape(n * steps, *x.shape[2:])
    stream = np.concatenate([stream, np.zeros((pad, *x.shape[2:]), dtype=stream.dtype)])
    return np.ascontiguousarray(
        np.moveaxis(stream, 0, -1).transpose(*reversed(range(stream.ndim - 1)), -1)
    )


def fit_input_port(x: np.ndarray, port: tuple[int, ...], path: object) -> np.ndarray:
    """``x`` (N, T, *input_shape) CHW shaped for Lava's network input port ``port`` (XYZ order).

    lava-dl's ``netx.hdf5.Network`` gives its input port the shape of the first layer it builds:
    an input layer without a neuron only records the input shape (used by a first conv layer),
    and a flatten layer before the first built layer connects nothing. A network whose first
    built layer is dense therefore takes its input flat, ``(C*H*W,)``, in the order of netx's
    flatten (``transpose([2, 1, 0]).flatten()`` of XYZ, i.e. CHW flattened), which is the
    emulator's. Such a CHW input is flattened here; any other mismatch raises
    :class:`LavaRunError`.
    """
    shape = tuple(int(d) for d in x.shape[2:])
    port = tuple(int(d) for d in port)
    if tuple(reversed(shape)) == port:
        return x
    if len(port) == 1 and math.prod(shape) == port[0]:
        return x.reshape(*x.shape[:2], port[0])
    raise LavaRunError(
        f"{path}: Lava's network input port has shape {port} (XYZ), which input of shape "
        f"{shape} (CHW) cannot feed"
    )


def _windows(
    data: np.ndarray, depth: int, n: int, steps: int, shape: tuple[int, ...]
) -> np.ndarray:
    """Cut a monitor record (total, X, Y, Z or N) into per-sample windows (N, T, *CHW shape).

    Layer ``depth`` (0-based) handles sample i at 0-based steps ``i*T + depth + 1 ...``.
    """
    start = depth + 1
    rec = data[start : start + n * steps]
    rec = (
        rec.reshape(n * steps, *reversed(shape))
        if len(shape) == 3
        else rec.reshape(n * steps, *shape)
    )
    if len(shape) == 3:
        rec = rec.transpose(0, 3, 2, 1)
    return rec.reshape(n, steps, *shape)


def _lava_modules():
    """(netx, RunSteps, lava.proc.io), or :class:`LavaUnavailableError`."""
    try:
        netx = import_netx()
        from lava.magma.core.run_conditions import RunSteps
        from lava.proc import io
    except ImportError as exc:
        raise LavaUnavailableError(
            f"Lava is not installed ({exc}); run `make setup` or install lava-nc and lava-dl"
        ) from None
    return netx, RunSteps, io


def _lava_state_names(neuron, names: tuple[str, ...]) -> tuple[str, ...]:
    """The requested states (``names`` among ``u``, ``v``, ``sigma``, ``act``, ``residue``) that
    one built layer's neuron process has."""
    return tuple(
        r for r in ("u", "v", "sigma", "act", "residue") if r in names and hasattr(neuron, r)
    )


def _to_chw(data: np.ndarray, steps: int, shape: tuple[int, ...]) -> np.ndarray:
    """A monitor record (steps, ...) in Lava's XYZ order as (steps, *shape) in CHW order."""
    if len(shape) == 3:
        return np.asarray(data).reshape(steps, *reversed(shape)).transpose(0, 3, 2, 1)
    return np.asarray(data).reshape(steps, *shape)


def _run_global_in_process(request: LavaRequest, x: np.ndarray, scratch: Path) -> LavaResult:
    """Each sample its own run of ``request.steps`` steps on a freshly built network; every
    layer's spikes and the requested states recorded into files in ``scratch``."""
    from snn2loihi.deploy.timeline import built_layers, layer_shape

    path = Path(request.path)
    net_rec = read_network(path, input_shape=request.input_shape)
    built = built_layers(net_rec, request.drive, request.graded)
    netx, RunSteps, io = _lava_modules()
    run_cfg = _run_config(request.backend)
    steps, in_shape = request.steps, net_rec.input_shape
    per_sample: list[dict[str, np.ndarray]] = []
    for i, sample in enumerate(x):
        lava_net = _global_network(netx, request, in_shape, len(built))
        if i == 0:  # the same file every sample: one switch serves the whole run
            use_torch_conv(lava_net)
        if request.drive == "bias":
            lava_net.in_layer.neuron.bias_mant.init = xyz(sample).astype(np.int32)
        else:
            fed = fit_input_port(sample[None].astype(np.int64), lava_net.inp.shape, path)
            src = io.source.RingBuffer(data=to_lava_layout(fed, 0))
            src.s_out.connect(lava_net.inp)
        probes = [
            (k, layer.neuron, _lava_state_names(layer.neuron, request.record))
            for k, layer in enumerate(lava_net.layers)
        ]
        recorders, files = _recorders(probes, steps, scratch, tag=f"sample{i}_")
        run_cfg.exception_proc_model_map.update(model_map(recorders))
        try:
            lava_net.run(condition=RunSteps(num_steps=steps), run_cfg=run_cfg)
        except Exception as exc:  # Lava raises bare Exceptions from its runtime
            raise LavaRunError(f"{path}: Lava run failed: {type(exc).__name__}: {exc}") from exc
        finally:
            _stop(lava_net)
        records = {}
        for (k, name), file in files.items():
            b = built[k]
            records[f"{name}{b.index}"] = _to_chw(np.load(file), steps, layer_shape(b.layer))
            file.unlink()
        per_sample.append(records)
    return _stacked_result(per_sample, built)


def _global_network(netx, request: LavaRequest, in_shape: tuple[int, ...], layers: int):
    """netx's network of ``request.path`` for one global-clock run, checked to hold the
    ``layers`` layers that :func:`~snn2loihi.deploy.timeline.built_layers` expects."""
    path = Path(request.path)
    lava_net = netx.hdf5.Network(
        net_config=str(path),
        skip_layers=1 if request.drive == "skip" else 0,
        input_message_bits=GRADED_MESSAGE_BITS if request.graded else 0,
        reset_interval=request.reset_interval,
        reset_offset=request.reset_offset,
        input_shape=tuple(reversed(in_shape)) if len(in_shape) == 3 else None,
    )
    if len(lava_net.layers) != layers:
        raise LavaRunError(f"{path}: Lava built {len(lava_net.layers)} layers, expected {layers}")
    return lava_net


def _stacked_result(per_sample: list[dict[str, np.ndarray]], built: list) -> LavaResult:
    """The samples' records (``s{i}``, ``u{i}``, ...: (steps, *shape) each) stacked into
    (samples, steps, *shape) arrays: spikes uint8 (CUBA) or int32 (graded), states int32."""
    stacked = {k: np.stack([r[k] for r in per_sample]) for k in per_sample[0]}
    for b in built:
        key = f"s{b.index}"
        stacked[key] = stacked[key].astype(np.uint8 if b.neuron.kind == "CUBA" else np.int32)
        for r in ("u", "v", "sigma", "act", "residue"):
            if f"{r}{b.index}" in stacked:
                stacked[f"{r}{b.index}"] = stacked[f"{r}{b.index}"].astype(np.int32)
    return LavaResult(
        layer_indices=[b.index for b in built],
        spikes=[stacked[f"s{b.index}"] for b in built],
        records=stacked,
    )


def xyz(sample: np.ndarray) -> np.ndarray:
    """One sample's CHW array in Lava's XYZ (W, H, C) layout."""
    return np.ascontiguousarray(sample.transpose(*reversed(range(sample.ndim))))


def run_in_process(request: LavaRequest, x: np.ndarray, scratch: Path | None = None) -> LavaResult:
    """Run Lava in this process (the child); see :func:`run_lava`. ``scratch``: a folder for
    the recorders' step files (default: a temporary one)."""
    driver = _run_global_in_process if request.clock == "global" else _run_sample_clock
    if scratch is None:
        with tempfile.TemporaryDirectory(prefix="snn2loihi-records-") as tmp:
            return driver(request, x, Path(tmp))
    return driver(request, x, scratch)


def _recorders(
    probes: list[tuple[int, object, tuple[str, ...]]], steps: int, folder: Path, tag: str = ""
) -> tuple[list, dict[tuple[int, str], Path]]:
    """Recorder processes for ``probes`` (layer position, its Lava neuron, the Vars to record
    besides its spikes), connected to the neurons, each writing ``steps`` rows into ``.npy``
    files in ``folder`` (names prefixed by ``tag``); and those files by ``(position, name)``."""
    recorders, files = [], {}
    for k, neuron, states in probes:
        shape = tuple(neuron.s_out.shape)
        mine = {name: folder / f"{tag}{name}{k}.npy" for name in ("s", *states)}
        for file in mine.values():
            create_record(file, steps, shape)
        recorders.append(attach_recorder(neuron, states, {n: str(f) for n, f in mine.items()}))
        files.update({(k, name): file for name, file in mine.items()})
    return recorders, files


def _run_sample_clock(request: LavaRequest, x: np.ndarray, scratch: Path) -> LavaResult:
    """Every sample in one run; spikes (and states) recorded into files in ``scratch``."""
    path, record_state = Path(request.path), request.record_state
    net_rec = read_network(path, input_shape=request.input_shape)
    n, steps = x.shape[:2]
    syn_layers = net_rec.synaptic_layers
    depth = len(syn_layers)
    total = n * steps + depth
    netx, RunSteps, io = _lava_modules()
    run_cfg = _run_config(request.backend)
    in_shape = net_rec.input_shape
    if net_rec.residual:  # netx cannot build it: the graph from lava.proc processes
        from snn2loihi.deploy.lava_graph import build_residual_network

        lava_net = build_residual_network(
            path, net_rec, graded=request.graded, reset_interval=steps, reset_offset=1
        )
    else:
        lava_net = netx.hdf5.Network(
            net_config=str(path),
            input_message_bits=GRADED_MESSAGE_BITS if request.graded else 0,
            reset_interval=steps,
            reset_offset=1,
            input_shape=tuple(reversed(in_shape)) if len(in_shape) == 3 else None,
        )
    if len(lava_net.layers) != depth:
        raise LavaRunError(f"{path}: Lava built {len(lava_net.layers)} layers, expected {depth}")
    use_torch_conv(lava_net)
    fed = fit_input_port(np.asarray(x, dtype=np.int64), lava_net.inp.shape, path)
    src = io.source.RingBuffer(data=to_lava_layout(fed, depth).astype(int))
    src.s_out.connect(lava_net.inp)
    probed = list(range(depth)) if request.probe_all or record_state is True else [depth - 1]

    def with_state(k: int) -> bool:
        return record_state is True or (record_state == "last" and k == depth - 1)

    recorders, files = _recorders(
        [(k, lava_net.layers[k].neuron, ("u", "v") if with_state(k) else ()) for k in probed],
        total,
        scratch,
    )
    run_cfg.exception_proc_model_map.update(model_map(recorders))
    try:
        lava_net.run(condition=RunSteps(num_steps=total), run_cfg=run_cfg)
    except Exception as exc:  # Lava raises bare Exceptions from its runtime
        raise LavaRunError(f"{path}: Lava run failed: {type(exc).__name__}: {exc}") from exc
    finally:
        _stop(lava_net)
    records = {key: np.load(file) for key, file in files.items()}
    result = LavaResult(layer_indices=[syn_layers[k][0] for k in probed], spikes=[])
    for k in probed:
        shape = tuple(syn_layers[k][1].shape)
        shape = shape if len(shape) == 3 else (int(np.prod(shape)),)
        result.spikes.append(_windows(records[(k, "s")], k, n, steps, shape).astype(np.uint8))
        if with_state(k):
            result.u.append(_windows(records[(k, "u")], k, n, steps, shape).astype(np.int32))
            result.v.append(_windows(records[(k, "v")], k, n, steps, shape).astype(np.int32))
    return result


def _stop(lava_net) -> None:
    """Stop the Lava runtime and its processes; ignore errors from a runtime that never started."""
    try:
        runtime = getattr(lava_net, "runtime", None)
        if runtime is not None:
            lava_net.stop()
    except Exception as exc:  # pragma: no cover - best effort cleanup
        log.warning("stopping the Lava runtime failed: %s", exc)
