"""The float32 screens of the quantizer (snn2loihi.quant_screen): quantize_layer gives, bit for bit,
the float64 path's scale and integers, on random layers and on values built to sit on or next to
a rounding boundary or a row-sum tie."""

from __future__ import annotations

import pytest
import torch
from train_helpers import layer_weights

from snn2loihi import quant, quant_screen
from snn2loihi.loihi import worst_case_input


def _both_paths(monkeypatch, w, b, th, **grid):
    """quantize_layer through the screens (for any size) and through the float64 path only."""
    monkeypatch.setattr(quant_screen, "MIN_WEIGHTS", 1)
    screened = quant.quantize_layer(w, b, th, **grid)
    with monkeypatch.context() as m:
        m.setattr(quant_screen, "usable", lambda rows, ratio: False)
        plain = quant.quantize_layer(w, b, th, **grid)
    return screened, plain


def _assert_same(screened, plain):
    assert screened[3] == plain[3] and screened[2] == plain[2]  # scale, folded threshold
    assert screened[0].dtype == plain[0].dtype
    assert torch.equal(screened[0], plain[0]) and torch.equal(screened[1], plain[1])


@pytest.mark.parametrize("block", [300, 2**18])  # several blocks with a partial last; one
@pytest.mark.parametrize(
    "shape, thresholds, input_max, bits",
    [
        ((64, 32, 3, 3), True, 1, 8),
        ((48, 27), True, 255, 8),  # a graded first layer
        ((40, 16, 3, 3), False, 1, 9),  # 9-bit weights, no per-channel thresholds
        ((12, 1024, 3, 3), True, 1, 8),  # a wide fan-in (the row sums bind)
        ((7, 3), True, 1, 4),
    ],
)
def test_screened_quantization_equals_the_float64_path(
    monkeypatch, block, shape, thresholds, input_max, bits
):
    monkeypatch.setattr(quant, "QUANT_BLOCK", block)
    monkeypatch.setattr(quant_screen, "SCREEN_BLOCK", block)
    g = torch.Generator().manual_seed(sum(shape) + bits)
    for spread in (1e-3, 30.0, None):  # None: near-equal weights, so the row sums bind
        w = layer_weights(shape, spread, g)
        b = torch.randn(shape[0], generator=g)
        th = torch.rand(shape[0], generator=g) + 0.25 if thresholds else None
        grid = dict(weight_bits=bits, input_max=input_max)
        _assert_same(*_both_paths(monkeypatch, w, b, th, **grid))


def test_values_on_and_next_to_a_rounding_boundary(monkeypatch):
    """Weights whose scaled values are exact half-integers (rounded half to even), and the
    float32 neighbours of those, with and without per-channel thresholds."""
    w = (torch.arange(-127, 127, dtype=torch.float32) + 0.5).repeat(64, 1)
    up = torch.nextafter(w, torch.tensor(float("inf")))
    down = torch.nextafter(w, torch.tensor(-float("inf")))
    rows = torch.cat([w, up, down])
    rows[:, 0] = 127.0  # the largest |w|: scale = 127 / 127 without thresholds
    b = torch.zeros(rows.shape[0])
    screened, plain = _both_paths(monkeypatch, rows, b, None)
    assert screened[3] == 1.0
    _assert_same(screened, plain)
    assert torch.equal(screened[0][0, 1:5].long(), torch.tensor([-126, -124, -124, -122]))
    # per-channel thresholds: values within a few float32 ulps of half-integers after folding
    th = torch.linspace(0.5, 1.5, rows.shape[0])
    ratio = th.double().max() / th.double()
    near = (rows.double() / ratio.view(-1, 1)).float()
    _assert_same(*_both_paths(monkeypatch, near, b, th))


def test_rows_with_tied_and_nearly_tied_sums(monkeypatch):
    """Every row a permutation of one row (the same sum, summed in another order), and rows
    that differ from it by one float32 ulp in one weight: the scale is set by the row sums."""
    g = torch.Generator().manual_seed(5)
    base = 1 + 0.001 * torch.rand(2048, generator=g)
    rows = torch.stack([base[torch.randperm(2048, generator=g)] for _ in range(300)])
    rows[::3, 7] = torch.nextafter(rows[::3, 7], torch.tensor(2.0))
    rows[1::3, 9] = torch.nextafter(rows[1::3, 9], torch.tensor(0.0))
    b = torch.zeros(300)
    for th in (None, 1 + torch.arange(300) % 5 * 2.0**-23):  # no ratio; ratios 1 ulp apart
        screened, plain = _both_paths(monkeypatch, rows, b, th)
        _assert_same(screened, plain)
        ratio = torch.ones(300, dtype=torch.float64) if th is None else th.double().max() / th
        top = worst_case_input(rows.double() * ratio.view(-1, 1)).max()
        assert screened[3] == float(top) / (quant.INT32_SAFE_INPUT - 0.5 * 2048)  # sums bind


