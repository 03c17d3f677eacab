"""The emulator's CPU passes: samples go through the whole network a few at a time
(:func:`snn2loihi.deploy.emulator.pass_samples`), each pass in time chunks of a few steps; the
integers depend on neither the pass size nor the chunk length."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from snn2loihi.deploy import emulator as emu_mod
from snn2loihi.deploy.emulator import Emulator, pass_samples
from snn2loihi.testing.netgen import CIFAR, GEOMETRY, random_network


def test_pass_size_keeps_the_largest_synaptic_input_near_the_budget():
    layers = [ly for _, ly in random_network(CIFAR).synaptic_layers]
    largest = max(int(np.prod(ly.shape)) for ly in layers)  # 16 x 32 x 32
    assert pass_samples(layers, 16) == emu_mod.PASS_BYTES // (4 * 16 * largest)
    assert pass_samples(layers, 10**6) == 1


def test_a_pass_takes_more_steps_only_where_it_holds_the_whole_batch():
    """Large batches: a few samples, STEP_CHUNK steps per chunk. A batch that fits whole takes
    whole STEP_CHUNK multiples of steps (all T where they fit) within the same budget."""
    from snn2loihi.deploy.emulator import pass_shape
    from snn2loihi.neuron_loop import STEP_CHUNK

    layers = [ly for _, ly in random_network(CIFAR).synaptic_layers]
    largest = max(int(np.prod(ly.shape)) for ly in layers)
    per_chunk = pass_samples(layers, STEP_CHUNK)
    assert pass_shape(layers, 10 * per_chunk, 16) == (per_chunk, STEP_CHUNK)
    assert pass_shape(layers, 1, 16) == (1, 16)
    fits = emu_mod.PASS_BYTES // (4 * largest * per_chunk)  # steps of per_chunk samples
    assert pass_shape(layers, per_chunk, 10**3) == (per_chunk, fits - fits % STEP_CHUNK)
    assert pass_shape(layers, 3, 3) == (3, 3)


@pytest.mark.parametrize("graded", [False, True])
@pytest.mark.parametrize("spec", [GEOMETRY, CIFAR], ids=["geometry", "cifar"])
def test_one_sample_passes_equal_one_pass_for_the_batch(spec, graded, monkeypatch):
    net = random_network(spec, seed=5)
    rng = np.random.default_rng(2)
    x = (rng.random((5, 6, *spec.input_shape)) < 0.3).astype(np.uint8)
    if graded:
        x = x * rng.integers(0, 256, x.shape).astype(np.uint8)
    monkeypatch.setattr(emu_mod, "PASS_BYTES", 2**40)
    whole = Emulator(net, batch_size=5).run(x, record_state=True)
    monkeypatch.setattr(emu_mod, "PASS_BYTES", 1)  # one sample per pass
    passes = Emulator(net, batch_size=4).run(x, record_state=True)
    for w, p in zip(whole.layers, passes.layers, strict=True):
        for name in ("spikes", "u", "v"):
            a, b = getattr(w, name), getattr(p, name)
            assert a.shape == b.shape == (5, 6, *w.spikes.shape[2:])
            assert torch.equal(a, b), (w.index, name)
    assert all(bool(t.spikes.any()) for t in whole.layers)


def test_output_only_runs_keep_the_output_and_every_layers_spike_count(monkeypatch):
    """``spikes="output"`` (what eval uses): the output layer's spikes and u/v as in a full run,
    per-sample spike counts of the hidden layers, equal to the full run's traces summed."""
    net = random_network(CIFAR, seed=5)
    rng = np.random.default_rng(5)
    x = (rng.random((11, 6, *CIFAR.input_shape)) < 0.3).astype(np.uint8)
    emu = Emulator(net, batch_size=4)  # three chunks, several passes each
    monkeypatch.setattr(emu_mod, "PASS_BYTES", 2**21)
    full = emu.run(x, record_state="last")
    lean = emu.run(x, record_state="last", spikes="output")
    for f, g in zip(full.layers[:-1], lean.layers[:-1], strict=True):
        assert g.spikes is None and g.counts.shape == (11,)
        assert torch.equal(g.counts, f.spikes.flatten(1).sum(1))
        assert g.total_spikes() == f.total_spikes() > 0
    assert torch.equal(lean.output, full.output)
    assert torch.equal(lean.layers[-1].v, full.layers[-1].v)
    with pytest.raises(ValueError, match="spikes must be"):
        emu.run(x, spikes="hidden")


