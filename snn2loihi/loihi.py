"""Loihi 2's fixed-point constants and the bounds derived from them: the one definition.

Register widths and field ranges of the CUBA neuron and its synapses as Lava's bit-accurate
models use them (``lava/proc/lif/models.py``, ``lava/proc/dense``, ``lava/proc/conv``), and the
worst-case bounds that the quantizer, the exact synapse and the headroom check derive from them.
Units: "mantissa" values are the integers stored in a NetX file; ``u``/``v`` are in the units of
the 24-bit registers, where synaptic input, bias and threshold enter shifted by ``ACT_SHIFT``.
"""

from __future__ import annotations

import numpy as np
import torch

UV_BITS = 24  # u and v are 24-bit signed registers
UV_LIMIT = 2 ** (UV_BITS - 1)  # 2^23: |u| wraps here, v saturates at +-(UV_LIMIT - 1)
ACT_SHIFT = 6  # synaptic input, bias and threshold are MSB-aligned by 6 bits inside the neuron

DECAY_BITS = 12
DECAY_UNITY = 2**DECAY_BITS  # 4096: decays are 12-bit fractions; 4096 = no memory
DECAY_MIN, DECAY_MAX = 0, DECAY_UNITY

WEIGHT_MIN, WEIGHT_MAX = -256, 255  # 8-bit mantissa with sign (9 bits in a NetX file)
BIAS_BITS = 13
BIAS_MIN, BIAS_MAX = -(2 ** (BIAS_BITS - 1)), 2 ** (BIAS_BITS - 1) - 1  # signed bias mantissa
VTH_BITS = 17
VTH_MIN, VTH_MAX = 0, 2**VTH_BITS - 1  # unsigned threshold mantissa (compared as << 6)
CONV_PARAM_MAX = 127  # Lava stores stride/padding/dilation/groups as int8

GRADED_MESSAGE_BITS = 8  # graded first-layer input (input_message_bits)
GRADED_INPUT_MAX = 2**GRADED_MESSAGE_BITS - 1  # 255: the largest graded input value
SPIKE_MAX = 1  # a binary spike

INT32_MAX = 2**31 - 1  # Lava's accumulators and neuron state are numpy int32

# The largest synaptic input |a| (mantissa units) for which ``a << 6`` stays below 2^23: u never
# wraps, and every sum inside one neuron step stays far below 2^31 (no int32 overflow).
INT32_SAFE_INPUT = 2 ** (UV_BITS - 1 - ACT_SHIFT) - 1


def row_sums(weight: np.ndarray | torch.Tensor) -> tuple:
    """Per output row (dim 0): the sum of the positive weights and of the |negative| weights.

    ``weight``: (Cout, ...) integer or float, numpy or torch. With non-negative inputs in
    ``0..m``, every partial sum of ``w . x`` of a row lies in ``[-neg * m, pos * m]``.
    """
    rows = weight.reshape(weight.shape[0], -1)
    if rows.dtype in (np.int64, np.int32, np.int16, np.int8, np.uint8):
        pos = rows.clip(min=0).sum(1, dtype=np.int64)
        return pos, pos - rows.sum(1, dtype=np.int64)  # exact in integers: one pass fewer
    if isinstance(rows, torch.Tensor) and not rows.is_floating_point():
        # exact in int64; 8-bit weights (training's grid) in int32, about twice as fast, where
        # no row can reach 2^31
        narrow = rows.element_size() == 1 and rows.shape[1] < 2**23
        acc = torch.int32 if narrow else torch.int64
        wide = rows.to(acc, copy=True)  # widened once (a sum's dtype= widens its input anew)
        total = wide.sum(1, dtype=acc)
        pos = wide.clamp_(min=0).sum(1, dtype=acc)
        return pos.long(), (pos - total).long()
    # floats: the sum of the negated negatives is, bit for bit, the negated sum of them
    pos = rows.clip(min=0).sum(1)
    return pos, -rows.clip(max=0).sum(1)


def worst_case_input(
    weight: np.ndarray | torch.Tensor, input_max: int = SPIKE_MAX, repeat: int = 1
) -> np.ndarray | torch.Tensor:
    """Per output row, the largest ``|w . x|`` for inputs in ``0..input_max``.

    ``repeat``: how often each weight occurs in the kernel as run (``p^2`` for the compact kernel
    of a ``p x p`` block kernel). Returns (Cout,) of ``weight``'s library and dtype.
    """
    pos, neg = row_sums(weight)
    top = torch.maximum(pos, neg) if isinstance(pos, torch.Tensor) else np.maximum(pos, neg)
    return top * (repeat * input_max)
