"""What the training step holds, with the same numbers as before.

- ATA's rates are measured as the ANN pass goes; each layer's spike counts are let go once its
  rate is taken (not held to the end of the pass nor through backward), and the thresholds
  still rise after the optimizer step.
- A pooling conv averages its input and applies the stored kernel: no scaled copy of the kernel
  is made and held for backward, and the values and gradients equal the folded conv's (sum-pooled
  input, kernel / pool^2) bit for bit.
- The SNN branch folds the compact kernel's / pool^2 into BN's factor: the same floats, so the
  same integers as before.
"""

from __future__ import annotations

import gc
import weakref

import pytest
import torch
import torch.nn.functional as F
from train_helpers import calibrated_model

from snn2loihi.train import step as step_mod
from snn2loihi.train.ata import NoisyRateMeter, adjust_thresholds, raise_thresholds
from snn2loihi.train.config import resolve
from snn2loihi.train.fold import fold_batchnorm, step_layer
from snn2loihi.train.model import SpikingNet
from snn2loihi.train.snn_branch import run_snn
from snn2loihi.train.step import StepParams, train_step


def _pooling_model(steps: int = 4, step_divisor: int | None = None) -> SpikingNet:
    """Conv layers with pooling folded in (``p``) after layer 0, a dense layer and the readout;
    BN statistics and thresholds set so that the ANN and SNN branches both work."""
    model = calibrated_model(
        "custom",
        convs=("8", "p16", "p16"),
        dense=(24,),
        steps=steps,
        input_shape=(2, 12, 12),
        step_divisor=step_divisor or steps,
    )
    for layer in model.spiking_layers:  # low enough for noisy spikes, so that ATA acts
        layer.thresholds.mul_(0.2)
    return model.train()


def _folded_synapse(self: SpikingNet, k: int, h: torch.Tensor) -> torch.Tensor:
    """The former form: sum-pooled input and the compact kernel ``weight / pool^2``."""
    w, b = self.layer_affine(k, compact=True)
    return self.layers[k].synapse(h, w, b, compact=True)


def test_pooled_synapse_equals_the_folded_conv_bit_for_bit_and_holds_no_scaled_kernel():
    model = _pooling_model()
    g = torch.Generator().manual_seed(11)
    h0 = torch.rand(5, 8, 12, 12, generator=g) * 3  # layer 1's input
    grad_out = torch.randn(5, 16, 6, 6, generator=g)
    results = []
    for form in (SpikingNet.layer_synapse, _folded_synapse):
        model.zero_grad(set_to_none=True)
        h = h0.clone().requires_grad_()
        held: list[torch.Tensor] = []

        def keep(t: torch.Tensor, held: list = held) -> torch.Tensor:
            held.append(t)
            return t

        with torch.autograd.graph.saved_tensors_hooks(keep, lambda t: t):
            z = form(model, 1, h)
        (z * grad_out).sum().backward()
        layer = model.layers[1]
        results.append((z.detach(), h.grad, layer.weight.grad.clone(), layer.bias.grad.clone()))
        weight_like = [t for t in held if t.shape == layer.weight.shape]
        if form is SpikingNet.layer_synapse:  # only the parameter itself, not a scaled copy
            assert all(t.data_ptr() == layer.weight.data_ptr() for t in weight_like)
        else:
            assert any(t.data_ptr() != layer.weight.data_ptr() for t in weight_like)
    for new, old in zip(results[0], results[1], strict=True):
        assert torch.equal(new, old)
    assert model.layers[1].pool == 2 and results[0][0].shape == (5, 16, 6, 6)


def test_a_pooling_conv_that_does_not_fold_exactly_keeps_the_folded_form():
    """On 13x13 the pooled conv reads rows that pooling drops: the expanded kernel decides."""
    model = calibrated_model(
        "custom", convs=("8", "p8"), dense=(), steps=3, input_shape=(1, 13, 13)
    )
    h = torch.rand(2, 8, 13, 13)
    assert model.layers[1].pool_fold_error((13, 13)) is not None
    assert torch.equal(model.layer_synapse(1, h), _folded_synapse(model, 1, h))


def test_the_snn_branch_folds_pool_and_batchnorm_into_the_same_floats():
    """step_layer's compact kernel (BN's factor divided by pool^2, one pass) equals BN folded
    into ``weight / pool^2`` bit for bit, negative BN scales included."""
    model = _pooling_model()
    with torch.no_grad():
        model.layers[2].bn.weight[:3] *= -1
    for k, layer in enumerate(model.layers):
        if not layer.spiking or k == 0:
            continue
        w, b = fold_batchnorm(*model.layer_affine(k, compact=True), layer.bn)
        got = step_layer(model, k, compact=True)
        d = float(model.step_divisor)
        assert torch.equal(got.weight, w.float()) and torch.equal(got.bias, (b / d).float())
    assert [ly.pool for ly in model.layers] == [1, 2, 2, 1, 1]


def test_fold_batchnorm_with_a_weight_divisor_equals_folding_the_divided_weight():
    g = torch.Generator().manual_seed(12)
    bn = torch.nn.BatchNorm2d(6).eval()
    with torch.no_grad():
        bn.weight.copy_(torch.randn(6, generator=g))
        bn.running_var.copy_(torch.rand(6, generator=g) + 0.1)
        bn.running_mean.copy_(torch.randn(6, generator=g))
    w, b = torch.randn(6, 4, 3, 3, generator=g), torch.randn(6, generator=g)
    for d in (1, 4, 16):
        got = fold_batchnorm(w, b, bn, weight_divisor=d)
        ref = fold_batchnorm(w / d, b, bn)
        assert torch.equal(got[0], ref[0]) and torch.equal(got[1], ref[1])


