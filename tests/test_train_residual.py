"""Residual blocks in training (#33): the spec, the shortcut's form and refusals, and a digits
run whose export (the residual superset of NetX) fires exactly the integer branch's spikes."""

from __future__ import annotations

import pytest
import torch
from test_export_helpers import export_and_check, trained_export_lava_parity
from train_helpers import DIGITS_RUN, small_config

from snn2loihi.errors import ConfigError
from snn2loihi.export.loader import load_model
from snn2loihi.train.config import resolve
from snn2loihi.train.data import load_datasets
from snn2loihi.train.model import ConvSpec, build_model
from snn2loihi.train.trainer import train

RESIDUAL_RUN = [*DIGITS_RUN, "model.convs=['8', '8', '8r', 's16', '16r']"]


def test_residual_specs_read_and_write_back():
    assert ConvSpec.parse("64r") == ConvSpec(64, residual=True)
    assert ConvSpec.parse("s64r") == ConvSpec(64, stride=2, residual=True)
    assert ConvSpec.parse({"channels": 8, "residual": True}).to_text() == "8r"
    assert ConvSpec.parse("32k5s2r").to_text() == "32k5s2r"
    with pytest.raises(ValueError, match="cannot fold pooling"):
        ConvSpec.parse("64p2r")


def test_shortcuts_are_identity_or_a_strided_1x1_conv_from_two_convs_before():
    model = build_model("resnet_digits", (1, 8, 8), 10, mean=(0.3,), std=(0.3,), steps=2, step_divisor=2)  # fmt: skip
    identity, down = model.shortcut(2), model.shortcut(4)
    assert (identity.source, identity.identity, identity.weight) == (0, True, None)
    assert (down.source, down.identity, down.stride) == (2, False, 2)
    assert down.weight.shape == (32, 16, 1, 1) and model.shortcut(3) is None
    assert model.shortcut_sources == {0, 2}
    x = torch.rand(4, 1, 8, 8) * 255
    h0 = torch.relu(model.layers[0].bn(model.layer_synapse(0, x)))
    h1 = torch.relu(model.layers[1].bn(model.layer_synapse(1, h0)))
    a2 = model.layers[2].bn(model.layer_synapse(2, h1) + h0)  # one BN over both currents
    assert torch.equal(model.ann_forward(x)[1][2], a2)


def test_the_cifar_resnet_preset_exports_a_valid_residual_network():
    from snn2loihi.train.netx_model import to_netx
    from snn2loihi.validate import validate_network

    torch.set_num_threads(1)
    model = build_model("resnet_cifar", (3, 32, 32), 10, mean=(0.5,) * 3, std=(0.25,) * 3, steps=4, step_divisor=4)  # fmt: skip
    net = to_netx(model.eval())
    validate_network(net)
    shortcuts = [(i, sc.source, sc.delay) for i, ly in enumerate(net.layers) for sc in getattr(ly, "shortcuts", ())]  # fmt: skip
    assert shortcuts == [(3, 1, 1), (5, 3, 1), (7, 5, 1), (9, 7, 1)]
    assert net.output_shape == (10,) and net.layers[9].shape == (512, 4, 4)


def test_bad_residual_models_are_refused_naming_the_field():
    with pytest.raises(ConfigError, match=r"model.convs\[1\] = '8r': a residual conv closes"):
        build_model("custom", (1, 8, 8), 10, convs=("8", "8r"), dense=(), mean=(0,), std=(1,), steps=1, step_divisor=1)  # fmt: skip
    with pytest.raises(ConfigError, match="cannot be added to its output 8x3x3"):
        build_model("custom", (1, 8, 8), 10, convs=("4", "8k3s3", "8k3s1r"), dense=(), mean=(0,), std=(1,), steps=1, step_divisor=1)  # fmt: skip
    with pytest.raises(ConfigError, match="residual blocks train with train.method = 'snn2ann'"):
        resolve(None, ["model.arch='resnet_digits'", "train.method='bptt'"])


@pytest.mark.timeout(600)
def test_residual_digits_run_exports_exactly_the_integer_branch(tmp_path, cli_refusal):
    """One epoch on digits; the exported residual file's spikes on the emulator are the
    integer branch's (every layer, step and neuron, the readout's v), and so are its
    predictions on the validation images. The ONNX export refuses it, writing nothing (NIR:
    tests/test_nir_residual.py)."""
    torch.set_num_threads(1)
    config = small_config(tmp_path, *RESIDUAL_RUN)
    result = train(config)
    ckpt = tmp_path / "run" / "best.pt"
    model, _ = load_model(ckpt)
    assert sorted(model.shortcuts) == ["2", "4"]
    x = load_datasets(config.data).val.x[:32]
    report = export_and_check(ckpt, model, tmp_path / "res.net", x, 144)
    assert report["accuracy"]["emulator_acc"] == result["snn_acc"] > 0.3  # chance is 0.1
    argv = ["export", ckpt, "--out", tmp_path / "m.net", "--onnx", tmp_path / "m.x"]
    cli_refusal(argv, "residual shortcuts", "layers 2, 4", "without --onnx")
    assert not (tmp_path / "m.net").exists() and not (tmp_path / "m.x").exists()


@pytest.mark.lava
def test_trained_residual_network_matches_lava_spike_for_spike(tmp_path):
    """The parity command's comparison on a trained residual export: every layer's spikes and
    the readout's u and v equal on Lava's graph built from the file."""
    result = trained_export_lava_parity(tmp_path, *RESIDUAL_RUN)
    assert len(result.layers) == 6 and all(ly.lava_spikes > 0 for ly in result.layers[:-1])
