"""Emulator == Lava's CPU simulator on the global clock, for the NetX surface netx builds: every
layer's messages and every state Lava's processes hold (u, v; sigma, act, residue).

Networks: written by lava-dl's own slayer blocks (tests/slayer_nets.py), hand-written corner
cases (delays up to the clamp, reset offsets, no reset, recurrence, saturation), and the six
networks lava-dl publishes (../shared/data/lavadl-nets)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from cli_helpers import run_cli
from slayer_nets import SLAYER_NETS, write_slayer_net

from snn2loihi.deploy.parity import run_global_parity
from snn2loihi.deploy.timeline import Timeline
from snn2loihi.netx_io import read_network
from snn2loihi.schema import (
    CubaNeuron,
    DenseLayer,
    InputLayer,
    NetXNetwork,
    RecurrentDenseLayer,
    SigmaDeltaNeuron,
)

pytestmark = pytest.mark.lava

LAVADL = Path(__file__).resolve().parents[2] / "shared" / "data" / "lavadl-nets"
needs_corpus = pytest.mark.skipif(not LAVADL.is_dir(), reason="../shared/data/lavadl-nets absent")
DRIVES = {"bias": "bias", "skip_input": "skip", "source": "input"}


def _input(net, drive: str, samples: int, steps: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    shape = net.input_shape
    if drive == "bias":
        return rng.integers(0, 48, (samples, *shape))
    if drive == "skip" and isinstance(net.input_neuron, SigmaDeltaNeuron):
        return rng.integers(-200, 256, (samples, steps, *shape))  # graded messages
    return (rng.random((samples, steps, *shape)) < 0.4).astype(np.uint8)


def _assert_parity(report):
    assert report.equal, report.table()
    assert sum(ly.lava_spikes for ly in report.layers) > 0, report.table()
    assert all(ly.state_mismatches for ly in report.layers), "states were not compared"


# every way Lava's CPU simulator can drive each network (an input neuron: its bias or skipped)
SLAYER_DRIVES = {
    "cuba_input_dense": ("bias", "skip_input"),
    "cuba_input_conv": ("bias", "skip_input"),
    "cuba_dense_delay": ("source",),
    "cuba_recurrent": ("source",),
    "sdnn_dense": ("skip_input",),
    "sdnn_conv": ("skip_input",),
}


def test_every_slayer_network_is_covered():
    assert set(SLAYER_DRIVES) == set(SLAYER_NETS)


@pytest.mark.parametrize(
    "name,drive", [(n, d) for n, drives in SLAYER_DRIVES.items() for d in drives]
)
def test_slayer_networks_match_lava(name, drive, tmp_path):
    path = tmp_path / f"{name}.net"
    info = write_slayer_net(name, path, seed=0)
    assert set(info["drive"]) == set(SLAYER_DRIVES[name])
    net = read_network(path)
    x = _input(net, DRIVES[drive], samples=2, steps=12, seed=1)
    report = run_global_parity(
        path, x, drive=DRIVES[drive], steps=12, timeline=Timeline(reset_interval=7)
    )
    _assert_parity(report)


def _dense(n_out, n_in, seed, scale=24, **kw):
    rng = np.random.default_rng(seed)
    w = np.clip(rng.integers(-scale, 2 * scale, (n_out, n_in)) * 2, -256, 254)
    neuron = kw.pop("neuron", CubaNeuron(i_decay=1024, v_decay=256, vth_mant=30))
    return DenseLayer(shape=(n_out,), weight=w, neuron=neuron, **kw)


def test_delays_up_to_the_clamp_match_lava(write_net):
    # per-input delays 0, 1, 61, 62 and 70 (NetX clamps it to 62) and per-output delays
    first = _dense(6, 5, 0, delay=np.array([0, 1, 61, 62, 70]), bias=np.arange(6))
    net = NetXNetwork((InputLayer((5,)), first, _dense(3, 6, 1, delay=np.array([2, 0, 5]))), (5,))
    path = write_net(net)
    x = (np.random.default_rng(0).random((1, 70, 5)) < 0.5).astype(np.uint8)
    _assert_parity(run_global_parity(path, x, drive="input", steps=70, timeline=Timeline()))


@pytest.mark.parametrize("interval,offset", [(5, 0), (5, 2), (3, 7), (None, 0)])
def test_reset_offsets_and_no_reset_match_lava(interval, offset, write_net):
    neuron = CubaNeuron(i_decay=0, v_decay=128, vth_mant=90)  # u integrates: resets matter
    net = NetXNetwork(
        (
            InputLayer((8,), neuron=CubaNeuron(i_decay=4096, v_decay=0, vth_mant=50)),
            _dense(6, 8, 0, neuron=neuron, bias=np.array([3, -2, 0, 5, 1, 0])),
            RecurrentDenseLayer(
                shape=(4,),
                weight=_dense(4, 6, 1).weight,
                neuron=neuron,
                weight_rec=_dense(4, 4, 2).weight,
            ),
        ),
        (8,),
    )
    path = write_net(net)
    x = np.random.default_rng(3).integers(0, 40, (2, 8))
    report = run_global_parity(path, x, drive="bias", steps=16, timeline=Timeline(interval, offset))
    _assert_parity(report)


def test_saturation_and_graded_sdnn_messages_match_lava(write_net):
    # the input neuron's bias at Lava's int16 limit drives v into saturation; SDNN layers
    # send large signed messages
    big = CubaNeuron(i_decay=4096, v_decay=0, vth_mant=131071)
    cuba = NetXNetwork((InputLayer((6,), neuron=big), _dense(4, 6, 0, scale=120)), (6,))
    x = np.full((1, 6), 32767)
    _assert_parity(
        run_global_parity(write_net(cuba), x, drive="bias", steps=8, timeline=Timeline())
    )
    sd = SigmaDeltaNeuron(vth_mant=1)
    sdnn = NetXNetwork(
        (
            InputLayer((10,), neuron=SigmaDeltaNeuron(vth_mant=0)),
            _dense(8, 10, 1, scale=100, neuron=sd, bias=np.arange(8) - 3),
            _dense(3, 8, 2, scale=100, neuron=SigmaDeltaNeuron(vth_mant=0, sigma_output=True)),
        ),
        (10,),
    )
    x = np.random.default_rng(0).integers(-30000, 30000, (1, 10, 10))
    _assert_parity(
        run_global_parity(write_net(sdnn), x, drive="skip", steps=10, timeline=Timeline())
    )


LAVADL_CASES = {
    # name: (drive, samples, steps, reset interval, input spike rate)
    "tiny": ("bias", 2, 12, 16, None),
    "bootstrap_mnist": ("bias", 1, 16, None, None),
    "netx_mnist": ("input", 2, 16, None, 0.3),
    "oxford": ("input", 1, 24, 8, 0.03),  # mostly inhibitory weights: sparse input spikes
}


@needs_corpus
@pytest.mark.parametrize("name", list(LAVADL_CASES))
def test_lava_dl_networks_match_lava(name):
    drive, samples, steps, interval, rate = LAVADL_CASES[name]
    path = LAVADL / f"{name}.net"
    net = read_network(path)
    rng = np.random.default_rng(0)
    if drive == "bias":
        x = rng.integers(0, 96, (samples, *net.input_shape))
    else:
        x = (rng.random((samples, steps, *net.input_shape)) < rate).astype(np.uint8)
    report = run_global_parity(path, x, drive=drive, steps=steps, timeline=Timeline(interval))
    assert all(ly.lava_spikes > 0 for ly in report.layers[:-1]), report.table()
    _assert_parity(report)


@needs_corpus
@pytest.mark.slow
def test_pilotnet_sdnn_matches_lava():
    path = LAVADL / "pilotnet_sdnn.net"
    x = np.random.default_rng(0).integers(-3000, 3000, (1, 6, 3, 33, 100))
    _assert_parity(run_global_parity(path, x, drive="skip", steps=6, timeline=Timeline()))


@needs_corpus
@pytest.mark.slow
@pytest.mark.timeout(900)
def test_pilotnet_lif_recording_as_lava_dl_drives_it_equals_lava_s(tmp_path):
    """lava-dl's own drive: pilotnet_image.npy as the input neuron's bias, reset_interval 16,
    15 steps. `run --record s,u,v` on Lava and on the emulator write the same arrays."""
    net = LAVADL / "pilotnet_lif.net"
    image = LAVADL / "pilotnet_image.npy"
    outs = {}
    for backend in ("lava", "emulator"):
        outs[backend] = tmp_path / f"{backend}.npz"
        res = run_cli(
            "run", net, "--backend", backend, "--input", image, "--steps", 15,
            "--reset-interval", 16, "--record", "s,u,v", "--out", outs[backend],
        )  # fmt: skip
        assert res.returncode == 0, res.stderr[-2000:]
        assert "drive 'bias'" in res.stdout
    lava, emu = np.load(outs["lava"]), np.load(outs["emulator"])
    assert sorted(lava.files) == sorted(emu.files)
    assert len(lava.files) == 3 * 10  # s, u, v of the input layer and 9 conv/dense layers
    for key in lava.files:
        assert lava[key].shape == emu[key].shape and lava[key].shape[:2] == (1, 15), key
        assert np.array_equal(lava[key], emu[key]), key


def test_run_record_on_lava_equals_the_emulator_s(tmp_path):
    """`run --record` as a user runs it: the same arrays from both back ends; the input file is
    left byte-identical."""
    net = tmp_path / "net.net"
    write_slayer_net("cuba_input_conv", net, seed=1)
    images = tmp_path / "images.npy"
    np.save(images, np.random.default_rng(2).integers(0, 48, (2, 2, 8, 8)))
    before = images.read_bytes()
    outs = {}
    for backend in ("lava", "emulator"):
        outs[backend] = tmp_path / f"{backend}.npz"
        res = run_cli(
            "run", net, "--backend", backend, "--input", images, "--steps", 10,
            "--reset-interval", 4, "--reset-offset", 2, "--record", "s,u,v", "--out", outs[backend],
        )  # fmt: skip
        assert res.returncode == 0, res.stderr[-2000:]
        assert "drive 'bias'" in res.stdout
    lava, emu = np.load(outs["lava"]), np.load(outs["emulator"])
    assert sorted(lava.files) == sorted(emu.files) and len(lava.files) == 9
    for key in lava.files:
        assert lava[key].shape[:2] == (2, 10) and np.array_equal(lava[key], emu[key]), key
    assert images.read_bytes() == before