def test_candidate_rows_hold_the_float64_maximum():
    g = torch.Generator().manual_seed(11)
    for trial in range(20):
        rows = torch.randn(64, 500, generator=g) * (10.0**trial % 7 + 1e-3)
        rows[trial % 64] = rows[(trial + 1) % 64].flip(0)  # a tie, summed in another order
        ratio = torch.rand(64, generator=g, dtype=torch.float64) + 0.5
        tops = worst_case_input(rows.double() * ratio.view(-1, 1))
        candidates = quant_screen.top_row_candidates(rows, ratio, quant_screen.summarize(rows))
        assert int(tops.argmax()) in candidates.tolist()
        assert torch.equal(tops[candidates].max(), tops.max())


def test_the_screens_leave_little_to_the_float64_path():
    """On a layer like VGG-11's widest (512 x 4608) the screens send about one row's sum and a
    few dozen values (of 2.4 million) to float64: otherwise they would be slower than it."""
    g = torch.Generator().manual_seed(2)
    rows = torch.randn(512, 4608, generator=g) * 0.02
    ratio = torch.rand(512, generator=g, dtype=torch.float64) + 0.5
    assert quant_screen.usable(rows, ratio)
    assert quant_screen.top_row_candidates(rows, ratio, quant_screen.summarize(rows)).numel() <= 2
    scale = quant.choose_scale(rows.double() * ratio.view(-1, 1))
    out = torch.empty(rows.shape, dtype=torch.int8)
    i, j = quant_screen.round_scaled(rows, ratio / scale, -128, 127, out)
    assert 0 < i.numel() < 1000 and i.shape == j.shape


def test_non_finite_weights_and_extreme_factors_take_the_float64_path(monkeypatch):
    rows = torch.randn(8, 70)
    rows[3, 5] = float("nan")
    assert quant_screen.top_row_candidates(rows, None, quant_screen.summarize(rows)) is None
    rows[3, 5] = float("inf")
    assert quant_screen.top_row_candidates(rows, None, quant_screen.summarize(rows)) is None
    out = torch.zeros(8, 70, dtype=torch.int8)
    factor = torch.full((8,), 2.0**-120, dtype=torch.float64)
    assert quant_screen.round_scaled(torch.randn(8, 70), factor, -128, 127, out) is None
    assert not out.any()
    assert not quant_screen.usable(torch.randn(8, 70).double(), None)
    assert not quant_screen.usable(torch.randn(8, 70), -torch.ones(8, dtype=torch.float64))
    # a product beyond float32 is sent to float64, not rounded from inf
    big, out = torch.full((4, 3), 3e38), torch.empty(4, 3, dtype=torch.int8)
    factor = torch.full((4,), 2.0**90, dtype=torch.float64)
    assert quant_screen.round_scaled(big, factor, 0, 1, out)[0].numel() == 12


@pytest.mark.parametrize("fan_in", [9, 576, 4608])
def test_candidates_survive_estimates_off_by_their_error_bound(monkeypatch, fan_in):
    """Near-tied rows (one row, scaled by ratios 2^-48 apart) with estimates as wrong as the
    bounds allow: the rows holding the maximum estimated low, every other row high, by just
    under the estimate's share of each screen's bound. Both screens must keep the maximum."""
    g = torch.Generator().manual_seed(fan_in)
    rows = torch.randn(fan_in, generator=g).repeat(40, 1)
    ratio = 1 - torch.arange(40, dtype=torch.float64) * 2.0**-48
    truth = worst_case_input(rows.double() * ratio.view(-1, 1))

    def skewed(abs_sum, total, ratio_):  # the rows are told apart by their ratios
        unit = quant_screen.U32 if abs_sum.dtype == torch.float32 else quant_screen.U64
        e = 0.49 * quant_screen._relative_error(fan_in, unit)
        tops = truth[((1 - ratio_) / 2.0**-48).round().long()]
        return torch.where(tops == tops.max(), tops * (1 - e), tops * (1 + e))

    monkeypatch.setattr(quant_screen, "_approximate_tops", skewed)
    candidates = quant_screen.top_row_candidates(rows, ratio, quant_screen.summarize(rows))
    assert int(truth.argmax()) in candidates.tolist()


