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
from snn2loihi.schema import CubaNeuron, DenseLayer, RecurrentDenseLayer


@pytest.mark.parametrize(
    ("convs", "words"),
    [
        (["8", "m16"], ["layer 1", "max pooling", "'p16'"]),
        (["r16"], ["layer 0", "residual conv is written '16r'"]),
        (["8", "x16"], ["layer 1", "'x16'", "s64"]),
    ],
)
def test_config_asking_for_undeployable_layers_is_refused(convs, words):
    config = {"model": {"arch": "custom", "convs": convs, "dense": []}}
    with pytest.raises(NotDeployableError) as exc:
        check_config(config, "ckpt.pt")
    for w in words:
        assert w in str(exc.value)


def _set(*keys_and_value):
    """An edit of a checkpoint dict: ``_set("config", "model", "convs", ["8", "m16"])``."""
    *keys, last, value = keys_and_value

    def edit(state):
        for k in keys:
            state = state[k]
        state[last] = value

    return edit


def _first_value(key: str, value: float):
    def edit(state):
        state["model"][key].view(-1)[0] = value

    return edit


# (id, checkpoint shape, edit of the saved dict, error, message pattern)
EDITED_CHECKPOINTS = [
    ("max-pool-config", "conv-stride", _set("config", "model", "convs", ["8", "m16"]),
     NotDeployableError, "layer 1.*max pooling"),
    ("extra-module", "conv-stride",
     _set("model", "layers.1.shortcut.weight", torch.zeros(16, 8, 1, 1)),
     NotDeployableError, "layers.1.shortcut"),
    ("weights-not-fitting-config", "dense-only", _set("config", "model", "dense", [48, 12]),
     CheckpointError, "do not fit"),
    ("non-tensor-parameter", "dense-only", _set("model", "layers.0.weight", [[1.0]]),
     CheckpointError, r"'layers\.0\.weight' is list, not a tensor"),
    ("nan-weight", "conv-stride", _first_value("layers.1.weight", float("nan")),
     CheckpointError, r"'layers\.1\.weight' = nan at index \(0, 0, 0, 0\)"),
    ("inf-bias", "conv-stride", _first_value("layers.3.bias", float("inf")),
     CheckpointError, r"'layers\.3\.bias' = inf at index \(0,\)"),
    ("-inf-bn-weight", "conv-stride", _first_value("layers.2.bn.weight", -float("inf")),
     CheckpointError, r"'layers\.2\.bn\.weight' = -inf"),
    ("zero-threshold", "conv-stride", _first_value("layers.0.thresholds", 0.0),
     CheckpointError, r"'layers\.0\.thresholds' = 0\.0 .* finite and > 0"),
    ("negative-threshold", "conv-stride", _first_value("layers.1.thresholds", -2.0),
     CheckpointError, r"'layers\.1\.thresholds' = -2\.0"),
    ("negative-running-var", "conv-stride", _first_value("layers.0.bn.running_var", -5.0),
     CheckpointError, r"'layers\.0\.bn\.running_var' = -5\.0 .* >= 0"),
    ("nan-mean", "dense-only", _set("metrics", "model", "mean", [float("nan")]),
     CheckpointError, r"metrics\.model\.mean\[0\] = nan must be finite"),
    ("zero-std", "dense-only", _set("metrics", "model", "std", [0.0]),
     CheckpointError, r"metrics\.model\.std\[0\] = 0\.0 must be finite and > 0"),
    ("std-too-long", "dense-only", _set("metrics", "model", "std", [0.1, 0.2]),
     CheckpointError, r"metrics\.model\.std = \[0\.1, 0\.2\] has 2 entries for 1"),
    ("empty-input-shape", "dense-only", _set("metrics", "model", "input_shape", [1, 0, 8]),
     CheckpointError, r"metrics\.model\.input_shape = \[1, 0, 8\]"),
    ("zero-classes", "dense-only", _set("metrics", "model", "num_classes", 0),
     CheckpointError, r"metrics\.model\.num_classes = 0 must be >= 1"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("shape", "edit", "error", "needle"),
    [pytest.param(*case[1:], id=case[0]) for case in EDITED_CHECKPOINTS],
)
def test_edited_checkpoint_is_refused_naming_file_and_value(tmp_path, shape, edit, error, needle):
    """A saved checkpoint edited in one place is refused with its error type, a message that
    names the file and what is wrong, and only that error type (no crash deeper in)."""
    ckpt, _, _ = random_checkpoint(tmp_path, shape)
    load_model(ckpt)  # the unedited checkpoint loads
    state = torch.load(ckpt, weights_only=True)
    edit(state)
    torch.save(state, ckpt)
    with pytest.raises(error, match=needle) as exc:
        load_model(ckpt)
    assert type(exc.value) is error
    assert str(ckpt) in str(exc.value)
    assert "\n" not in str(exc.value)


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


def test_headroom_counts_a_recurrent_layer_s_own_spikes():
    """dense_rec: the input columns see 0..input_max, the weight_rec columns the layer's own
    spikes (0/1); netx optimizes both together (here exact: odd weights, no shift)."""
    w = np.array([[3, -1], [1, 1]], dtype=np.int64)
    rec = np.array([[5, -7], [0, 9]], dtype=np.int64)
    ly = RecurrentDenseLayer(
        shape=(2,), weight=w, weight_rec=rec, neuron=CubaNeuron.integrate_and_fire(10)
    )
    h = layer_headroom(1, ly, input_max=255, steps=4)
    assert h.a_max_mant == max(3 * 255 + 5, 2 * 255 + 9, 255 + 7)
    ly = RecurrentDenseLayer(
        shape=(2,), weight=np.zeros((2, 2), np.int64), weight_rec=rec,
        neuron=CubaNeuron.integrate_and_fire(10),
    )  # fmt: skip
    assert layer_headroom(1, ly, input_max=1, steps=4).a_max_mant == 9  # all-zero input weights


def test_headroom_safe_layer_has_no_warnings():
    w = np.array([[3, -2, 1]], dtype=np.int64)
    h = layer_headroom(1, _dense(w, np.array([5]), 10), input_max=255, steps=16)
    assert h.a_max_mant == 4 * 255 and h.u_peak == (4 * 255) << 6
    assert h.v_peak_pos == (10 << 6) + ((4 * 255) << 6) + (5 << 6)
    assert h.limit == UV_LIMIT and not h.warnings
