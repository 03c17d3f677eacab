"""Residual networks (#33): the superset of NetX (records, file, refusals), the emulator's
summed synapses, and Lava's graph built from the file (every spike, u and v equal)."""

from __future__ import annotations

import dataclasses

import h5py
import numpy as np
import pytest
import torch

from snn2loihi.deploy.emulator import Emulator, pass_shape
from snn2loihi.errors import NetXFormatError, NetXValidationError, UnsupportedLayerError
from snn2loihi.netx_io import read_network, write_network
from snn2loihi.schema import FORMAT_ATTR, CubaNeuron, Shortcut
from snn2loihi.testing.netgen import SMALL, random_network, random_residual_network


def _with_shortcut(net, layer: int, **changes):
    """``net`` with layer ``layer``'s first shortcut changed (validation off: records only)."""
    ly = net.layers[layer]
    sc = dataclasses.replace(ly.shortcuts[0], **changes)
    layers = list(net.layers)
    layers[layer] = dataclasses.replace(ly, shortcuts=(sc,))
    return dataclasses.replace(net, layers=tuple(layers))


def test_residual_file_round_trips_exactly_and_is_versioned(write_net):
    net = random_residual_network(seed=2)
    path = write_net(net)
    assert read_network(path) == net
    with h5py.File(path) as f:
        assert f.attrs[FORMAT_ATTR] == 2
        assert f["layer/3/type"][0] == b"concat" and f["layer/3/main"][()] == b"conv"
        assert f["layer/3/shortcut/0/source"][()] == 1 and f["layer/5/shortcut/0/delay"][()] == 1
        assert FORMAT_ATTR not in h5py.File(write_net(random_network(SMALL)), "r").attrs
    changed = _with_shortcut(net, 5, weight=net.layers[5].shortcuts[0].weight + 1)
    assert changed != net  # the shortcut takes part in the records' equality


def test_lava_dl_refuses_a_residual_file_loudly(write_net):
    from snn2loihi.deploy.lava_compat import import_netx

    path = write_net(random_residual_network(seed=0))
    with pytest.raises(NotImplementedError, match="concat is not implemented"):
        import_netx().hdf5.Network(net_config=str(path))


