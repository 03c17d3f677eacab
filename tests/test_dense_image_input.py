"""Dense-first networks with an image-shaped input (C, H, W) -> [flatten] -> dense, as export
writes dense-only checkpoints: lava-dl's ``netx.hdf5.Network`` gives such a network a flat input
port (C*H*W,) (the input layer only records a shape used by a first conv layer; a flatten before
the first built layer connects nothing), so the Lava runner feeds the CHW input flattened.
Regression for "Shapes (8, 8, 1) and (64,) are incompatible"."""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import pytest
from cli_helpers import run_cli

from snn2loihi.deploy.emulator import Emulator
from snn2loihi.deploy.evaluate import evaluate_network
from snn2loihi.deploy.inputs import as_network_images, load_input
from snn2loihi.deploy.lava_drivers import fit_input_port
from snn2loihi.deploy.lava_runner import run_lava
from snn2loihi.errors import LavaRunError, NetXValidationError
from snn2loihi.netx_io import read_network
from snn2loihi.schema import CubaNeuron, FlattenLayer, InputLayer
from snn2loihi.testing.netgen import NetSpec, random_network
from snn2loihi.validate import validate_network

LEAKY = CubaNeuron(i_decay=1024, v_decay=128, vth_mant=80)
# two channels, H != W: a wrong flatten order (HWC, or W before H) changes the spikes
SPEC = NetSpec((2, 5, 4), (), (12, 5), LEAKY, weight_range=(-90, 120))
IMAGE_SPEC = NetSpec((1, 8, 8), (), (16, 10), LEAKY, weight_range=(-6, 8))


def _without_flatten(net):
    layers = tuple(ly for ly in net.layers if not isinstance(ly, FlattenLayer))
    return dataclasses.replace(net, layers=layers)


def test_a_chw_input_is_flattened_in_chw_order_for_a_flat_port():
    x = np.arange(2 * 3 * 2 * 5 * 4).reshape(2, 3, 2, 5, 4)
    assert fit_input_port(x, (4, 5, 2), "m.net") is x  # conv first: XYZ port, CHW kept
    flat = fit_input_port(x, (40,), "m.net")
    assert flat.shape == (2, 3, 40)
    np.testing.assert_array_equal(flat[1, 2], x[1, 2].reshape(-1))  # c*H*W + h*W + w
    assert fit_input_port(flat, (40,), "m.net") is flat
    with pytest.raises(LavaRunError, match=re.escape("m.net: Lava's network input port has")):
        fit_input_port(x, (39,), "m.net")


def test_a_flat_input_network_takes_images_flattened_in_chw_order(write_net, tmp_path):
    """A network whose input is (K,) (NIR's flat Input, lava-dl's dense-first port) takes the
    user's images of K pixels: (N, C, H, W) or (N, H, W), flattened in CHW order."""
    images = np.random.default_rng(0).integers(0, 256, size=(3, 2, 5, 4), dtype=np.uint8)
    flat = images.reshape(3, 40)
    assert as_network_images(images, (40,)).shape == (3, 40)
    assert as_network_images(images, (2, 5, 4)) is images
    frames = flat[:, None]  # (N, T=1, K): a time axis, not images
    assert as_network_images(frames, (40,)) is frames
    np.save(tmp_path / "x.npy", images)
    x = load_input(tmp_path / "x.npy", (40,), steps=3)
    assert x.shape == (3, 3, 40)
    np.testing.assert_array_equal(x[:, 2], flat)
    net = random_network(dataclasses.replace(SPEC, input_shape=(40,), readout=True), seed=1)
    path = write_net(net)
    labels = np.arange(3)
    by_image = evaluate_network(net, path, images, labels, 4)
    by_flat = evaluate_network(net, path, flat, labels, 4)
    assert by_image.scores["emulator"] == by_flat.scores["emulator"]


def test_a_dense_layer_may_read_a_neuron_less_chw_input_without_a_flatten_layer():
    net = random_network(SPEC, seed=1)
    validate_network(_without_flatten(net))
    with_neuron = dataclasses.replace(
        _without_flatten(net),
        layers=(InputLayer((2, 5, 4), neuron=LEAKY), *_without_flatten(net).layers[1:]),
    )
    # an input neuron is a layer lava-dl builds: its XYZ output cannot feed a dense layer
    with pytest.raises(NetXValidationError, match="without a flatten layer"):
        validate_network(with_neuron)