@pytest.mark.parametrize("method", ["snn2ann", "bptt"])
def test_training_steps_give_the_state_of_the_folded_forms(method, monkeypatch):
    """Three SGD steps (with ATA for SNN2ANN) give bit for bit the weights, BN statistics and
    thresholds of the former forms: the folded pooled conv, and ATA measured after the step."""
    overrides = [f"train.method='{method}'", "ata.tolerance=0.05"]
    params = StepParams.from_config(resolve(None, overrides))
    g = torch.Generator().manual_seed(13)
    x = torch.randint(0, 256, (8, 2, 12, 12), dtype=torch.uint8, generator=g)
    y = torch.randint(0, 10, (8,), generator=g)

    def former_step(model, net, optimizer, x, y, params):  # ATA from the held tensors
        optimizer.zero_grad(set_to_none=True)
        if params.bptt:
            logits, pre = net(x.float(), bptt=params.bptt_args)
            counts = None
        else:
            counts = run_snn(model, x).counts
            logits, pre = net(x.float(), counts, params.mapping, params.dropout)
        F.cross_entropy(logits.float(), y, label_smoothing=params.label_smoothing).backward()
        optimizer.step()
        if counts is None:
            return None
        return adjust_thresholds(
            model, pre, counts, tolerance=params.ata_tolerance, step=params.ata_step,
            granularity=params.ata_granularity,
        )  # fmt: skip

    states, rates = [], []
    for former in (False, True):
        if former:
            monkeypatch.setattr(SpikingNet, "layer_synapse", _folded_synapse)
        torch.manual_seed(2)
        model = _pooling_model(step_divisor=1 if method == "bptt" else None)
        opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
        seen = []
        for _ in range(3):
            if former:
                seen.append(former_step(model, model, opt, x, y, params))
            else:
                seen.append(train_step(model, model, opt, x, y, params).noisy)
        states.append({k: v.clone() for k, v in model.state_dict().items()})
        rates.append(seen)
    assert rates[0] == rates[1]
    if method == "snn2ann":
        assert any(r > params.ata_tolerance for r in rates[0][0])  # so ATA raised some
    for k in states[0]:
        assert torch.equal(states[0][k], states[1][k]), k


def test_the_step_lets_go_of_each_layers_counts_once_its_rate_is_taken(monkeypatch):
    """When a spiking layer's ATA rate is taken, the spike counts of the layers before it are
    already gone, and when the backward pass starts none is alive: only what BN, relu_mapped
    and the convs save for backward."""
    params = StepParams.from_config(resolve(None, ["train.method='snn2ann'"]))
    model = _pooling_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    refs: list[weakref.ref] = []
    alive_before: list[int] = []
    real_run_snn, real_measure = step_mod.run_snn, NoisyRateMeter.__call__

    def counting_run_snn(*args, **kwargs):
        out = real_run_snn(*args, **kwargs)
        refs.extend(weakref.ref(c) for c in out.counts)
        return out

    def measure(self, k, a, counts):
        gc.collect()
        alive_before.append(sum(r() is not None for r in refs[:k]))
        return real_measure(self, k, a, counts)

    alive_at_backward = []
    real_backward = torch.Tensor.backward

    def backward(self, *args, **kwargs):
        gc.collect()
        alive_at_backward.append(sum(r() is not None for r in refs))
        return real_backward(self, *args, **kwargs)

    monkeypatch.setattr(step_mod, "run_snn", counting_run_snn)
    monkeypatch.setattr(NoisyRateMeter, "__call__", measure)
    monkeypatch.setattr(torch.Tensor, "backward", backward)
    x = torch.randint(0, 256, (4, 2, 12, 12), dtype=torch.uint8)
    res = train_step(model, model, opt, x, torch.arange(4), params)
    assert len(refs) == len(model.spiking_layers)
    assert alive_before == [0] * len(model.spiking_layers) and alive_at_backward == [0]
    assert res.noisy is not None and len(res.noisy) == len(model.spiking_layers)


def test_ata_measured_as_the_pass_goes_equals_adjust_thresholds():
    """NoisyRateMeter's rates, then raise_thresholds, do what adjust_thresholds does with the
    held tensors; the meter refuses a layer without counts."""
    model = _pooling_model()
    g = torch.Generator().manual_seed(14)
    shapes = model.layer_shapes()[: len(model.spiking_layers)]
    pre = [torch.randn(3, *s, generator=g) for s in shapes]
    counts = [torch.randint(0, 3, (3, *s), generator=g).float() for s in shapes]
    for granularity in ("layer", "channel"):
        ref_model = _pooling_model()
        ref = adjust_thresholds(ref_model, pre, counts, tolerance=0.2, step=0.05,
                                granularity=granularity)  # fmt: skip
        meter = NoisyRateMeter(granularity)
        for k, (a, n) in enumerate(zip(pre, counts, strict=True)):
            meter(k, a, n)
        assert raise_thresholds(model, meter.rates, tolerance=0.2, step=0.05) == ref
        for a, b in zip(model.spiking_layers, ref_model.spiking_layers, strict=True):
            assert torch.equal(a.thresholds, b.thresholds)
        model = _pooling_model()
    with pytest.raises(ValueError, match="layer 2: ATA needs the SNN branch's spike counts"):
        NoisyRateMeter()(2, pre[2], None)
