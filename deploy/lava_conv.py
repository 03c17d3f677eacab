"""Choose the branch of Lava's own convolution (``lava.proc.conv.utils.conv``) that a run uses.

Lava's ``Conv`` process models call ``utils.conv``, which has two branches: a torch one
(``F.conv2d`` in float32, one call per step) and a SciPy one (one ``signal.convolve2d`` per pair
of input and output channels, in float64). Lava ships with the torch branch switched off
(``TORCH_IS_AVAILABLE = False``: torch hung inside Lava's forked processes when its OpenMP
thread pool had started before the fork). The SciPy branch costs about a second per step for a
512x256 6x6 convolution, the whole cost of a full-width CIFAR-10 parity run.

Both branches compute the same integers when no sum can be rounded: the torch branch is exact
when every layer's largest possible ``|sum of weight x input|`` is at most 2**24 (every integer
up to 2**24 is a float32, and so is every partial sum below it). :func:`use_torch_conv` checks that
bound for every convolution of the built network and switches the torch branch on only then,
with torch limited to one thread in this process before Lava forks its workers (no thread pool
is ever started, so nothing can hang, and ~30 single-threaded workers do not oversubscribe the
cores). Otherwise Lava's default branch stays.
"""

from __future__ import annotations

import logging

import numpy as np

log = logging.getLogger(__name__)

FLOAT32_EXACT = 2**24  # every integer of magnitude up to this is exact in float32


def conv_sum_bound(weight: np.ndarray, message_bits: int) -> int:
    """Largest ``|sum of weight x input|`` of one output of a Lava conv: ``weight`` (out, kx, ky,
    in) integers, inputs binary spikes (``message_bits`` 0) or graded messages of that many bits."""
    largest_input = 1 if message_bits == 0 else 2**message_bits
    per_output = np.abs(np.asarray(weight, dtype=np.int64)).reshape(len(weight), -1).sum(axis=1)
    return int(per_output.max(initial=0)) * largest_input


def use_torch_conv(lava_net) -> bool:
    """Switch Lava's convolution to its torch branch if that is exact for every conv layer of
    the built network ``lava_net`` (netx's, or :mod:`~snn2loihi.deploy.lava_graph`'s with its
    shortcut convolutions; see the module docstring); returns whether it did.

    Call in the process that starts the Lava run, before it starts."""
    synapses = [getattr(layer, "synapse", None) for layer in lava_net.layers]
    synapses += getattr(lava_net, "shortcut_synapses", [])  # a residual graph's (lava_graph)
    bounds = [
        conv_sum_bound(syn.weight.init, int(np.asarray(syn.num_message_bits.init).ravel()[0]))
        for syn in synapses
        if hasattr(syn, "kernel_size")  # a conv (input layers have no synapse)
    ]
    from lava.proc.conv import utils

    if not bounds or max(bounds) > FLOAT32_EXACT:
        if bounds:
            log.info("Lava conv stays on SciPy: a sum may reach %d > 2**24", max(bounds))
        utils.TORCH_IS_AVAILABLE = False  # Lava's default, also after an earlier run here
        return False
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(1)
    torch.set_float32_matmul_precision("highest")
    utils.torch, utils.F, utils.TORCH_IS_AVAILABLE = torch, F, True
    return True
