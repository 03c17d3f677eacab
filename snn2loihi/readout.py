"""The prediction rule of a NetX network: one rule per network, used by every back end.

- ``readout_v``: the output layer never spikes (``vThMant = 2^17 - 1``, as in the networks that
  snn2loihi exports, whose scale provably keeps ``v`` below it), or it is NetX's default neuron
  (a layer without a neuron group: a current integrator, ``v = u``, as slayer and bootstrap write
  an ``Affine`` readout block): the class is ``argmax(v >> 6)`` of the output layer after the
  sample's last step.
- ``spike_count``: the output layer spikes (lava-dl's networks): the class is the output neuron
  with the most spikes over the sample's T steps.
- ``sigma_last``: an SDNN network with a ``sigma_output`` readout (it sends its running sum):
  the class is the largest value sent at the last step.
- ``message_sum``: an SDNN network whose output layer is sigma-delta: the class is the largest
  sum of the messages over the steps (the decoded activation).

The rule is derived from the file (nothing extra is stored, so lava-dl's ``netx.hdf5.Network``
loads our files unchanged). Ties go to the first index. The back ends cut each sample's window
out of the pipelined run (the pipeline delay is already accounted), so ``v`` "after the last
step" is the state after the sample's T-th step at the output layer.
"""

from __future__ import annotations

import numpy as np
import torch

from snn2loihi.loihi import ACT_SHIFT, VTH_MAX
from snn2loihi.schema import NetXNetwork, SigmaDeltaNeuron

READOUT_V = "readout_v"
SPIKE_COUNT = "spike_count"
SIGMA_LAST = "sigma_last"
MESSAGE_SUM = "message_sum"
RULES = (READOUT_V, SPIKE_COUNT, SIGMA_LAST, MESSAGE_SUM)
COUNT_WINDOWS = ("sample", "input")  # spike_count: whose T steps of output spikes are counted
DESCRIPTIONS = {
    READOUT_V: "argmax of the readout's v >> 6",
    SPIKE_COUNT: "max spike count",
    SIGMA_LAST: "argmax of the sigma readout at the last step",
    MESSAGE_SUM: "argmax of the summed output messages",
}


def prediction_rule(net: NetXNetwork) -> str:
    """The rule of ``net``'s output layer (see the module docstring)."""
    _, last = net.synaptic_layers[-1]
    if isinstance(last.neuron, SigmaDeltaNeuron):
        return SIGMA_LAST if last.neuron.sigma_output else MESSAGE_SUM
    v_readout = last.neuron.vth_mant == VTH_MAX or last.neuron.netx_default
    return READOUT_V if v_readout else SPIKE_COUNT


def readout_logits(v_last: torch.Tensor | np.ndarray) -> torch.Tensor:
    """Integer logits (N, classes) from the output layer's ``v`` after the last step: ``v >> 6``."""
    v = torch.as_tensor(np.asarray(v_last) if not isinstance(v_last, torch.Tensor) else v_last)
    return v.to(torch.int64).reshape(v.shape[0], -1) >> ACT_SHIFT


def predict(
    rule: str,
    spikes: torch.Tensor | np.ndarray | None = None,
    v_last: torch.Tensor | np.ndarray | None = None,
) -> np.ndarray:
    """Classes (N,) int64 by ``rule``.

    ``spikes``: output spikes (N, T, *shape), needed for ``spike_count``; ``v_last``: the output
    layer's ``v`` after the last step (N, *shape), needed for ``readout_v``.
    """
    if rule == READOUT_V:
        if v_last is None:
            raise ValueError("the readout_v rule needs the output layer's v after the last step")
        return readout_logits(v_last).argmax(1).numpy()
    if rule in (SPIKE_COUNT, SIGMA_LAST, MESSAGE_SUM):
        if spikes is None:
            raise ValueError(f"the {rule} rule needs the output messages")
        s = torch.as_tensor(np.asarray(spikes) if not isinstance(spikes, torch.Tensor) else spikes)
        s = s.reshape(s.shape[0], s.shape[1], -1).to(torch.int64)
        return (s[:, -1] if rule == SIGMA_LAST else s.sum(1)).argmax(1).numpy()
    raise ValueError(f"unknown prediction rule {rule!r} (choose from {', '.join(RULES)})")


def input_window_predictions(spikes: np.ndarray, delay: int) -> np.ndarray:
    """Classes (N,) by spike count over the T steps aligned with each sample's input in one
    continuous stream of the N samples, as lava-dl's NetX MNIST tutorial counts (its
    ``OutSpkToCls``): sample k's count holds its first ``T - delay`` output steps and the last
    ``delay`` output steps of sample k - 1 (none before sample 0). ``spikes``: each sample's own
    output window (N, T, *shape), as the back ends return it; ``delay``: the pipeline delay in
    steps (the number of synapse layers). Ties go to the first index."""
    s = np.asarray(spikes)
    n, t = s.shape[:2]
    flat = s.reshape(n * t, -1).astype(np.int64)
    stream = np.concatenate([np.zeros((delay, flat.shape[1]), np.int64), flat])[: n * t]
    return stream.reshape(n, t, -1).sum(1).argmax(1)
