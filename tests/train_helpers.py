"""Helpers for the training-stage tests: small configs and models with non-trivial BN stats."""

from __future__ import annotations

import torch

from snn2loihi.train.config import resolve
from snn2loihi.train.model import build_model


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
