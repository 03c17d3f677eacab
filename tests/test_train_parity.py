"""The quantization-aware integer SNN branch fires exactly the emulator's spikes: every layer,
step and neuron, and the readout's v at every step, on the exported network."""

from __future__ import annotations

import pytest
import torch
from train_helpers import assert_same_spikes, calibrated_model, digits_like_batch, emulate

from snn2loihi.loihi import VTH_MAX
from snn2loihi.netx_io import read_network
from snn2loihi.train.fold import integer_layers
from snn2loihi.train.netx_model import to_netx
from snn2loihi.train.snn_branch import run_snn
from snn2loihi.validate import validate_network

CASES = {
    "digits": dict(arch="digits"),
    "pool+stride": dict(arch="custom", convs=("8", "p16", "s16"), dense=(32,)),
    "dense-only": dict(arch="custom", convs=(), dense=(48, 24)),
    "lif-bptt": dict(arch="custom", convs=("8", "s16"), dense=(), step_divisor=1, v_decay=1024),
    # identity shortcut (conv 0 -> conv 2), 1x1 stride-2 shortcut (conv 2 -> conv 4)
    "residual": dict(arch="custom", convs=("8", "8", "8r", "s16", "16r"), dense=(24,)),
}


def _check_parity(model, x):
    ours = run_snn(model, x, record=True)
    net = to_netx(model)
    validate_network(net)
    assert_same_spikes(ours, emulate(net, x, model.steps), integer_layers(model)[-1].scale)
    return ours, net


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("steps", [1, 4])
def test_integer_branch_equals_emulator(case, steps):
    torch.set_num_threads(1)
    model = calibrated_model(steps=steps, **CASES[case])
    ours, _ = _check_parity(model, digits_like_batch())
    assert sum(ours.spikes_per_sample()) > 0, "the test must exercise spiking"
    assert ours.spikes[0].any(1).any() and not ours.spikes[0].all(), "layer 0 must be mixed"


def test_parity_survives_the_netx_file(tmp_path, write_net):
    model = calibrated_model(steps=3)
    x = digits_like_batch(8)
    _, net = _check_parity(model, x)
    path = write_net(net)
    again = read_network(path)
    assert again == net
    ours = run_snn(model, x, record=True)
    assert_same_spikes(ours, emulate(path, x, 3), integer_layers(model)[-1].scale)


def test_the_comparison_catches_one_flipped_spike_or_one_v_unit():
    """The check above is sharp: one spike or one unit of readout v anywhere fails it."""
    model = calibrated_model(steps=2)
    x = digits_like_batch(4)
    ours, net = _check_parity(model, x)
    scale = integer_layers(model)[-1].scale
    emu = emulate(net, x, 2)
    emu.layers[1].spikes[3, 1, 0, 2, 1] ^= True
    with pytest.raises(
        AssertionError, match=r"layer 1: 1 spikes differ, first at .* \(3, 1, 0, 2, 1\)"
    ):
        assert_same_spikes(ours, emu, scale)
    emu = emulate(net, x, 2)
    emu.layers[-1].v[2, 0, 5] += 1
    with pytest.raises(AssertionError, match=r"readout v differs first at \(2, 0, 5\)"):
        assert_same_spikes(ours, emu, scale)


def test_readout_never_spikes_even_when_driven_hard():
    model = calibrated_model(steps=8)
    with torch.no_grad():
        model.layers[-1].weight.mul_(50)
        model.layers[-1].bias.fill_(20)
    x = torch.full((4, 1, 8, 8), 255, dtype=torch.uint8)
    _check_parity(model, x)
    readout = to_netx(model).layers[-1]
    assert readout.neuron.vth_mant == VTH_MAX


def test_cifar_shaped_vgg_layer_parity():
    torch.set_num_threads(1)
    model = calibrated_model(
        arch="custom", convs=("16", "p32", "s32"), dense=(), steps=2, input_shape=(3, 16, 16)
    )
    _check_parity(model, digits_like_batch(6, shape=(3, 16, 16)))


@pytest.mark.slow
def test_compiled_neuron_gives_the_same_integers():
    model = calibrated_model(steps=4)
    x = digits_like_batch()
    ref = run_snn(model, x, record=True)
    out = run_snn(model, x, compile_neuron=True, record=True)
    assert torch.equal(ref.logits, out.logits)
    for a, b in zip(ref.spikes, out.spikes, strict=True):
        assert torch.equal(a, b)
    assert torch.equal(ref.readout_v, out.readout_v)
