"""Run a NetX ``.net`` file on Lava: the CPU simulator (``Loihi2SimCfg(select_tag='fixed_pt')``)
or Loihi 2 hardware (``Loihi2HwCfg``, needs Intel's Loihi runtime).

All samples run in one compiled network: inputs are concatenated in time and every layer is reset
when a sample's first input reaches it (``reset_interval=T, reset_offset=1``).

Lava runs in a child interpreter (``python -m snn2loihi.deploy.lava_runner REQUEST_DIR``) that
leads its own session and process group: Lava's worker processes live in that group, and the
parent kills the whole group after the run, on errors, on a timeout and on Ctrl-C, so no Lava
process is ever left behind. Request and result travel as ``.npy``/JSON files in a temp folder.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from snn2loihi.deploy.lava_compat import import_netx
from snn2loihi.errors import LavaRunError, LavaUnavailableError, Snn2LoihiError
from snn2loihi.loihi import GRADED_MESSAGE_BITS
from snn2loihi.netx_io import read_network, write_network
from snn2loihi.schema import NetXNetwork

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


def _to_lava_layout(x: np.ndarray, pad: int) -> np.ndarray:
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
    """(netx, RunSteps, lava.proc.io, Monitor), or :class:`LavaUnavailableError`."""
    try:
        netx = import_netx()
        from lava.magma.core.run_conditions import RunSteps
        from lava.proc import io
        from lava.proc.monitor.process import Monitor
    except ImportError as exc:
        raise LavaUnavailableError(
            f"Lava is not installed ({exc}); run `make setup` or install lava-nc and lava-dl"
        ) from None
    return netx, RunSteps, io, Monitor


def _lava_state_vars(neuron, name: str) -> list[tuple[str, object]]:
    """(record name, Lava Var) of one built layer's neuron process for the requested states."""
    return [
        (r, getattr(neuron, r))
        for r in ("u", "v", "sigma", "act", "residue")
        if r in name and hasattr(neuron, r)
    ]


def _to_chw(data: np.ndarray, steps: int, shape: tuple[int, ...]) -> np.ndarray:
    """A monitor record (steps, ...) in Lava's XYZ order as (steps, *shape) in CHW order."""
    if len(shape) == 3:
        return np.asarray(data).reshape(steps, *reversed(shape)).transpose(0, 3, 2, 1)
    return np.asarray(data).reshape(steps, *shape)


def _run_global_in_process(request: LavaRequest, x: np.ndarray) -> LavaResult:
    """Each sample its own run of ``request.steps`` steps on a freshly built network."""
    from snn2loihi.deploy.timeline import built_layers, layer_shape

    path = Path(request.path)
    net_rec = read_network(path, input_shape=request.input_shape)
    built = built_layers(net_rec, request.drive, request.graded)
    netx, RunSteps, io, Monitor = _lava_modules()
    run_cfg = _run_config(request.backend)
    steps, in_shape = request.steps, net_rec.input_shape
    per_sample: list[dict[str, np.ndarray]] = []
    for sample in x:
        lava_net = netx.hdf5.Network(
            net_config=str(path),
            skip_layers=1 if request.drive == "skip" else 0,
            input_message_bits=GRADED_MESSAGE_BITS if request.graded else 0,
            reset_interval=request.reset_interval,
            reset_offset=request.reset_offset,
            input_shape=tuple(reversed(in_shape)) if len(in_shape) == 3 else None,
        )
        if len(lava_net.layers) != len(built):
            raise LavaRunError(
                f"{path}: Lava built {len(lava_net.layers)} layers, expected {len(built)}"
            )
        if request.drive == "bias":
            lava_net.in_layer.neuron.bias_mant.init = _xyz(sample).astype(np.int32)
        else:
            fed = fit_input_port(sample[None].astype(np.int64), lava_net.inp.shape, path)
            src = io.source.RingBuffer(data=_to_lava_layout(fed, 0))
            src.s_out.connect(lava_net.inp)
        monitors = []
        for b, layer in zip(built, lava_net.layers, strict=True):
            targets = [("s", layer.neuron.s_out)]
            targets += _lava_state_vars(layer.neuron, "".join(request.record))
            for name, target in targets:
                mon = Monitor()
                mon.probe(target, steps)
                monitors.append((f"{name}{b.index}", b, mon, target))
        try:
            lava_net.run(condition=RunSteps(num_steps=steps), run_cfg=run_cfg)
            records = {}
            for key, b, mon, target in monitors:
                data = mon.get_data()[target.process.name][target.name]
                records[key] = _to_chw(data, steps, layer_shape(b.layer))
        except Exception as exc:  # Lava raises bare Exceptions from its runtime
            raise LavaRunError(f"{path}: Lava run failed: {type(exc).__name__}: {exc}") from exc
        finally:
            _stop(lava_net)
        per_sample.append(records)
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


