"""General conv geometry end to end: kernels 1/5, stride 3, padding 0, pooling 3 and pooling with
stride, exported and run on the emulator (and Lava) spike for spike against the integer branch."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_export_helpers import export_and_check, save_model_checkpoint
from train_helpers import calibrated_model, digits_like_batch, small_config

from snn2loihi.export.exporter import export_checkpoint

# name -> (input shape CHW, convs, dense, (kernel, stride, padding) of each conv as run)
GEOMETRIES = {
    "kernel5-kernel1": ((1, 8, 8), ["8k5", "16k1s2"], [24], [(5, 1, 2), (1, 2, 0)]),
    "stride3-pad0": (
        (1, 9, 9),
        ["8k3s3", {"channels": 16, "kernel": 2, "padding": 0}],
        [],
        [(3, 3, 1), (2, 1, 0)],
    ),
    "pool3": ((1, 9, 9), ["8k1", "16k3p3"], [16], [(1, 1, 0), (9, 3, 3)]),
    "pool-with-stride": ((2, 12, 12), ["8k3s2p2", "16k1p3"], [12], [(6, 4, 2), (3, 3, 0)]),
}


def geometry_checkpoint(tmp_path, name: str, steps: int = 3):
    """Save a calibrated random-init model of ``GEOMETRIES[name]``; return (path, model, npz)."""
    shape, convs, dense, _ = GEOMETRIES[name]
    config = small_config(
        tmp_path,
        "model.arch='custom'",
        f"model.dense={dense!r}",
        f"train.steps={steps}",
    )
    config.model.convs = convs
    model = calibrated_model(
        arch="custom", convs=tuple(convs), dense=tuple(dense), steps=steps, input_shape=shape
    )
    path = save_model_checkpoint(tmp_path / f"{name}.pt", model, config, shape)
    x = digits_like_batch(32, shape, seed=5)
    data = tmp_path / f"{name}.npz"
    np.savez(data, x=x.permute(0, 2, 3, 1).numpy(), y=np.arange(32) % 10)
    return path, model, data


@pytest.mark.parametrize("name", list(GEOMETRIES))
def test_geometry_exports_with_exact_spike_parity(tmp_path, name):
    torch.set_num_threads(1)
    ckpt, model, data = geometry_checkpoint(tmp_path, name)
    runs = [(ly.affine()[0].shape[2], *ly.geometry) for ly in model.layers if ly.kind == "conv"]
    assert runs == GEOMETRIES[name][3]
    x = digits_like_batch(16, model.input_shape)
    export_and_check(ckpt, model, tmp_path / "model.net", x, 32, data_file=data)


@pytest.mark.lava
def test_lava_runs_the_pooled_strided_export_spike_for_spike(tmp_path):
    from snn2loihi.deploy.parity import run_parity

    ckpt, model, _ = geometry_checkpoint(tmp_path, "pool-with-stride", steps=3)
    out = tmp_path / "model.net"
    export_checkpoint(ckpt, out, accuracy=False)
    x = digits_like_batch(2, model.input_shape).numpy()
    result = run_parity(out, np.repeat(x[:, None], model.steps, axis=1))
    assert result.equal, result.table()
    assert sum(ly.lava_spikes for ly in result.layers) > 0
