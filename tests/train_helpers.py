"""Helpers for the training-stage tests: small configs, models with non-trivial BN stats, and the
spike-for-spike comparison of the integer branch with the emulator."""

from __future__ import annotations

import torch

from snn2loihi.deploy.emulator import Emulator
from snn2loihi.readout import readout_logits
from snn2loihi.train.config import resolve
from snn2loihi.train.model import build_model

# The session's shared digits run (conftest.py's ``digits_run``): one epoch of a small custom
# network at T = 3, over small_config's base.
DIGITS_RUN = [
    "train.epochs=1",
    "model.arch='custom'",
    "model.convs=['8', 's16']",
    "model.dense=[]",
    "train.steps=3",
]


def small_config(tmp_path, *overrides: str) -> dict:
    """A fast digits config writing under ``tmp_path``."""
    base = [
        "train.epochs=2",
        "train.batch_size=64",
        "train.num_threads=1",
        "output.progress=false",
        f"output.dir={str(tmp_path / 'run')!r}",
    ]
    return resolve(None, base + list(overrides))


def calibrated_model(arch: str = "digits", *, steps: int = 4, input_shape=(1, 8, 8), **kw):
    """A model whose BN statistics, affine parameters and thresholds are randomized (seeded)."""
    g = torch.Generator().manual_seed(1)
    model = build_model(
        arch,
        input_shape,
        10,
        mean=(0.3,) * input_shape[0],
        std=(0.35,) * input_shape[0],
        steps=steps,
        step_divisor=kw.pop("step_divisor", steps),
        **kw,
    )
    x = torch.randint(0, 256, (32, *input_shape), generator=g).float()
    model.train()
    with torch.no_grad():
        for _ in range(5):
            model.ann_forward(x)
        for layer in model.spiking_layers:
            c = layer.out_size
            layer.bn.weight.copy_(0.5 + torch.rand(c, generator=g))
            layer.bn.bias.copy_(0.3 * torch.randn(c, generator=g) + 0.2)
            layer.thresholds.copy_(0.6 + torch.rand(c, generator=g))
    return model.eval()


def digits_like_batch(n: int = 24, shape=(1, 8, 8), seed: int = 2) -> torch.Tensor:
    """Random uint8 images (N, C, H, W), half of the pixels dark like digits."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (n, *shape), generator=g)
    x[torch.rand(x.shape, generator=g) < 0.5] = 0
    return x.to(torch.uint8)


def emulate(net_or_path, x: torch.Tensor, steps: int):
    """The emulator on the exported network, the image repeated over T steps, u/v recorded."""
    return Emulator(net_or_path).run(
        x.unsqueeze(1).expand(-1, steps, *x.shape[1:]), record_state=True
    )


def assert_same_spikes(ours, emu, scale: float) -> None:
    """Spike for spike (every layer, step, neuron) and the readout's v at every step."""
    assert ours.spikes is not None and ours.readout_v is not None, "run_snn(record=True)"
    assert len(emu.layers) == len(ours.spikes) + 1
    for k, (mine, trace) in enumerate(zip(ours.spikes, emu.layers, strict=False)):
        assert mine.dtype == trace.spikes.dtype == torch.bool
        assert mine.shape == trace.spikes.shape, f"layer {k}"
        diff = (mine != trace.spikes).nonzero()
        assert len(diff) == 0, (
            f"layer {k}: {len(diff)} spikes differ, first at (sample, step, *neuron) "
            f"{tuple(diff[0].tolist())}"
        )
        assert torch.equal(ours.counts[k], mine.sum(1, dtype=torch.float32)), f"counts {k}"
    readout = emu.layers[-1]
    assert not readout.spikes.any()
    assert readout.v.shape == ours.readout_v.shape
    v_diff = (readout.v.to(torch.int64) != ours.readout_v.to(torch.int64)).nonzero()
    assert len(v_diff) == 0, f"readout v differs first at {tuple(v_diff[0].tolist())}"
    ours_int = torch.round(ours.logits.double() / scale).to(torch.int64)
    assert torch.equal(readout_logits(readout.v[:, -1]), ours_int)
    assert torch.equal(readout_logits(readout.v[:, -1]).argmax(1), ours.logits.argmax(1))


def layer_weights(shape, spread: float | None, g: torch.Generator) -> torch.Tensor:
    """Float32 weights of ``shape`` for the quantizer tests: normal with std ``spread``, or
    (``spread`` None) near 1 with alternate rows negated, so that the row sums set the scale."""
    if spread is None:
        w = 1 + 0.01 * torch.randn(shape, generator=g)
        w[1::2] *= -1
        return w
    return torch.randn(shape, generator=g) * spread