BAD = {  # change of layer 5's shortcut -> words of the error
    "missing source": (dict(source=42), "field 'shortcut/0/source' = 42 names no layer"),
    "source is the input": (dict(source=0), "is a input layer"),
    "cycle": (dict(source=5), "the graph would have a cycle"),
    "shapes do not add": (dict(stride=(1, 1)), "field 'shortcut/0/shape' = (6, 4, 4)"),
    "channels do not add": (
        dict(weight=np.ones((6, 3, 1, 1), dtype=np.int64)),
        "field 'shortcut/0/weight' has 3 input channels",
    ),
    "delay out of range": (dict(delay=63), "field 'shortcut/0/delay' = 63"),
    "delay misaligned": (dict(delay=0), "only with delay 1"),
    "weight out of range": (
        dict(weight=np.full((6, 4, 1, 1), 300, dtype=np.int64)),
        "field 'shortcut/0/weight' value 300",
    ),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_residual_networks_are_refused_naming_layer_and_field(case, tmp_path):
    changes, words = BAD[case]
    bad = _with_shortcut(random_residual_network(seed=0), 5, **changes)
    with pytest.raises(NetXValidationError, match="layer 5 \\(conv\\)") as info:
        write_network(bad, tmp_path / "bad.net")
    assert words in str(info.value)
    assert not (tmp_path / "bad.net").exists()


def test_a_residual_network_must_run_on_the_per_sample_clock(tmp_path):
    from snn2loihi.schema import InputLayer

    net = random_residual_network(seed=0)
    with_input_neuron = dataclasses.replace(
        net, layers=(InputLayer(net.input_shape, CubaNeuron(0, 0, 10)), *net.layers[1:])
    )
    with pytest.raises(NetXValidationError, match="runs on the per-sample clock only"):
        write_network(with_input_neuron, tmp_path / "bad.net")


def test_bad_residual_file_exits_2_naming_layer_and_field(write_net, cli_refusal):
    path = write_net(random_residual_network(seed=0))
    with h5py.File(path, "a") as f:
        del f["layer/3/shortcut/0/delay"]
        f["layer/3/shortcut/0/delay"] = np.int64(5)
    cli_refusal(["inspect", path], "layer 3", "shortcut/0/delay", "= 5")


def test_reader_refuses_unknown_format_and_concat_in_plain_files(write_net):
    path = write_net(random_residual_network(seed=0))
    with h5py.File(path, "a") as f:
        f.attrs[FORMAT_ATTR] = 3
    with pytest.raises(NetXFormatError, match="'snn2loihi_format' = 3"):
        read_network(path)
    with h5py.File(path, "a") as f:
        del f.attrs[FORMAT_ATTR]
    with pytest.raises(UnsupportedLayerError, match="layer 3: layer type 'concat'"):
        read_network(path)


def test_global_clock_refuses_a_residual_network():
    net = random_residual_network(seed=0)
    x = np.zeros((1, 2, *net.input_shape), dtype=np.uint8)
    with pytest.raises(UnsupportedLayerError, match="only on the per-sample clock"):
        Emulator(net).run_netx(x, drive="input")


def test_emulator_sums_both_synapses_in_the_same_step():
    """Memoryless neurons (iDecay = vDecay = 4096, no bias): layer 3's u at every step is
    exactly ``(conv(s2, W3) + conv(s1, W_shortcut)) << 6`` of the same step's spikes, across
    the emulator's time chunks."""
    net = random_residual_network(seed=1, neuron=CubaNeuron(4096, 4096, vth_mant=60))
    net = dataclasses.replace(
        net,
        layers=tuple(
            dataclasses.replace(ly, bias=None) if hasattr(ly, "bias") else ly for ly in net.layers
        ),
    )
    x = (np.random.default_rng(0).random((120, 40, *net.input_shape)) < 0.4).astype(np.uint8)
    layers = [ly for _, ly in net.synaptic_layers]
    assert pass_shape(layers, 120, 40)[1] < 40, "the run must span several time chunks"
    traces = Emulator(net).run(x, record_state=True).layers
    s1, s2 = (traces[k].spikes.flatten(0, 1).double() for k in (0, 1))
    u3 = traces[2].u

    def conv(s, weight, stride=1, padding=0):
        w = torch.as_tensor(weight, dtype=torch.float64)
        return torch.nn.functional.conv2d(s, w, stride=stride, padding=padding)

    main, sc = net.layers[3], net.layers[3].shortcuts[0]
    a = conv(s2, main.weight, padding=1) + conv(s1, sc.weight)
    assert int(conv(s1, sc.weight).abs().sum()) > 0, "the shortcut must carry spikes"
    np.testing.assert_array_equal(u3.flatten(0, 1).numpy(), (a.long() << 6).numpy())
    assert isinstance(sc, Shortcut) and traces[2].spikes.any()


@pytest.mark.lava
def test_residual_network_matches_lava_every_spike_u_and_v(write_net):
    from snn2loihi.deploy.lava_runner import run_lava

    net = random_residual_network(seed=0)
    path = write_net(net)
    x = (np.random.default_rng(1).random((3, 7, *net.input_shape)) < 0.35).astype(np.uint8)
    emu = Emulator(read_network(path)).run(x, record_state=True)
    lava = run_lava(path, x, graded=False, probe_all=True, record_state=True, net=net)
    assert lava.layer_indices == [t.index for t in emu.layers] == [1, 2, 3, 4, 5, 7]
    for k, trace in enumerate(emu.layers):
        assert int(trace.spikes.sum()) > 0, f"layer {trace.index} should spike"
        np.testing.assert_array_equal(lava.spikes[k], trace.spikes.numpy(), err_msg=f"s {k}")
        np.testing.assert_array_equal(lava.u[k], trace.u.numpy(), err_msg=f"u of layer {k}")
        np.testing.assert_array_equal(lava.v[k], trace.v.numpy(), err_msg=f"v of layer {k}")
    plain = dataclasses.replace(  # the shortcuts change what the residual layers do
        net,
        layers=tuple(
            dataclasses.replace(ly, shortcuts=()) if getattr(ly, "shortcuts", ()) else ly
            for ly in net.layers
        ),
    )
    chain = Emulator(plain).run(x, record_state=True)
    assert not torch.equal(chain.layers[2].u, emu.layers[2].u)
    assert not torch.equal(chain.layers[4].u, emu.layers[4].u)


def test_headroom_counts_the_shortcut_current():
    from snn2loihi.export.headroom import layer_headroom

    net = random_residual_network(seed=0)
    ly = net.layers[5]
    with_sc = layer_headroom(5, ly, 1, 4).a_max_mant
    alone = layer_headroom(5, dataclasses.replace(ly, shortcuts=()), 1, 4).a_max_mant
    w = np.hstack([ly.weight.reshape(6, -1), ly.shortcuts[0].weight.reshape(6, -1)])
    worst = max(np.clip(w, 0, None).sum(1).max(), np.clip(-w, 0, None).sum(1).max())
    assert with_sc == worst > alone
