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
from snn2loihi.netx_io import read_network
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
        return cls(**{**fields, "input_shape": tuple(fields["input_shape"])})


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


def _run_in_process(request: LavaRequest, x: np.ndarray) -> LavaResult:
    """Run Lava in this process (the child); see :func:`run_lava`."""
    path, record_state = Path(request.path), request.record_state
    net_rec = read_network(path, input_shape=request.input_shape)
    n, steps = x.shape[:2]
    syn_layers = net_rec.synaptic_layers
    depth = len(syn_layers)
    total = n * steps + depth
    try:
        netx = import_netx()
        from lava.magma.core.run_conditions import RunSteps
        from lava.proc import io
        from lava.proc.monitor.process import Monitor
    except ImportError as exc:
        raise LavaUnavailableError(
            f"Lava is not installed ({exc}); run `make setup` or install lava-nc and lava-dl"
        ) from None
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
    src = io.source.RingBuffer(
        data=_to_lava_layout(np.asarray(x, dtype=np.int64), depth).astype(int)
    )
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
    meta = {"layer_indices": result.layer_indices, "counts": {}}
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
    return LavaResult(layer_indices=meta["layer_indices"], **arrays)


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
    path: str | Path,
    x: np.ndarray,
    *,
    graded: bool,
    probe_all: bool = False,
    record_state: bool | str = False,
    backend: str = "lava",
    timeout: float | None = None,
    net: NetXNetwork | None = None,
) -> LavaResult:
    """Run samples ``x`` (N, T, *input_shape) through the ``.net`` file on Lava.

    ``graded`` sends the input as 8-bit graded messages (``input_message_bits=8``), else as
    spikes. ``probe_all`` returns every layer's spikes, not only the output; ``record_state``
    also returns ``u`` and ``v`` of every probed layer (``"last"``: of the output layer only). ``timeout`` (seconds, None = no limit)
    bounds the whole run, compilation included; on expiry :class:`LavaRunError` is raised.
    ``net`` (the file's records, if already read) supplies the input shape of slayer files.
    """
    path = Path(path).resolve()
    net = net if net is not None else read_network(path)
    request = LavaRequest(
        str(path), tuple(net.input_shape), bool(graded), probe_all, record_state, backend
    )
    with tempfile.TemporaryDirectory(prefix="snn2loihi-lava-") as tmp:
        folder = Path(tmp)
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
                    f"{path}: the Lava run exceeded the timeout of {timeout:g} s and was stopped"
                ) from None
        finally:
            _kill_group(proc)
        if (folder / "error.json").exists():
            err = json.loads((folder / "error.json").read_text())
            raise _ERRORS.get(err["kind"], LavaRunError)(err["message"])
        if proc.returncode != 0 or not (folder / "result.json").exists():
            tail = stderr.decode(errors="replace").strip().splitlines()[-1:] if stderr else []
            raise LavaRunError(
                f"{path}: the Lava process failed (exit code {proc.returncode}){': ' + tail[0] if tail else ''}"
            )
        return _load_result(folder)


_ERRORS = {cls.__name__: cls for cls in (LavaRunError, LavaUnavailableError, Snn2LoihiError)}

if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    sys.exit(_child_main(Path(sys.argv[1]), int(sys.argv[2])))
