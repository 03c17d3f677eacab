"""One call for every back end: output spikes and, where the prediction rule needs it, the
output layer's ``v`` after each sample's last step, then the predicted classes."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

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


def run_backend(
    net: NetXNetwork,
    path: str | Path,
    x: np.ndarray,
    backend: str,
    *,
    device: str = "cpu",
    timeout: float | None = None,
) -> BackendOutput:
    """Run ``x`` (N, T, *input_shape) through ``net`` (read from ``path``) on ``backend``."""
    rule = prediction_rule(net)
    state = "last" if rule == READOUT_V else False
    if backend == "emulator":
        from snn2loihi.deploy.emulator import Emulator

        res = Emulator(net, device=device).run(x, record_state=state)
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
