"""Refusals of what NetX cannot run, and the 24-bit headroom check."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_export_helpers import random_checkpoint
from torch import nn

from snn2loihi.export.errors import CheckpointError, NotDeployableError
from snn2loihi.export.headroom import layer_headroom
from snn2loihi.export.loader import check_config, check_modules, load_model
from snn2loihi.loihi import UV_LIMIT, VTH_MAX
from snn2loihi.schema import CubaNeuron, DenseLayer


@pytest.mark.parametrize(
    ("convs", "words"),
    [
        (["8", "m16"], ["layer 1", "max pooling", "'p16'"]),
        (["r16"], ["layer 0", "residual", "plain conv"]),
        (["8", "x16"], ["layer 1", "'x16'", "s64"]),
    ],
)
def test_config_asking_for_undeployable_layers_is_refused(convs, words):
    config = {"model": {"arch": "custom", "convs": convs, "dense": []}}
    with pytest.raises(NotDeployableError) as exc:
        check_config(config, "ckpt.pt")
    for w in words:
        assert w in str(exc.value)


def test_checkpoint_with_config_for_max_pooling_is_refused(tmp_path):
    ckpt, _, _ = random_checkpoint(tmp_path, "conv-stride")
    state = torch.load(ckpt, weights_only=True)
    state["config"]["model"]["convs"] = ["8", "m16"]
    torch.save(state, ckpt)
    with pytest.raises(NotDeployableError, match="layer 1.*max pooling"):
        load_model(ckpt)


def test_checkpoint_with_an_extra_module_is_refused(tmp_path):
    ckpt, _, _ = random_checkpoint(tmp_path, "conv-stride")
    state = torch.load(ckpt, weights_only=True)
    state["model"]["layers.1.shortcut.weight"] = torch.zeros(16, 8, 1, 1)
    torch.save(state, ckpt)
    with pytest.raises(NotDeployableError, match="layers.1.shortcut"):
        load_model(ckpt)


def test_checkpoint_weights_not_matching_config(tmp_path):
    ckpt, _, _ = random_checkpoint(tmp_path, "dense-only")
    state = torch.load(ckpt, weights_only=True)
    state["config"]["model"]["dense"] = [48, 12]
    torch.save(state, ckpt)
    with pytest.raises(CheckpointError, match="do not fit"):
        load_model(ckpt)


def test_unsupported_module_in_model_is_refused(tmp_path):
    _, model, _ = random_checkpoint(tmp_path, "conv-stride")
    model.layers[1].pool_op = nn.MaxPool2d(2)
    with pytest.raises(NotDeployableError, match=r"layers\.1\.pool_op.*MaxPool2d"):
        check_modules(model)


def _dense(weight: np.ndarray, bias: np.ndarray, vth: int) -> DenseLayer:
    return DenseLayer(
        shape=(weight.shape[0],),
        weight=weight,
        neuron=CubaNeuron.integrate_and_fire(vth),
        bias=bias,
    )


def test_headroom_flags_u_wrap_and_v_saturation():
    w = np.full((2, 600), 254, dtype=np.int64)  # 600 * 254 = 152400 > 2^17: u wraps
    h = layer_headroom(3, _dense(w, np.zeros(2, np.int64), 100), input_max=1, steps=4)
    assert h.u_can_wrap and h.u_peak == 152400 << 6 and h.headroom_bits < 0
    assert "layer 3" in h.warnings[0] and "wrap" in h.warnings[0]
    w = np.full((2, 100), -200, dtype=np.int64)  # negative v accumulates over T = 8 steps
    h = layer_headroom(5, _dense(w, np.zeros(2, np.int64), VTH_MAX), input_max=1, steps=8)
    assert not h.u_can_wrap and h.v_can_saturate and h.v_peak_neg == 8 * (20000 << 6)
    assert any("saturate" in m for m in h.warnings)


def test_headroom_safe_layer_has_no_warnings():
    w = np.array([[3, -2, 1]], dtype=np.int64)
    h = layer_headroom(1, _dense(w, np.array([5]), 10), input_max=255, steps=16)
    assert h.a_max_mant == 4 * 255 and h.u_peak == (4 * 255) << 6
    assert h.v_peak_pos == (10 << 6) + ((4 * 255) << 6) + (5 << 6)
    assert h.limit == UV_LIMIT and not h.warnings


@pytest.mark.parametrize(
    ("key", "value", "needle"),
    [
        ("layers.1.weight", float("nan"), r"'layers\.1\.weight' = nan at index \(0, 0, 0, 0\)"),
        ("layers.3.bias", float("inf"), r"'layers\.3\.bias' = inf at index \(0,\)"),
        ("layers.2.bn.weight", -float("inf"), r"'layers\.2\.bn\.weight' = -inf"),
        ("layers.0.thresholds", 0.0, r"'layers\.0\.thresholds' = 0\.0 .* finite and > 0"),
        ("layers.1.thresholds", -2.0, r"'layers\.1\.thresholds' = -2\.0"),
        ("layers.0.bn.running_var", -5.0, r"'layers\.0\.bn\.running_var' = -5\.0 .* >= 0"),
    ],
)
def test_non_finite_or_out_of_range_checkpoint_values_are_refused(tmp_path, key, value, needle):
    ckpt, _, _ = random_checkpoint(tmp_path, "conv-stride")
    state = torch.load(ckpt, weights_only=True)
    state["model"][key].view(-1)[0] = value
    torch.save(state, ckpt)
    with pytest.raises(CheckpointError, match=needle) as exc:
        load_model(ckpt)
    assert str(ckpt) in str(exc.value)


@pytest.mark.parametrize(
    ("field", "value", "needle"),
    [
        ("mean", [float("nan")], r"metrics\.model\.mean\[0\] = nan must be finite"),
        ("std", [0.0], r"metrics\.model\.std\[0\] = 0\.0 must be finite and > 0"),
        ("std", [0.1, 0.2], r"metrics\.model\.std = \[0\.1, 0\.2\] has 2 entries for 1"),
        ("input_shape", [1, 0, 8], r"metrics\.model\.input_shape = \[1, 0, 8\]"),
        ("num_classes", 0, r"metrics\.model\.num_classes = 0 must be >= 1"),
    ],
)
def test_bad_model_record_in_checkpoint_is_refused(tmp_path, field, value, needle):
    ckpt, _, _ = random_checkpoint(tmp_path, "dense-only")
    state = torch.load(ckpt, weights_only=True)
    state["metrics"]["model"][field] = value
    torch.save(state, ckpt)
    with pytest.raises(CheckpointError, match=needle):
        load_model(ckpt)


def test_non_tensor_parameter_is_refused(tmp_path):
    ckpt, _, _ = random_checkpoint(tmp_path, "dense-only")
    state = torch.load(ckpt, weights_only=True)
    state["model"]["layers.0.weight"] = [[1.0]]
    torch.save(state, ckpt)
    with pytest.raises(CheckpointError, match=r"'layers\.0\.weight' is list, not a tensor"):
        load_model(ckpt)
