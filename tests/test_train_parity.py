"""The quantization-aware integer SNN branch fires exactly the emulator's spikes, every layer."""

from __future__ import annotations

import pytest
import torch
from train_helpers import calibrated_model, digits_like_batch

from snn2loihi.deploy.emulator import Emulator
from snn2loihi.loihi import VTH_MAX
from snn2loihi.netx_io import read_network
from snn2loihi.readout import readout_logits
from snn2loihi.train.fold import integer_layers
from snn2loihi.train.netx_model import to_netx
from snn2loihi.train.snn_branch import run_snn
from snn2loihi.validate import validate_network

CASES = {
    "digits": dict(arch="digits"),
    "pool+stride": dict(arch="custom", convs=("8", "p16", "s16"), dense=(32,)),
    "dense-only": dict(arch="custom", convs=(), dense=(48, 24)),
    "lif-bptt": dict(arch="custom", convs=("8", "s16"), dense=(), step_divisor=1, v_decay=1024),
}


def _check_parity(model, x):
    steps = model.steps
    ours = run_snn(model, x)
    net = to_netx(model)
    validate_network(net)
    emu = Emulator(net).run(x.unsqueeze(1).expand(-1, steps, *x.shape[1:]), record_state=True)
    assert len(emu.layers) == len(ours.counts) + 1
    for k, count in enumerate(ours.counts):
        emu_count = emu.layers[k].spikes.sum(1).to(torch.float32)
        assert torch.equal(count, emu_count), f"layer {k} spike counts differ"
    readout = emu.layers[-1]
    assert not readout.spikes.any()
    scale = integer_layers(model)[-1].scale
    ours_int = torch.round(ours.logits.double() / scale).to(torch.int64)
    assert torch.equal(readout_logits(readout.v[:, -1]), ours_int)
    assert torch.equal(readout_logits(readout.v[:, -1]).argmax(1), ours.logits.argmax(1))
    return ours, net


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("steps", [1, 4])
def test_integer_branch_equals_emulator(case, steps):
    torch.set_num_threads(1)
    model = calibrated_model(steps=steps, **CASES[case])
    ours, _ = _check_parity(model, digits_like_batch())
    assert sum(ours.spikes_per_sample()) > 0, "the test must exercise spiking"


def test_parity_survives_the_netx_file(tmp_path, write_net):
    model = calibrated_model(steps=3)
    x = digits_like_batch(8)
    _, net = _check_parity(model, x)
    path = write_net(net)
    again = read_network(path)
    assert again == net
    emu = Emulator(path).run(x.unsqueeze(1).expand(-1, 3, -1, -1, -1))
    ours = run_snn(model, x)
    for k, count in enumerate(ours.counts):
        assert torch.equal(count, emu.layers[k].spikes.sum(1).float())


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
    ref = run_snn(model, x)
    out = run_snn(model, x, compile_neuron=True)
    assert torch.equal(ref.logits, out.logits)
    for a, b in zip(ref.counts, out.counts, strict=True):
        assert torch.equal(a, b)
