"""Run a NetX ``.net`` file on Lava: the CPU simulator (``Loihi2SimCfg(select_tag='fixed_pt')``)
or Loihi 2 hardware (``Loihi2HwCfg``, needs Intel's Loihi runtime).

All samples run in one compiled network: inputs are concatenated in time and every layer is reset
when a sample's first input reaches it (``reset_interval=T, reset_offset=1``). The network is
always stopped, also on errors, timeouts and Ctrl-C, so no Lava process is left behind.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from snn2loihi.errors import LavaRunError, LavaUnavailableError
from snn2loihi.lava_compat import import_netx
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


@contextlib.contextmanager
def _deadline(seconds: float | None):
    """Raise TimeoutError in the main thread after ``seconds`` (no-op elsewhere or when None)."""
    if not seconds or threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_alarm(signum, frame):
        raise TimeoutError(f"Lava run exceeded the timeout of {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


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


def run_lava(
    path: str | Path,
    x: np.ndarray,
    *,
    graded: bool,
    probe_all: bool = False,
    record_state: bool = False,
    backend: str = "lava",
    timeout: float | None = None,
    net: NetXNetwork | None = None,
) -> LavaResult:
    """Run samples ``x`` (N, T, *input_shape) through the ``.net`` file on Lava.

    ``graded`` sends the input as 8-bit graded messages (``input_message_bits=8``), else as
    spikes. ``probe_all`` returns every layer's spikes, not only the output; ``record_state``
    also returns ``u`` and ``v`` of every probed layer. ``timeout`` (seconds) bounds the run.
    """
    path = Path(path)
    net_rec = net if net is not None else read_network(path)
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
    run_cfg = _run_config(backend)
    in_shape = net_rec.input_shape
    lava_net = netx.hdf5.Network(
        net_config=str(path),
        input_message_bits=8 if graded else 0,
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
    probed = list(range(depth)) if probe_all or record_state else [depth - 1]
    monitors = {}
    for k in probed:
        layer = lava_net.layers[k]
        targets = {"s": layer.neuron.s_out}
        if record_state:
            targets.update(u=layer.neuron.u, v=layer.neuron.v)
        for name, target in targets.items():
            mon = Monitor()
            mon.probe(target, total)
            monitors[(k, name)] = (mon, target)
    try:
        with _deadline(timeout):
            lava_net.run(condition=RunSteps(num_steps=total), run_cfg=run_cfg)
            records = {}
            for (k, name), (mon, target) in monitors.items():
                data = mon.get_data()
                proc = target.process.name
                var = target.name
                records[(k, name)] = np.asarray(data[proc][var])
    except TimeoutError as exc:
        raise LavaRunError(f"{path}: {exc}") from None
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # Lava raises bare Exceptions from its runtime
        raise LavaRunError(f"{path}: Lava run failed: {type(exc).__name__}: {exc}") from exc
    finally:
        _stop(lava_net)
    result = LavaResult(layer_indices=[syn_layers[k][0] for k in probed], spikes=[])
    for k in probed:
        shape = tuple(syn_layers[k][1].shape)
        shape = shape if len(shape) == 3 else (int(np.prod(shape)),)
        result.spikes.append(_windows(records[(k, "s")], k, n, steps, shape).astype(np.uint8))
        if record_state:
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