def test_vgg11_integer_layers_equal_the_float64_paths(monkeypatch):
    """The integer layers that training's SNN branch and export read (VGG-11: five layers of
    the 9.2M weights go through the screens), with BN statistics and per-channel thresholds
    set: the same integers, biases, thresholds and scales as the float64 path gives."""
    from snn2loihi.train.fold import integer_layers
    from snn2loihi.train.model import build_model

    torch.manual_seed(4)
    model = build_model(
        "vgg11", (3, 32, 32), 10, mean=(0.5,) * 3, std=(0.25,) * 3, steps=4, step_divisor=4
    )
    with torch.no_grad():
        for layer in model.layers:
            if layer.spiking:
                layer.thresholds.uniform_(0.3, 1.5)
                layer.bn.running_var.uniform_(0.5, 2.0)
                layer.bn.running_mean.normal_(0, 0.1)
    screened = integer_layers(model)
    monkeypatch.setattr(quant_screen, "usable", lambda rows, ratio: False)
    plain = integer_layers(model)
    sizes = [layer.weight.numel() for layer in plain]
    assert sum(s >= quant_screen.MIN_WEIGHTS for s in sizes) == 5
    for ours, ref in zip(screened, plain, strict=True):
        assert ours.scale == ref.scale and ours.neuron == ref.neuron
        assert torch.equal(ours.weight, ref.weight) and torch.equal(ours.bias, ref.bias)


@pytest.mark.parametrize("thresholds", [True, False])
def test_a_row_scale_gives_the_integers_of_the_scaled_weights(monkeypatch, thresholds):
    """quantize_layer(w, row_scale=f) on both paths: bit for bit what the weights ``w * f``
    (the float32 product made whole) give, with negative, zero and tiny factors, and products
    that land on half-integers (the values redone in float64 are scaled too)."""
    monkeypatch.setattr(quant, "QUANT_BLOCK", 300)
    monkeypatch.setattr(quant_screen, "SCREEN_BLOCK", 300)
    g = torch.Generator().manual_seed(21)
    w = torch.randn(48, 32, 3, 3, generator=g)
    w[5] = (torch.arange(288, dtype=torch.float32) - 144.5).view(32, 3, 3)  # half-integers
    f = torch.rand(48, generator=g) + 0.5
    f[1], f[2], f[3], f[5] = -0.75, 0.0, 1e-30, 1.0
    b = torch.randn(48, generator=g)
    th = torch.rand(48, generator=g) + 0.25 if thresholds else None
    whole = w * f.view(-1, 1, 1, 1)
    scaled = _both_paths(monkeypatch, w, b, th, row_scale=f)
    for got, ref in zip(scaled, _both_paths(monkeypatch, whole, b, th), strict=True):
        _assert_same(got, ref)
    with pytest.raises(ValueError, match=r"row_scale must be \(48,\) torch.float32"):
        quant.quantize_layer(w, b, th, row_scale=f.double())


def test_vgg11_integer_layers_with_bn_left_to_the_quantizer_equal_the_folded_layers():
    """integer_layer leaves BN's factor (and the compact kernel's / pool^2) to the quantizer:
    the same integers, biases, thresholds and scales as quantizing the folded layer that
    step_layer makes, negative BN scales included."""
    from snn2loihi.train.fold import integer_layer, step_layer
    from snn2loihi.train.model import build_model

    torch.manual_seed(5)
    model = build_model(
        "vgg11", (3, 32, 32), 10, mean=(0.5,) * 3, std=(0.25,) * 3, steps=4, step_divisor=4
    )
    with torch.no_grad():
        for layer in model.spiking_layers:
            layer.thresholds.uniform_(0.3, 1.5)
            layer.bn.running_var.uniform_(0.5, 2.0)
            layer.bn.weight.uniform_(-1.5, 1.5)
    left = 0
    for k in range(len(model.layers)):
        left += step_layer(model, k, compact=True, fold_weight=False).row_scale is not None
        sl = step_layer(model, k, compact=True)
        ref = quant.quantize_layer(
            sl.weight, sl.bias, sl.thresholds, input_max=255 if k == 0 else 1,
            readout_steps=model.steps if sl.readout else None, repeat=sl.pool**2,
        )  # fmt: skip
        ours = integer_layer(model, k)
        assert ours.scale == ref[3] and torch.equal(ours.bias, ref[1])
        assert torch.equal(ours.weight, ref[0].view(ours.weight.shape)), k
    assert left == 7  # every spiking layer after layer 0
