"""The prediction rule of a NetX network: one rule per network, used by every back end.

- ``readout_v``: the output layer never spikes (``vThMant = 2^17 - 1``, as in the networks that
  snn2loihi exports, whose scale provably keeps ``v`` below it): the class is
  ``argmax(v >> 6)`` of the output layer after the sample's last step.
- ``spike_count``: the output layer spikes (lava-dl's networks): the class is the output neuron
  with the most spikes over the sample's T steps.

The rule is derived from the file (nothing extra is stored, so lava-dl's ``netx.hdf5.Network``
loads our files unchanged). Ties go to the first index. The back ends cut each sample's window
out of the pipelined run (the pipeline delay is already accounted), so ``v`` "after the last
step" is the state after the sample's T-th step at the output layer.
"""

from __future__ import annotations

import numpy as np
import torch

from snn2loihi.loihi import ACT_SHIFT, VTH_MAX
from snn2loihi.schema import NetXNetwork

READOUT_V = "readout_v"
SPIKE_COUNT = "spike_count"
RULES = (READOUT_V, SPIKE_COUNT)


def prediction_rule(net: NetXNetwork) -> str:
    """``readout_v`` if the output layer's threshold is the largest mantissa, else ``spike_count``."""
    _, last = net.synaptic_layers[-1]
    return READOUT_V if last.neuron.vth_mant == VTH_MAX else SPIKE_COUNT


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
    if rule == SPIKE_COUNT:
        if spikes is None:
            raise ValueError("the spike_count rule needs the output spikes")
        s = torch.as_tensor(np.asarray(spikes) if not isinstance(spikes, torch.Tensor) else spikes)
        return s.reshape(s.shape[0], s.shape[1], -1).to(torch.int64).sum(1).argmax(1).numpy()
    raise ValueError(f"unknown prediction rule {rule!r} (choose from {', '.join(RULES)})")
