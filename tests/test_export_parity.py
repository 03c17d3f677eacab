"""The promise: the exported ``.net`` fires exactly the integer SNN branch's spikes, step by step.

Training's integer branch records its spikes (``run_snn(..., record=True)``), compared layer by
layer, step by step and neuron by neuron with the emulator's spikes on the file, and its readout's
v with the emulator's at every step.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_export_helpers import (
    SHAPES,
    assert_exported_parity,
    export_and_check,
    random_checkpoint,
)
from train_helpers import digits_like_batch

from snn2loihi.deploy.emulator import Emulator
from snn2loihi.export.exporter import export_checkpoint
from snn2loihi.export.loader import load_model
from snn2loihi.train.checkpoint import checkpoint_config
from snn2loihi.train.data import load_datasets


@pytest.mark.parametrize("shape", list(SHAPES))
def test_random_models_export_with_exact_spike_parity(tmp_path, shape):
    torch.set_num_threads(1)
    ckpt, model, _ = random_checkpoint(tmp_path, shape)
    export_and_check(ckpt, model, tmp_path / "model.net", digits_like_batch(16), 64, samples=64)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, digits_run):
    tmp = tmp_path_factory.mktemp("trained")
    ckpt = digits_run / "best.pt"
    out = tmp / "digits.net"
    report = export_checkpoint(ckpt, out)
    return ckpt, out, report


def test_trained_digits_model_parity_and_accuracy(trained):
    torch.set_num_threads(1)
    ckpt, out, report = trained
    model, state = load_model(ckpt)
    _, val, _, _ = load_datasets(checkpoint_config(state).data)  # export's default split
    fired = assert_exported_parity(out, model, val.x[:64])
    assert fired > 0
    acc = report["accuracy"]
    assert acc["samples"] == len(val)
    assert acc["emulator_acc"] == acc["integer_snn_acc"] > 0.5  # chance is 0.1
    assert acc["prediction_mismatches"] == 0
    assert acc["emulator_acc"] == pytest.approx(state["metrics"]["snn_acc"], abs=1e-12)


def test_headroom_bounds_hold_on_the_emulator(trained):
    _, out, report = trained
    _, state = load_model(trained[0])
    _, _, test, _ = load_datasets(checkpoint_config(state).data)
    steps = report["steps"]
    emu = Emulator(out).run(test.x.unsqueeze(1).expand(-1, steps, -1, -1, -1), record_state=True)
    rows = [r for r in report["layers"] if "headroom" in r]
    assert len(rows) == len(emu.layers)
    for row, trace in zip(rows, emu.layers, strict=True):
        h = row["headroom"]
        assert int(trace.u.abs().max()) <= h["u_peak"]
        assert int(trace.v.max()) <= h["v_peak_pos"]
        assert -int(trace.v.min()) <= h["v_peak_neg"]
        assert not h["u_can_wrap"] and not h["v_can_saturate"]
    assert report["warnings"] == []


@pytest.mark.lava
def test_lava_simulator_runs_the_exported_file_spike_for_spike(trained):
    from snn2loihi.deploy.parity import run_parity

    _, out, report = trained
    x = digits_like_batch(3).numpy()
    x = np.repeat(x[:, None], report["steps"], axis=1)
    assert x.max() > 1  # graded input
    result = run_parity(out, x)
    assert result.equal, result.table()
    assert sum(ly.lava_spikes for ly in result.layers) > 0
