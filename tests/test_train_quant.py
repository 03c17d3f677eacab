"""The shared integer grid (snn2loihi.quant): ranges, scale constraints, and the readout bound."""

from __future__ import annotations

import math

import pytest
import torch

from snn2loihi import quant
from snn2loihi.loihi import BIAS_MAX, BIAS_MIN, INT32_SAFE_INPUT, VTH_MAX


def test_weight_limits():
    assert quant.weight_limits(8) == (-128, 127)
    assert quant.weight_limits(9) == (-256, 254)
    with pytest.raises(ValueError):
        quant.weight_limits(10)


def test_quantized_values_stay_in_hardware_ranges():
    torch.manual_seed(0)
    w, b = torch.randn(16, 27), torch.randn(16) * 50
    s = quant.choose_scale(w, b, threshold=3.0)
    qw, qb = quant.quantize_weight(w, s), quant.quantize_bias(b, s)
    assert qw.dtype == torch.int64 and int(qw.abs().max()) <= 128
    assert int(qw.abs().max()) >= 120 or int(qb.abs().max()) >= BIAS_MAX - 1
    assert BIAS_MIN <= int(qb.min()) and int(qb.max()) <= BIAS_MAX
    assert quant.quantize_threshold(3.0, s) == math.floor(3.0 / s) <= VTH_MAX
    assert quant.quantize_threshold(3.0, s) > 0


def test_threshold_floor_matches_the_float_comparison():
    s = 0.01
    vth = quant.quantize_threshold(1.005, s)  # 100.5 -> 100
    assert vth == 100
    for v_int in (100, 101):
        assert (v_int > vth) == (v_int * s > 1.005)


def test_graded_input_cannot_wrap_the_24_bit_current():
    w = torch.full((4, 9), 0.5)
    s = quant.choose_scale(w, input_max=255)
    qw = quant.quantize_weight(w, s)
    assert int(qw.sum(1).max()) * 255 <= INT32_SAFE_INPUT


def test_readout_scale_keeps_v_below_threshold_for_t_steps():
    torch.manual_seed(1)
    w, b = torch.randn(10, 300).abs(), torch.full((10,), 3.0)
    steps = 16
    s = quant.choose_scale(w, b, readout_steps=steps)
    qw, qb = quant.quantize_weight(w, s), quant.quantize_bias(b, s)
    worst = steps * (int(qw.clamp(min=0).sum(1).max()) + int(qb.abs().max()))
    assert worst <= quant.READOUT_V_MAX < VTH_MAX


def test_scale_of_an_all_zero_layer_is_finite():
    s = quant.choose_scale(torch.zeros(3, 3))
    assert s == 1.0
    assert torch.equal(
        quant.quantize_weight(torch.zeros(3, 3), s), torch.zeros(3, 3, dtype=torch.int64)
    )
