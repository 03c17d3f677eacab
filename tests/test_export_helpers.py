"""Helpers for the export tests: checkpoints of random-init models and a briefly trained one."""

from __future__ import annotations

import torch
from train_helpers import calibrated_model, small_config

from snn2loihi.deploy.emulator import Emulator
from snn2loihi.readout import readout_logits
from snn2loihi.train.checkpoint import save_checkpoint
from snn2loihi.train.fold import integer_layers
from snn2loihi.train.snn_branch import run_integer_snn, run_snn

# Supported shapes: strided conv, average pool folded into a conv, dense only, LIF (BPTT).
SHAPES = {
    "conv-stride": dict(convs=["8", "s16"], dense=[24]),
    "pool-folded": dict(convs=["8", "p16"], dense=[]),
    "dense-only": dict(convs=[], dense=[48, 24]),
}
FAST_TRAIN = [
    "train.epochs=1",
    "model.arch='custom'",
    "model.convs=['8', 's16']",
    "model.dense=[]",
    "train.steps=3",
]


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


def trained_checkpoint(tmp_path):
    """Train a small digits model for one epoch (about 2 s); return its best.pt path."""
    from snn2loihi.train.trainer import train

    torch.set_num_threads(1)
    train(small_config(tmp_path, *FAST_TRAIN))
    return tmp_path / "run" / "best.pt"


def integer_branch_spikes(model, x: torch.Tensor) -> list[torch.Tensor]:
    """Per spiking layer, the integer branch's spikes (N, T, *shape) bool."""
    layers = integer_layers(model)
    counts = [
        run_integer_snn(layers, x, t, model.flatten_index).counts for t in range(1, model.steps + 1)
    ]
    out = []
    for k in range(len(counts[0])):
        per_t = [counts[0][k]] + [counts[t][k] - counts[t - 1][k] for t in range(1, model.steps)]
        out.append(torch.stack(per_t, 1).to(torch.bool))
    return out


def assert_exported_parity(net_path, model, x: torch.Tensor) -> int:
    """Emulator on the file vs the integer branch: spikes at every layer and step, readout v."""
    steps = model.steps
    emu = Emulator(net_path).run(x.unsqueeze(1).expand(-1, steps, *x.shape[1:]), record_state=True)
    ours = integer_branch_spikes(model, x)
    assert len(emu.layers) == len(ours) + 1
    for k, spikes in enumerate(ours):
        assert torch.equal(emu.layers[k].spikes, spikes), f"layer {k} spikes differ"
    readout = emu.layers[-1]
    assert not readout.spikes.any()
    logits = run_snn(model, x).logits
    scale = integer_layers(model)[-1].scale
    emu_logits = readout_logits(readout.v[:, -1])
    assert torch.equal(emu_logits, torch.round(logits.double() / scale).to(torch.int64))
    assert torch.equal(emu_logits.argmax(1), logits.argmax(1))
    return int(sum(s.sum() for s in ours))
