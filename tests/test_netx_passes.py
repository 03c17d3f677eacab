"""run_netx on the CPU goes through the batch in passes of a few samples
(:func:`snn2loihi.deploy.emulator.netx_pass_samples`), which bound its memory; every sample is
its own run on the global clock, so every message and state is the same for any pass size."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from slayer_nets import write_slayer_net

from snn2loihi.deploy import emulator as emu_mod
from snn2loihi.deploy.emulator import Emulator, netx_pass_samples
from snn2loihi.deploy.timeline import Timeline, layer_shape
from snn2loihi.netx_io import read_network
from snn2loihi.schema import SigmaDeltaNeuron

CASES = [  # (slayer net, drive): CUBA and SDNN, conv and dense, delays, recurrence
    ("cuba_input_conv", "bias"),
    ("cuba_input_conv", "skip"),
    ("cuba_dense_delay", "input"),
    ("cuba_recurrent", "input"),
    ("sdnn_conv", "skip"),
]


def _input(net, drive: str, samples: int, steps: int) -> np.ndarray:
    rng = np.random.default_rng(3)
    if drive == "bias":
        return rng.integers(0, 48, (samples, *net.input_shape))
    if drive == "skip" and isinstance(net.input_neuron, SigmaDeltaNeuron):
        return rng.integers(-200, 256, (samples, steps, *net.input_shape))
    return (rng.random((samples, steps, *net.input_shape)) < 0.4).astype(np.uint8)


@pytest.mark.parametrize("name,drive", CASES)
def test_one_sample_passes_give_every_message_and_state_of_one_pass(name, drive, tmp_path, monkeypatch):  # fmt: skip
    path = tmp_path / f"{name}.net"
    write_slayer_net(name, path, seed=2)
    net = read_network(path)
    x = _input(net, drive, samples=5, steps=9)
    kw = {"drive": drive, "steps": 9, "timeline": Timeline(reset_interval=4, reset_offset=1)}
    record = ("u", "v", "sigma", "act", "residue")
    monkeypatch.setattr(emu_mod, "NETX_PASS_BYTES", 2**40)
    assert netx_pass_samples(net, 9) >= 5
    whole = Emulator(net).run_netx(x, record=record, **kw)
    monkeypatch.setattr(emu_mod, "NETX_PASS_BYTES", 1)
    assert netx_pass_samples(net, 9) == 1
    passes = Emulator(net).run_netx(x, record=record, **kw)
    assert len(whole) == len(passes)
    for w, p in zip(whole, passes, strict=True):
        assert w.messages.shape[:2] == (5, 9) and torch.equal(w.messages, p.messages), w.index
        assert w.states.keys() == p.states.keys() and w.states
        for key in w.states:
            assert torch.equal(w.states[key], p.states[key]), (w.index, key)
    assert any(bool(t.messages.any()) for t in whole)


def test_a_pass_holds_the_largest_layers_int32_input_near_the_budget():
    from snn2loihi.testing.netgen import CIFAR, random_network

    net = random_network(CIFAR)
    largest = max(int(np.prod(layer_shape(ly))) for ly in net.layers)  # 16 x 32 x 32
    assert netx_pass_samples(net, 16) == emu_mod.NETX_PASS_BYTES // (4 * 16 * largest)
    assert netx_pass_samples(net, 10**9) == 1