def _xyz(sample: np.ndarray) -> np.ndarray:
    """One sample's CHW array in Lava's XYZ (W, H, C) layout."""
    return np.ascontiguousarray(sample.transpose(*reversed(range(sample.ndim))))


def _run_in_process(request: LavaRequest, x: np.ndarray) -> LavaResult:
    """Run Lava in this process (the child); see :func:`run_lava`."""
    if request.clock == "global":
        return _run_global_in_process(request, x)
    path, record_state = Path(request.path), request.record_state
    net_rec = read_network(path, input_shape=request.input_shape)
    n, steps = x.shape[:2]
    syn_layers = net_rec.synaptic_layers
    depth = len(syn_layers)
    total = n * steps + depth
    netx, RunSteps, io, Monitor = _lava_modules()
    run_cfg = _run_config(request.backend)
    in_shape = net_rec.input_shape
    lava_net = netx.hdf5.Network(
        net_config=str(path),
        input_message_bits=GRADED_MESSAGE_BITS if request.graded else 0,
        reset_interval=steps,
        reset_offset=1,
        input_shape=tuple(reversed(in_shape)) if len(in_shape) == 3 else None,
    )
    if len(lava_net.layers) != depth:
        raise LavaRunError(f"{path}: Lava built {len(lava_net.layers)} layers, expected {depth}")
    fed = fit_input_port(np.asarray(x, dtype=np.int64), lava_net.inp.shape, path)
    src = io.source.RingBuffer(data=_to_lava_layout(fed, depth).astype(int))
    src.s_out.connect(lava_net.inp)
    probed = list(range(depth)) if request.probe_all or record_state is True else [depth - 1]

    def with_state(k: int) -> bool:
        return record_state is True or (record_state == "last" and k == depth - 1)

    monitors = {}
    for k in probed:
        layer = lava_net.layers[k]
        targets = {"s": layer.neuron.s_out}
        if with_state(k):
            targets.update(u=layer.neuron.u, v=layer.neuron.v)
        for name, target in targets.items():
            mon = Monitor()
            mon.probe(target, total)
            monitors[(k, name)] = (mon, target)
    try:
        lava_net.run(condition=RunSteps(num_steps=total), run_cfg=run_cfg)
        records = {}
        for (k, name), (mon, target) in monitors.items():
            data = mon.get_data()
            records[(k, name)] = np.asarray(data[target.process.name][target.name])
    except Exception as exc:  # Lava raises bare Exceptions from its runtime
        raise LavaRunError(f"{path}: Lava run failed: {type(exc).__name__}: {exc}") from exc
    finally:
        _stop(lava_net)
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


_RESULT_KEYS = ("spikes", "u", "v")


def _save_result(result: LavaResult, folder: Path) -> None:
    """Write a LavaResult as one .npy per array plus an index (child side)."""
    meta = {"layer_indices": result.layer_indices, "counts": {}, "records": list(result.records)}
    for key, arr in result.records.items():
        np.save(folder / f"record_{key}.npy", arr)
    for key in _RESULT_KEYS:
        arrays = getattr(result, key)
        meta["counts"][key] = len(arrays)
        for k, arr in enumerate(arrays):
            np.save(folder / f"{key}_{k}.npy", arr)
    (folder / "result.json").write_text(json.dumps(meta))


def _load_result(folder: Path) -> LavaResult:
    meta = json.loads((folder / "result.json").read_text())
    arrays = {
        key: [np.load(folder / f"{key}_{k}.npy") for k in range(meta["counts"][key])]
        for key in _RESULT_KEYS
    }
    records = {key: np.load(folder / f"record_{key}.npy") for key in meta.get("records", [])}
    return LavaResult(layer_indices=meta["layer_indices"], records=records, **arrays)


def _die_with_parent(parent: int, folder: Path, done: threading.Event, poll: float = 0.5):
    """Child side: when the parent is gone (killed with SIGKILL, say), remove the run folder and
    kill this process group (the child and Lava's workers), so nothing outlives the command.

    The watcher is not a daemon: an interpreter that ends while it cleans up waits for it. It
    returns at once when ``done`` is set (the run ended while the parent lives).
    """

    def watch() -> None:
        while os.getppid() == parent:
            if done.wait(poll):
                return
        # Move the folder away first: the run's own writes into it then fail instead of racing
        # the removal; then remove it (retried, in case a file was still being created).
        doomed = folder.with_name(folder.name + ".orphaned")
        try:
            folder.rename(doomed)
        except OSError:
            doomed = folder
        for _ in range(5):
            shutil.rmtree(doomed, ignore_errors=True)
            if not doomed.exists():
                break
            time.sleep(0.05)
        os.killpg(0, signal.SIGKILL)

    watcher = threading.Thread(target=watch, name="snn2loihi-parent-watch")
    watcher.start()
    return watcher


