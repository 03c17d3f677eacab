"""The shared integer grid (snn2loihi.quant): ranges, scale constraints, and the readout bound."""

from __future__ import annotations

import math

import pytest
import torch
from train_helpers import layer_weights

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


@pytest.mark.parametrize("block", [7, 300, 2**18])  # many blocks with a partial last, one, whole
@pytest.mark.parametrize(
    "shape, thresholds, input_max, readout_steps, repeat, bits",
    [
        ((64, 32, 3, 3), True, 1, None, 1, 8),  # a spiking conv, per-channel thresholds
        ((48, 27), True, 255, None, 1, 8),  # a graded first layer
        ((40, 16, 3, 3), True, 1, None, 4, 9),  # a 2x2 block kernel, 9-bit weights
        ((10, 200), False, 1, 4, 1, 8),  # the readout
        ((12, 1024, 3, 3), True, 1, None, 1, 8),  # a wide fan-in (the row sums can bind)
    ],
)
def test_blocked_layer_quantization_equals_the_whole_tensor_composition(
    monkeypatch, block, shape, thresholds, input_max, readout_steps, repeat, bits
):
    """quantize_layer (row blocks in cache) gives bit for bit what fold_channel_thresholds,
    choose_scale and quantize_weight/bias give on the whole float64 tensor: the same scale,
    integers and threshold, for scales set by the weights, the row sums or the readout bound."""
    monkeypatch.setattr(quant, "QUANT_BLOCK", block)
    g = torch.Generator().manual_seed(sum(shape))
    for spread in (1e-3, 30.0, None):  # None: near-equal weights, so the row sums bind
        w = layer_weights(shape, spread, g)
        w[0] = w[0].abs()  # one row of positive weights only
        b = torch.randn(shape[0], generator=g) * (spread or 1.0)
        th = torch.rand(shape[0], generator=g) + 0.25 if thresholds else None
        got_w, got_b, got_th, got_s = quant.quantize_layer(
            w, b, th, weight_bits=bits, input_max=input_max, readout_steps=readout_steps,
            repeat=repeat,
        )  # fmt: skip
        ref_w, ref_b, ref_th = w.double(), b.double(), None
        if thresholds:
            ref_w, ref_b, ref_th = quant.fold_channel_thresholds(ref_w, ref_b, th.double())
            ref_th = float(ref_th)
        grid = dict(weight_bits=bits, input_max=input_max, repeat=repeat)
        ref_s = quant.choose_scale(ref_w, ref_b, threshold=ref_th, readout_steps=readout_steps,
                                   **grid)  # fmt: skip
        assert got_s == ref_s and got_th == ref_th
        fan_in = w[0].numel() * repeat
        if spread is None and fan_in >= 2000 and readout_steps is None:  # the row sums bind
            rows = ref_w.reshape(shape[0], -1)
            top = torch.maximum(rows.clamp(min=0).sum(1), -rows.clamp(max=0).sum(1)).max()
            assert got_s == float(top * repeat) / (INT32_SAFE_INPUT - 0.5 * fan_in)
        dtype = quant.weight_dtype(bits)
        assert got_w.dtype == dtype and got_w.shape == w.shape
        assert torch.equal(got_w, quant.quantize_weight(ref_w, ref_s, bits, dtype))
        assert torch.equal(got_b, quant.quantize_bias(ref_b, ref_s))
