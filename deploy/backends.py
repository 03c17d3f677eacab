"""One call for every back end: output spikes and, where the prediction rule needs it, the
output layer's ``v`` after each sample's last step, then the predicted classes."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from snn2loihi.deploy.timeline import Timeline
from snn2loihi.readout import READOUT_V, predict, prediction_rule
from snn2loihi.schema import NetXNetwork

BACKENDS = ("emulator", "lava", "loihi2")


@dataclass
class BackendOutput:
    """``spikes`` (N, T, *shape) uint8 of the output layer; ``v_last`` (N, *shape) int32 or
    None; ``predictions`` (N,) int64 by the network's ``rule``."""

    spikes: np.ndarray
    v_last: np.ndarray | None
    rule: str
    predictions: np.ndarray
    records: dict[str, np.ndarray] | None = None  # global clock: "s3", "u3", ... per layer


@dataclass(frozen=True)
class GlobalClock:
    """A run on Lava's global clock: how the input drives the network, the steps of each
    sample's run, netx's resets and the states to record (see ``deploy/timeline.py``)."""

    drive: str
    steps: int
    timeline: Timeline = Timeline()
    record: tuple[str, ...] = ()

    def lava_request(self) -> dict:
        t = self.timeline
        return {
            "drive": self.drive,
            "steps": self.steps,
            "reset_interval": t.reset_interval,
            "reset_offset": t.reset_offset,
            "record": self.record,
        }


def _run_global(net, path, x, backend, device, timeout, clock: GlobalClock, rule: str):
    record = tuple(dict.fromkeys((*clock.record, *(("v",) if rule == READOUT_V else ()))))
    out_index = net.synaptic_layers[-1][0]
    if backend == "emulator":
        from snn2loihi.deploy.emulator import Emulator

        traces = Emulator(net, device=device).run_netx(
            x, drive=clock.drive, steps=clock.steps, timeline=clock.timeline, record=record
        )
        records = {}
        for tr in traces:
            msgs = tr.messages.numpy()
            records[f"s{tr.index}"] = msgs.astype(np.uint8 if tr.neuron == "CUBA" else np.int32)
            records.update({f"{k}{tr.index}": a.numpy() for k, a in tr.states.items()})
    else:
        from snn2loihi.deploy.lava_runner import run_lava
        from snn2loihi.deploy.timeline import check_timeline_input

        xt, graded = check_timeline_input(net, x, clock.drive)
        lava_clock = {**clock.lava_request(), "record": record}
        records = run_lava(
            path, xt.numpy(), graded=graded, backend=backend, timeout=timeout, net=net,
            clock=lava_clock,
        ).records  # fmt: skip
    spikes = records[f"s{out_index}"]
    v_last = records[f"v{out_index}"][:, -1] if rule == READOUT_V else None
    wanted = {k: a for k, a in records.items() if k.rstrip("0123456789") in ("s", *clock.record)}
    return BackendOutput(spikes, v_last, rule, predict(rule, spikes, v_last), wanted)


def run_backend(
    net: NetXNetwork,
    path: str | Path,
    x: np.ndarray,
    backend: str,
    *,
    device: str = "cpu",
    timeout: float | None = None,
    clock: GlobalClock | None = None,
) -> BackendOutput:
    """Run ``x`` (N, T, *input_shape) through ``net`` (read from ``path``) on ``backend``;
    with ``clock``, on Lava's global clock (``x`` (N, *input_shape) for the bias drive)."""
    rule = prediction_rule(net)
    if clock is not None:
        return _run_global(net, path, x, backend, device, timeout, clock, rule)
    state = "last" if rule == READOUT_V else False
    if backend == "emulator":
        from snn2loihi.deploy.emulator import Emulator

        # the output layer's spikes only: no trace of every layer for the whole input
        res = Emulator(net, device=device).run(x, record_state=state, spikes="output")
        spikes = res.output.numpy().astype(np.uint8)
        v_last = None if not state else res.layers[-1].v[:, -1].numpy()
    else:
        from snn2loihi.deploy.emulator import check_input
        from snn2loihi.deploy.lava_runner import run_lava

        xt, graded = check_input(x, net.input_shape)
        res = run_lava(
            path,
            xt.numpy(),
            graded=graded,
            backend=backend,
            timeout=timeout,
            net=net,
            record_state=state,
        )
        spikes = res.output
        v_last = None if not state else res.v[-1][:, -1]
    return BackendOutput(spikes, v_last, rule, predict(rule, spikes, v_last))
