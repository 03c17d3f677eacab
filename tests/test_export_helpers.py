"""Helpers for the export tests: checkpoints of random-init models, the export checks."""

from __future__ import annotations

import torch
from train_helpers import assert_same_spikes, calibrated_model, emulate, small_config

from snn2loihi.export.exporter import export_checkpoint
from snn2loihi.export.loader import load_model
from snn2loihi.netx_io import read_network
from snn2loihi.train.checkpoint import save_checkpoint
from snn2loihi.train.fold import integer_layers
from snn2loihi.train.netx_model import to_netx
from snn2loihi.train.snn_branch import run_snn

# Supported shapes: strided conv, average pool folded into a conv, dense only, LIF (BPTT).
SHAPES = {
    "conv-stride": dict(convs=["8", "s16"], dense=[24]),
    "pool-folded": dict(convs=["8", "p16"], dense=[]),
    "dense-only": dict(convs=[], dense=[48, 24]),
}


def random_checkpoint(tmp_path, shape: str, steps: int = 3):
    """Save a calibrated random-init model of ``SHAPES[shape]``; return (path, model, config)."""
    spec = SHAPES[shape]
    config = small_config(
        tmp_path,
        "model.arch='custom'",
        f"model.convs={spec['convs']!r}",
        f"model.dense={spec['dense']!r}",
        f"train.steps={steps}",
    )
    model = calibrated_model(
        arch="custom", convs=tuple(spec["convs"]), dense=tuple(spec["dense"]), steps=steps
    )
    path = save_model_checkpoint(tmp_path / f"{shape}.pt", model, config, (1, 8, 8))
    return path, model, config


def save_model_checkpoint(path, model, config: dict, input_shape: tuple[int, ...]):
    """Save ``model`` as a checkpoint with a 10-class model record (mean 0.3, std 0.35)."""
    c = input_shape[0]
    meta = {
        "input_shape": list(input_shape),
        "num_classes": 10,
        "mean": [0.3] * c,
        "std": [0.35] * c,
    }
    save_checkpoint(
        path,
        model=model,
        optimizer=None,
        scheduler=None,
        epoch=0,
        config=config,
        metrics={"model": meta},
    )
    return path


def assert_exported_parity(net_path, model, x: torch.Tensor) -> int:
    """Emulator on the file vs the integer branch: spikes at every layer, step and neuron, and
    the readout's v at every step. Returns the number of spikes compared."""
    ours = run_snn(model, x, record=True)
    assert_same_spikes(ours, emulate(net_path, x, model.steps), integer_layers(model)[-1].scale)
    return int(sum(s.sum() for s in ours.spikes))


def export_and_check(ckpt, model, out, x: torch.Tensor, accuracy_samples: int, **kw) -> dict:
    """Export ``ckpt`` to ``out``; the file equals the model's and the reloaded checkpoint's
    network, its spikes are the integer branch's on ``x`` (some fire), and the report's
    accuracy on ``accuracy_samples`` samples is the same for the emulator and the integer branch."""
    report = export_checkpoint(ckpt, out, **kw)
    loaded, _ = load_model(ckpt)
    assert read_network(out) == to_netx(model) == to_netx(loaded)
    assert assert_exported_parity(out, model, x) > 0, "the test must exercise spiking"
    acc = report["accuracy"]
    assert acc["equal"] and acc["emulator_acc"] == acc["integer_snn_acc"]
    assert acc["samples"] == accuracy_samples
    return report


def trained_export_lava_parity(tmp_path, *overrides: str):
    """Train a small digits run with ``overrides``, export it (no accuracy check) and compare
    three images on Lava and the emulator (the ``parity`` command's comparison); the report
    holds every layer's spikes equal. Returns it."""
    import numpy as np
    from train_helpers import digits_like_batch

    from snn2loihi.deploy.parity import run_parity
    from snn2loihi.train.trainer import train

    torch.set_num_threads(1)
    train(small_config(tmp_path, *overrides))
    out = tmp_path / "trained.net"
    report = export_checkpoint(tmp_path / "run" / "best.pt", out, accuracy=False)
    x = np.repeat(digits_like_batch(3).numpy()[:, None], report["steps"], axis=1)
    result = run_parity(out, x)
    assert result.equal, result.table()
    assert sum(ly.lava_spikes for ly in result.layers) > 0
    return result


def onnx_file(module, path, shape=(1, 1, 8, 8)):
    """Export a torch ``module`` (eval mode, input of ``shape``) to ONNX at ``path``."""
    from snn2loihi.export.onnx_export import OPSET

    torch.onnx.export(
        module.eval(), (torch.zeros(shape),), str(path), opset_version=OPSET, dynamo=False
    )
    return path
