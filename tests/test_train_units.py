"""Mapping units, BN folding, pooled-kernel folding, input normalization and threshold folding."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from train_helpers import calibrated_model

from snn2loihi.quant import fold_channel_thresholds, fold_input_normalization
from snn2loihi.train.fold import fold_batchnorm, step_layers
from snn2loihi.train.layers import SynapticLayer, expand_pooled_kernel
from snn2loihi.train.mapping import mapping_unit, relu_mapped, resu, stsu
from snn2loihi.train.snn_branch import run_float_snn


def test_stsu_forwards_counts_and_passes_gradient_straight_through():
    act = torch.tensor([0.0, 0.4, 2.5, 1.0], requires_grad=True)
    counts = torch.tensor([1.0, 0.0, 3.0, 1.0])
    y = stsu(act, counts)
    assert torch.equal(y.detach(), counts)
    (y * torch.tensor([1.0, 2.0, 3.0, 4.0])).sum().backward()
    assert torch.equal(act.grad, torch.tensor([1.0, 2.0, 3.0, 4.0]))


def test_resu_masks_counts_where_the_ann_is_silent():
    act = torch.tensor([0.0, 0.4, 2.5, 0.0], requires_grad=True)
    counts = torch.tensor([2.0, 0.0, 3.0, 1.0])
    y = resu(act, counts)
    assert torch.equal(y.detach(), torch.tensor([0.0, 0.0, 3.0, 0.0]))
    y.sum().backward()
    assert torch.equal(act.grad, torch.ones(4))
    assert mapping_unit("resu") is resu and mapping_unit("stsu") is stsu


@pytest.mark.parametrize("mapping", [stsu, resu], ids=["stsu", "resu"])
def test_relu_mapped_equals_the_composition_and_holds_no_relu_output(mapping):
    """relu_mapped(a, c) gives exactly mapping(relu(a), c) and its gradient (ReLU's: zero where
    a <= 0, passed through at NaN), and keeps only ``a`` for backward, where the composition keeps the
    ReLU's output: one activation-sized tensor per layer less during SNN2ANN's backward."""
    g = torch.Generator().manual_seed(3)
    a0 = torch.randn(6, 7, generator=g) * 2
    a0[0, :3] = torch.tensor([0.0, -0.0, float("nan")])
    counts = torch.randint(0, 5, (6, 7), generator=g).float()
    weights = torch.randn(6, 7, generator=g)
    outs, grads, held_other = [], [], []
    for fn in (relu_mapped, lambda a, c, m: m(F.relu(a), c)):
        a = a0.clone().requires_grad_()
        pre = a * 1.0  # the BN output, which the ANN branch keeps for ATA anyway
        held: list[torch.Tensor] = []

        def keep(t: torch.Tensor, held: list = held) -> torch.Tensor:
            held.append(t)
            return t

        with torch.autograd.graph.saved_tensors_hooks(keep, lambda t: t):
            y = fn(pre, counts, mapping)
        (y * weights).sum().backward()
        outs.append(y.detach())
        grads.append(a.grad)
        held_other.append([t for t in held if t.data_ptr() != pre.data_ptr()])
    torch.testing.assert_close(outs[0], outs[1], rtol=0, atol=0, equal_nan=True)
    assert torch.equal(grads[0], grads[1])
    assert grads[0][0, :3].tolist() == [0.0, 0.0, float(weights[0, 2])]  # as ReLU's backward
    assert held_other[0] == []  # only a itself; the composition also holds relu(a)
    assert any(t.shape == a0.shape for t in held_other[1])


def test_gradient_reaches_weights_through_relu_and_bn():
    """Through the mapping unit the weights get exactly the ANN's gradient (straight through)."""
    layer = SynapticLayer("dense", 5, 3)
    x = torch.randn(8, 5)

    def weight_grad(head) -> torch.Tensor:
        layer.zero_grad()
        a = layer.bn(layer.synapse(x, *layer.affine()))
        head(F.relu(a)).sum().backward()
        return layer.weight.grad.clone()

    through_stsu = weight_grad(lambda r: stsu(r, torch.ones_like(r)))
    assert through_stsu.abs().sum() > 0
    torch.testing.assert_close(through_stsu, weight_grad(lambda r: r), rtol=0, atol=0)


def test_batchnorm_folding_equals_the_unfolded_layer():
    torch.manual_seed(3)
    for kind, x in (("conv", torch.randn(4, 3, 9, 9)), ("dense", torch.randn(4, 7))):
        layer = SynapticLayer(kind, x.shape[1], 6)
        layer.train()
        for _ in range(3):
            layer.bn(layer.synapse(x * 2 + 1, *layer.affine()))
        with torch.no_grad():
            layer.bn.weight.uniform_(0.5, 2)
            layer.bn.bias.uniform_(-1, 1)
        layer.eval()
        ref = layer.bn(layer.synapse(x, *layer.affine()))
        w, b = fold_batchnorm(*layer.affine(), layer.bn)
        torch.testing.assert_close(layer.synapse(x, w, b), ref, rtol=1e-5, atol=1e-5)


def test_average_pooling_folds_into_one_strided_conv():
    torch.manual_seed(4)
    layer = SynapticLayer("conv", 3, 5, pool=2)
    x = torch.randn(2, 3, 8, 8)
    ref = F.conv2d(F.avg_pool2d(x, 2), layer.weight, layer.bias, padding=1)
    w, b = layer.affine()
    assert w.shape == (5, 3, 6, 6) and layer.geometry == (2, 2)
    torch.testing.assert_close(layer.synapse(x, w, b), ref, rtol=1e-5, atol=1e-5)
    assert layer.output_hw((8, 8)) == (4, 4)
    assert torch.equal(expand_pooled_kernel(layer.weight, 1), layer.weight)


