"""The one module of Loihi constants and bounds: consistent values, bounds that are attained."""

from __future__ import annotations

import numpy as np
import torch

from snn2loihi import loihi
from snn2loihi.neuron import decay, decay_unwrapped


def test_constants_follow_the_register_widths():
    assert loihi.UV_LIMIT == 2**23 and loihi.DECAY_UNITY == 4096
    assert (loihi.BIAS_MIN, loihi.BIAS_MAX) == (-4096, 4095)
    assert loihi.VTH_MAX == 2**17 - 1 and loihi.GRADED_INPUT_MAX == 255
    # the int32-safe input is the largest |a| whose a << 6 stays inside u's 24 bits
    assert (loihi.INT32_SAFE_INPUT << loihi.ACT_SHIFT) < loihi.UV_LIMIT
    assert ((loihi.INT32_SAFE_INPUT + 1) << loihi.ACT_SHIFT) == loihi.UV_LIMIT


def test_worst_case_input_is_attained_and_library_independent():
    rng = np.random.default_rng(0)
    w = rng.integers(-256, 256, size=(7, 3, 3, 3))
    for input_max in (1, 255):
        bound = loihi.worst_case_input(w, input_max)
        assert np.array_equal(bound, loihi.worst_case_input(torch.as_tensor(w), input_max).numpy())
        rows = w.reshape(7, -1)
        x_pos = np.where(rows > 0, input_max, 0)  # the input that maximizes each row's sum
        x_neg = np.where(rows < 0, input_max, 0)
        attained = np.maximum((rows * x_pos).sum(1), -(rows * x_neg).sum(1))
        assert np.array_equal(bound, attained)
    assert np.array_equal(loihi.worst_case_input(w, 1, repeat=4), 4 * loihi.worst_case_input(w))


def test_decay_rounds_toward_zero_and_wraps_like_int32():
    x = torch.tensor([-4097, -1, 0, 1, 4097, 2**40], dtype=torch.int64)
    assert decay_unwrapped(x, 2048).tolist() == [-2048, 0, 0, 0, 2048, 2**39]
    assert decay(x, 2048)[:5].tolist() == [-2048, 0, 0, 0, 2048]
    assert int(decay(x, 2048)[5]) == ((2**39 + 2**31) % 2**32) - 2**31
    assert decay(x, 0) is x and not decay(x, 4096).any()


def test_row_sums_are_exact_for_every_integer_width_and_match_floats():
    """int8 weights (training's grid) keep their dtype: -128 must count as 128, not wrap."""
    rng = np.random.default_rng(1)
    w = rng.integers(-128, 128, size=(6, 50))
    w[0, :] = -128  # a row of int8 minima: negating it in int8 would wrap
    want_pos = np.where(w > 0, w, 0).sum(1)
    want_neg = np.where(w < 0, -w, 0).sum(1)
    for arr in (w, w.astype(np.int8), w.astype(np.int16), torch.as_tensor(w).to(torch.int8),
                torch.as_tensor(w), torch.as_tensor(w).to(torch.int32)):  # fmt: skip
        before = arr.copy() if isinstance(arr, np.ndarray) else arr.clone()
        pos, neg = loihi.row_sums(arr)
        assert np.array_equal(np.asarray(pos), want_pos) and np.array_equal(
            np.asarray(neg), want_neg
        )
        assert (before == arr).all()  # the weights are not clamped in place
    assert int(loihi.worst_case_input(torch.as_tensor(w).to(torch.int8), 255)[0]) == 128 * 50 * 255
    f = torch.as_tensor(rng.standard_normal((5, 333)))
    pos, neg = loihi.row_sums(f)
    assert torch.equal(pos, f.clamp(min=0).sum(1)) and torch.equal(neg, (-f).clamp(min=0).sum(1))