@pytest.mark.parametrize("chunk", [1, 3, 10**6], ids=["one-step", "three-steps", "all-steps"])
def test_time_chunks_of_any_length_give_the_same_integers(chunk, monkeypatch):
    """Every layer advances ``STEP_CHUNK`` steps before the next chunk's frames are computed;
    one step, an uneven length, and all T steps at once (a GPU's single chunk) give the same
    spikes, u and v, in full and output-only runs."""
    net = random_network(CIFAR, seed=8)
    rng = np.random.default_rng(8)
    x = (rng.random((7, 9, *CIFAR.input_shape)) < 0.3).astype(np.uint8)
    emu = Emulator(net, batch_size=4)
    ref = emu.run(x, record_state=True)
    lean_ref = emu.run(x, record_state="last", spikes="output")
    monkeypatch.setattr(emu_mod, "STEP_CHUNK", chunk)
    got = emu.run(x, record_state=True)
    lean = emu.run(x, record_state="last", spikes="output")
    for r, g in zip(ref.layers, got.layers, strict=True):
        for name in ("spikes", "u", "v"):
            assert torch.equal(getattr(r, name), getattr(g, name)), (r.index, name)
    for r, g in zip(lean_ref.layers, lean.layers, strict=True):
        assert (
            torch.equal(r.counts, g.counts) if r.spikes is None else torch.equal(r.spikes, g.spikes)
        )
    assert torch.equal(lean.layers[-1].v, ref.layers[-1].v)


def test_a_dense_layer_after_a_channels_last_conv_sees_the_conv_spikes_in_chw_order():
    """The CIFAR-sized network's conv layers lie channels-last on the CPU, and its dense readout
    reads their spikes as they lie through column-reordered weights (``dense_in_hwc``): its u
    and v equal an int64 reference fed the recorded conv spikes flattened in (C, H, W) order,
    Lava's dense weight processing and ``cuba_step`` (no delay in the emulator's convention)."""
    from snn2loihi.neuron import cuba_step
    from snn2loihi.synapse import dense_weights_as_lava

    net = random_network(dataclasses.replace(CIFAR, weight_range=(-128, 127)), seed=2)
    rng = np.random.default_rng(4)
    x = (rng.random((3, 5, *CIFAR.input_shape)) < 0.3).astype(np.uint8)
    emu = Emulator(net)
    out = emu.run(x, record_state=True)
    assert emu._hwc_synapses  # the reordered synapse ran
    conv, dense = out.layers[-2], out.layers[-1]
    layer = net.synaptic_layers[-1][1]
    w, exp = dense_weights_as_lava(np.asarray(layer.weight))
    s = conv.spikes.reshape(3, 5, -1).to(torch.int64)  # (N, T, C*H*W) in (C, H, W) order
    a = s @ torch.from_numpy(w).T
    a = a >> -exp if exp <= 0 else a << exp
    assert 0.1 < float(conv.spikes.float().mean()) < 0.9  # the order of the columns matters
    u = v = torch.zeros((3, a.shape[2]), dtype=torch.int64)
    bias = torch.as_tensor(np.asarray(layer.bias), dtype=torch.int64)
    for t in range(5):
        _, u, v = cuba_step(a[:, t], u, v, bias, layer.neuron)
        assert torch.equal(dense.u[:, t].to(torch.int64), u), t
        assert torch.equal(dense.v[:, t].to(torch.int64), v), t


def test_dense_in_hwc_reads_channels_last_input_as_the_weights_read_chw_input():
    from snn2loihi.deploy.emulator import dense_in_hwc

    rng = np.random.default_rng(0)
    w = rng.integers(-128, 128, (7, 3 * 4 * 5))
    s = rng.integers(0, 2, (6, 3, 4, 5))
    want = s.reshape(6, -1) @ w.T
    got = s.transpose(0, 2, 3, 1).reshape(6, -1) @ dense_in_hwc(w, (3, 4, 5)).T
    assert np.array_equal(got, want)