def test_input_normalization_folds_into_the_first_layer():
    torch.manual_seed(5)
    mean, std = (0.2, 0.5), (0.3, 0.25)
    x = torch.randint(0, 256, (4, 2, 5, 5)).float()
    xn = (x / 255 - torch.tensor(mean).view(1, 2, 1, 1)) / torch.tensor(std).view(1, 2, 1, 1)
    w_dense, b_dense = torch.randn(6, 50), torch.randn(6)
    wf, bf = fold_input_normalization(w_dense, b_dense, mean, std)
    torch.testing.assert_close(
        F.linear(x.flatten(1), wf, bf), F.linear(xn.flatten(1), w_dense, b_dense)
    )
    w_conv, b_conv = torch.randn(6, 2, 3, 3), torch.randn(6)
    wf, bf = fold_input_normalization(w_conv, b_conv, mean, std)
    # exact without padding (with padding the model pads raw zero pixels, as the chip does)
    torch.testing.assert_close(F.conv2d(x, wf, bf), F.conv2d(xn, w_conv, b_conv))


def test_per_channel_thresholds_fold_exactly_into_one_layer_threshold():
    torch.manual_seed(6)
    model = calibrated_model(steps=5)
    x = torch.randint(0, 256, (16, 1, 8, 8), dtype=torch.uint8)
    layers = step_layers(model)
    ref = run_float_snn(layers, x, 5, model.flatten_index)
    for sl in layers[:-1]:
        sl.weight, sl.bias, th = fold_channel_thresholds(
            sl.weight.double(), sl.bias.double(), sl.thresholds.double()
        )
        sl.thresholds = torch.full_like(sl.thresholds, float(th), dtype=torch.float64)
    folded = run_float_snn(layers, x, 5, model.flatten_index)
    for a, b in zip(ref.counts, folded.counts, strict=True):
        assert (a != b).float().mean() < 0.01  # float rounding at exact ties only


def test_compact_pooled_kernels_hold_the_expanded_values():
    """Pooling convs (layer 0 graded, a strided one, the legacy inexact "p" fold on 13x13) in
    compact form: the same affine values, the same ANN synapse output, the same integers."""
    from snn2loihi import quant
    from snn2loihi.synapse import expand_blocks
    from snn2loihi.train.fold import integer_layers

    cases = [
        calibrated_model(
            "custom", convs=("p8", "16s2p2"), dense=(12,), steps=3, input_shape=(2, 12, 12)
        ),
        calibrated_model("custom", convs=("p8",), dense=(), steps=3, input_shape=(1, 13, 13)),
    ]
    torch.manual_seed(8)
    for model in cases:
        h = torch.randint(0, 256, (4, *model.input_shape)).float()
        for k, layer in enumerate(model.layers):
            w_c, b_c = model.layer_affine(k, compact=True)
            w, b = model.layer_affine(k)
            assert torch.equal(expand_blocks(w_c, layer.pool) if layer.repeat > 1 else w_c, w)
            assert torch.equal(b_c, b)
            if layer.kind == "conv":
                got = layer.synapse(h, w_c, b_c, compact=True)
                torch.testing.assert_close(got, layer.synapse(h, w, b), rtol=1e-5, atol=1e-3)
                h = (got > 0).float()
        for il, sl in zip(integer_layers(model), step_layers(model), strict=True):
            w = sl.weight.double()
            if not sl.readout:
                w, _, _ = fold_channel_thresholds(w, sl.bias.double(), sl.thresholds.double())
            assert torch.equal(il.kernel(), quant.quantize_weight(w, il.scale))
        assert [il.pool for il in integer_layers(model)][0] == 2


def test_training_with_relu_mapped_gives_the_weights_of_the_composition(monkeypatch):
    """Three SNN2ANN steps (stsu, SGD with momentum, ATA) give bit for bit the same weights,
    thresholds and BN statistics whether the ANN branch uses relu_mapped or the plain
    composition mapping(relu(a), counts)."""
    from snn2loihi.train import model as model_mod
    from snn2loihi.train.config import resolve
    from snn2loihi.train.model import build_model
    from snn2loihi.train.step import StepParams, train_step

    params = StepParams.from_config(resolve(None, ["train.method='snn2ann'"]))
    g = torch.Generator().manual_seed(6)
    x = torch.randint(0, 256, (8, 1, 8, 8), dtype=torch.uint8, generator=g)
    y = torch.randint(0, 10, (8,), generator=g)
    states = []
    for fused in (True, False):
        if not fused:
            monkeypatch.setattr(model_mod, "relu_mapped", lambda a, c, m: m(F.relu(a), c))
        torch.manual_seed(2)
        net = build_model("custom", (1, 8, 8), 10, convs=("8", "p16"), dense=(24,), steps=4,
                          step_divisor=4, mean=(0.5,), std=(0.25,))  # fmt: skip
        opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
        for _ in range(3):
            train_step(net, net, opt, x, y, params)
        states.append({k: v.clone() for k, v in net.state_dict().items()})
    assert states[0].keys() == states[1].keys()
    for k in states[0]:
        assert torch.equal(states[0][k], states[1][k]), k


def test_the_seed_of_an_epoch_fits_torch_for_every_seed():
    """``train --seed 2**63-1`` overflowed ``seed * 100003 + epoch`` in torch (fuzz round)."""
    from snn2loihi.train.trainer import seed_of_epoch

    assert seed_of_epoch(7, 3) == 7 * 100_003 + 3  # unchanged where it fitted
    for seed in (0, 2**63 - 1):
        for epoch in (0, 1, 10**6):
            s = seed_of_epoch(seed, epoch)
            assert 0 <= s < 2**63
            torch.manual_seed(s)
            torch.Generator().manual_seed(s)