def _child_main(folder: Path, parent: int) -> int:
    """Child entry point: read the request, run Lava, write the result or the error."""
    done = threading.Event()
    _die_with_parent(parent, folder, done)
    try:
        request = LavaRequest.from_json((folder / "request.json").read_text())
        result = _run_in_process(request, np.load(folder / "x.npy"))
        _save_result(result, folder)
        return 0
    except Exception as exc:
        kind = type(exc).__name__ if isinstance(exc, Snn2LoihiError) else "LavaRunError"
        message = str(exc) if isinstance(exc, Snn2LoihiError) else f"{type(exc).__name__}: {exc}"
        try:
            (folder / "error.json").write_text(json.dumps({"kind": kind, "message": message}))
        except OSError:  # the folder is gone: the parent gave up on this run
            pass
        return 1
    finally:
        done.set()


def _kill_group(proc: subprocess.Popen) -> None:
    """Kill the child's whole process group (Lava's workers included) and reap the child."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(5.0)
            break
        except subprocess.TimeoutExpired:
            continue
    try:  # stragglers of the group may outlive their leader
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def run_lava(
    path: str | Path | None,
    x: np.ndarray,
    *,
    graded: bool,
    probe_all: bool = False,
    record_state: bool | str = False,
    backend: str = "lava",
    timeout: float | None = None,
    net: NetXNetwork | None = None,
    clock: dict | None = None,
    name: str | None = None,
) -> LavaResult:
    """Run samples ``x`` (N, T, *input_shape) through the ``.net`` file on Lava.

    ``path`` None: the network ``net`` (required then) is written into the run's own folder,
    which the Lava child removes if the command is killed, so no file outlives it; ``name``
    then names it in errors.

    ``graded`` sends the input as 8-bit graded messages (``input_message_bits=8``), else as
    spikes. ``probe_all`` returns every layer's spikes, not only the output; ``record_state``
    also returns ``u`` and ``v`` of every probed layer (``"last"``: of the output layer only). ``timeout`` (seconds, None = no limit)
    bounds the whole run, compilation included; on expiry :class:`LavaRunError` is raised.
    ``net`` (the file's records, if already read) supplies the input shape of slayer files.
    ``clock``: run on the global clock instead (each sample its own run, as netx builds the
    network): ``{"drive", "steps", "reset_interval", "reset_offset", "record"}`` (see
    :mod:`snn2loihi.deploy.timeline`); the result's ``records`` then hold every built layer.
    """
    if path is None and net is None:
        raise ValueError("run_lava needs the .net file or the network")
    if path is not None:
        path = Path(path).resolve()
        net = net if net is not None else read_network(path)
    shown = name or path or "the network"
    with tempfile.TemporaryDirectory(prefix="snn2loihi-lava-") as tmp:
        folder = Path(tmp)
        if path is None:
            path = write_network(net, folder / "model.net")
        request = LavaRequest(
            str(path),
            tuple(net.input_shape),
            bool(graded),
            probe_all,
            record_state,
            backend,
            **({"clock": "global", **clock} if clock else {}),
        )
        np.save(folder / "x.npy", np.asarray(x))
        (folder / "request.json").write_text(request.to_json())
        proc = subprocess.Popen(
            [sys.executable, "-m", "snn2loihi.deploy.lava_runner", str(folder), str(os.getpid())],
            start_new_session=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            try:
                _, stderr = proc.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                raise LavaRunError(
                    f"{shown}: the Lava run exceeded the timeout of {timeout:g} s and was stopped"
                ) from None
        finally:
            _kill_group(proc)
        if (folder / "error.json").exists():
            err = json.loads((folder / "error.json").read_text())
            raise _ERRORS.get(err["kind"], LavaRunError)(err["message"])
        if proc.returncode != 0 or not (folder / "result.json").exists():
            tail = stderr.decode(errors="replace").strip().splitlines()[-1:] if stderr else []
            raise LavaRunError(
                f"{shown}: the Lava process failed (exit code {proc.returncode}){': ' + tail[0] if tail else ''}"
            )
        return _load_result(folder)


_ERRORS = {cls.__name__: cls for cls in (LavaRunError, LavaUnavailableError, Snn2LoihiError)}

if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    sys.exit(_child_main(Path(sys.argv[1]), int(sys.argv[2])))