@pytest.mark.lava
def test_lava_dl_builds_a_flat_input_port_for_a_dense_first_network(write_net):
    from snn2loihi.deploy.lava_compat import import_netx

    netx = import_netx()
    net = random_network(SPEC, seed=1)
    for variant in (net, _without_flatten(net)):
        lava_net = netx.hdf5.Network(net_config=str(write_net(variant)))
        assert lava_net.inp.shape == (40,) and lava_net.out.shape == (5,)


@pytest.mark.lava
@pytest.mark.parametrize("flatten", [True, False], ids=["flatten", "no-flatten"])
def test_dense_first_image_input_matches_lava_exactly(flatten, write_net):
    net = random_network(SPEC, seed=1)
    net = net if flatten else _without_flatten(net)
    path = write_net(net)
    x = (np.random.default_rng(1).random((2, 5, *SPEC.input_shape)) < 0.35).astype(np.uint8)
    emu = Emulator(net).run(x, record_state=True)
    lava = run_lava(path, x, graded=False, probe_all=True, record_state=True, net=net)
    total = 0
    for k, trace in enumerate(emu.layers):
        np.testing.assert_array_equal(lava.spikes[k], trace.spikes.numpy().astype(np.uint8))
        np.testing.assert_array_equal(lava.u[k], trace.u.numpy())
        np.testing.assert_array_equal(lava.v[k], trace.v.numpy())
        total += int(trace.spikes.sum())
    assert total > 10


@pytest.mark.lava
@pytest.mark.multiprocess
@pytest.mark.parametrize("clock", ["sample", "global"])
def test_parity_cli_on_an_exported_style_dense_only_network(clock, write_net):
    """The user's report: input (1, 8, 8) -> flatten -> dense, as export writes dense-only
    checkpoints, through ``parity`` (random input spikes) on both clocks."""
    path = write_net(random_network(IMAGE_SPEC, seed=4))
    res = run_cli("parity", path, "--samples", 2, "--steps", 4, "--clock", clock)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "PARITY OK" in res.stdout


@pytest.mark.lava
@pytest.mark.multiprocess
def test_run_cli_feeds_images_to_a_dense_only_network_on_lava(write_net, tmp_path):
    """Images (N, 1, 8, 8) from the user's file, graded, give Lava the emulator's output."""
    path = write_net(random_network(IMAGE_SPEC, seed=4))
    images = np.random.default_rng(0).integers(0, 256, size=(3, 1, 8, 8), dtype=np.uint8)
    np.save(tmp_path / "x.npy", images)
    outputs = {}
    for backend in ("lava", "emulator"):
        out = tmp_path / f"{backend}.npy"
        res = run_cli("run", path, "--backend", backend, "--input", tmp_path / "x.npy",
                      "--steps", 4, "--out", out)  # fmt: skip
        assert res.returncode == 0, res.stderr[-3000:]
        outputs[backend] = np.load(out)
    np.testing.assert_array_equal(outputs["lava"], outputs["emulator"])
    assert outputs["lava"].shape == (3, 4, 10)


@pytest.mark.lava
@pytest.mark.multiprocess
def test_exported_dense_only_checkpoint_passes_parity_and_runs_on_lava(tmp_path):
    """The report's flow: a dense-only checkpoint (image input (1, 8, 8)), ``export``, then
    ``parity NET --samples 4`` and ``run NET --backend lava`` with images, as subprocesses."""
    from test_export_helpers import random_checkpoint

    ckpt, _, _ = random_checkpoint(tmp_path, "dense-only")
    net = tmp_path / "m.net"
    res = run_cli("export", ckpt, "--out", net, "--no-accuracy")
    assert res.returncode == 0, res.stderr[-3000:]
    assert read_network(net).input_shape == (1, 8, 8)  # images stay images in the file
    res = run_cli("parity", net, "--samples", 4, "--steps", 4)
    assert res.returncode == 0 and "PARITY OK" in res.stdout, res.stderr[-3000:]
    images = np.random.default_rng(0).integers(0, 256, size=(2, 1, 8, 8), dtype=np.uint8)
    np.save(tmp_path / "x.npy", images)
    res = run_cli("run", net, "--backend", "lava", "--input", tmp_path / "x.npy", "--steps", 3,
                  "--out", tmp_path / "s.npy")  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    assert np.load(tmp_path / "s.npy").shape == (2, 3, 10)
