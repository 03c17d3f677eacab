"""The emulator equals the real Lava simulator for every spike, u and v (random integer nets)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from snn2loihi.deploy.emulator import Emulator
from snn2loihi.deploy.lava_runner import run_lava
from snn2loihi.schema import CubaNeuron
from snn2loihi.testing.netgen import GEOMETRY, NetSpec, RandomConv, random_network

pytestmark = pytest.mark.lava

LEAKY = CubaNeuron(i_decay=1024, v_decay=128, vth_mant=80)
IF = CubaNeuron.integrate_and_fire(vth_mant=300)
NO_U_DECAY = CubaNeuron(i_decay=0, v_decay=256, vth_mant=1500)

VARIANTS = {
    "leaky-conv-dense": NetSpec((2, 8, 8), (RandomConv(4),), (10,), LEAKY),
    "if-conv-dense": NetSpec((2, 8, 8), (RandomConv(4),), (10,), IF),
    "idecay0": NetSpec((2, 8, 8), (RandomConv(4),), (10,), NO_U_DECAY),
    "geometry": GEOMETRY,
    "dense-only": NetSpec((40,), (), (12, 5), LEAKY, weight_range=(-90, 120)),
}


def _compare(path, net, x, graded):
    emu = Emulator(net).run(x, record_state=True)
    lava = run_lava(path, x, graded=graded, probe_all=True, record_state=True, net=net)
    assert lava.layer_indices == [t.index for t in emu.layers]
    total = 0
    for k, trace in enumerate(emu.layers):
        np.testing.assert_array_equal(
            lava.spikes[k], trace.spikes.numpy().astype(np.uint8), err_msg=f"spikes {k}"
        )
        np.testing.assert_array_equal(lava.u[k], trace.u.numpy(), err_msg=f"u of layer {k}")
        np.testing.assert_array_equal(lava.v[k], trace.v.numpy(), err_msg=f"v of layer {k}")
        total += int(trace.spikes.sum())
    return emu, total


@pytest.mark.parametrize("name", list(VARIANTS))
def test_random_networks_match_lava_exactly(name, write_net):
    spec = VARIANTS[name]
    net = random_network(spec, seed=len(name))
    path = write_net(net)
    rng = np.random.default_rng(1)
    x = (rng.random((3, 7, *spec.input_shape)) < 0.35).astype(np.uint8)  # 3 samples, reset between
    emu, total = _compare(path, net, x, graded=False)
    assert total > 20, "the network should be active for the comparison to mean something"
    assert all(int(t.spikes.sum()) > 0 for t in emu.layers)


def test_graded_input_matches_lava(write_net):
    spec = NetSpec((3, 6, 6), (RandomConv(5, padding=(1, 1)),), (10,), IF, weight_range=(-60, 80))
    net = random_network(spec, seed=3)
    path = write_net(net)
    x = np.random.default_rng(2).integers(0, 256, size=(2, 5, 3, 6, 6), dtype=np.uint8)
    _, total = _compare(path, net, x, graded=True)
    assert total > 0


def test_u_wrap_and_v_saturation_match_lava(write_net):
    """Graded input with no current decay drives u past -2^23 (wrap) and v into saturation."""
    neuron = CubaNeuron(i_decay=0, v_decay=0, vth_mant=2**17 - 1)
    spec = NetSpec((1, 4, 4), (RandomConv(3, kernel=(4, 4)),), (4,), neuron, weight_range=(6, 10))
    net = random_network(spec, seed=5)
    net = dataclasses.replace(
        net,
        layers=tuple(
            dataclasses.replace(ly, weight=-ly.weight) if ly.kind == "conv" and i == 1 else ly
            for i, ly in enumerate(net.layers)
        ),
    )
    path = write_net(net)
    x = np.full((1, 12, 1, 4, 4), 255, dtype=np.uint8)
    emu = Emulator(net).run(x, record_state=True)
    u0, v0 = emu.layers[0].u, emu.layers[0].v
    assert (u0.diff(dim=1) > 0).any(), "negative input must wrap u upwards at some step"
    assert (v0 == -(2**23 - 1)).any(), "v must saturate at -(2^23 - 1)"
    _compare(path, net, x, graded=True)


def test_input_beyond_24_bits_matches_lava(write_net):
    """|a << 6| far above 2^23: Lava's single wrap leaves u outside 24 bits; we follow it exactly."""
    neuron = CubaNeuron(i_decay=0, v_decay=0, vth_mant=2**17 - 1)
    spec = NetSpec(
        (1, 4, 4), (RandomConv(3, kernel=(4, 4)),), (4,), neuron, weight_range=(200, 255)
    )
    net = random_network(spec, seed=6)
    path = write_net(net)
    x = np.full((2, 6, 1, 4, 4), 255, dtype=np.uint8)
    emu, _ = _compare(path, net, x, graded=True)
    assert int(emu.layers[0].u.abs().max()) > 2**23


def test_parity_compares_the_readout_s_u_and_v(write_net, monkeypatch):
    """A readout that never spikes predicts by its v: per-sample parity compares the output
    layer's u and v at every step, and a single differing v fails it."""
    import snn2loihi.deploy.parity as parity
    import snn2loihi.deploy.runner as runner

    readout = CubaNeuron.integrate_and_fire(vth_mant=2**17 - 1)
    spec = NetSpec((2, 8, 8), (RandomConv(4),), (10,), IF)
    net = random_network(spec, seed=4)
    layers = list(net.layers)
    layers[-1] = dataclasses.replace(layers[-1], neuron=readout)
    net = dataclasses.replace(net, layers=tuple(layers))
    path = write_net(net)
    x = (np.random.default_rng(5).random((3, 5, 2, 8, 8)) < 0.35).astype(np.uint8)
    report = parity.run_parity(path, x)
    last = report.layers[-1]
    assert report.equal and last.lava_spikes == 0 and last.state_mismatches == {"u": 0, "v": 0}

    real = runner.run_lava

    def one_v_off(*args, **kwargs):
        res = real(*args, **kwargs)
        res.v[-1][1, 2, 3] += 1
        return res

    monkeypatch.setattr(runner, "run_lava", one_v_off)
    report = parity.run_parity(path, x)
    assert not report.equal and report.layers[-1].state_mismatches == {"u": 0, "v": 1}
    assert "PARITY FAILED" in report.table()
