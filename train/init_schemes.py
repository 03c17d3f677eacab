"""How a fresh network's weights start (``model.whiten``, ``model.identity_init``).

Two initialisations from the fast CIFAR-10 ANN records (Jordan, arXiv 2404.00498, airbench;
hlb-cifar10), which change where training starts, never what deploys:

- **whitening** of conv layer 0: its filters become the eigenvectors of the covariance of the
  training images' ``k x k`` patches (normalized pixels, as layer 0 reads them), each scaled by
  ``1 / sqrt(eigenvalue + eps)``, and their negations, so the ReLU/IF that follows keeps both
  signs; the largest eigenvalues first, as many as half the layer's channels hold (the rest keep
  their default initialisation);
- **identity** (Dirac) initialisation of every later conv: the first ``min(in, out)`` filters
  pass their input channel through (centre tap 1), the others keep the default.
"""

from __future__ import annotations

import logging

import torch
from torch import nn

from snn2loihi.train.model import SpikingNet

log = logging.getLogger(__name__)

WHITEN_IMAGES = 5000  # training images (evenly spaced) whose patches estimate the covariance
WHITEN_EPS = 5e-4  # added to each eigenvalue (normalized pixel units squared)


def patch_covariance(images: torch.Tensor, model: SpikingNet, kernel: int) -> torch.Tensor:
    """Uncentred covariance (D, D), D = C*kernel^2, of every ``kernel x kernel`` patch of
    ``images`` (uint8 (N, C, H, W)) after the model's input normalization."""
    mean = torch.tensor(model.mean, dtype=torch.float64).view(1, -1, 1, 1)
    std = torch.tensor(model.std, dtype=torch.float64).view(1, -1, 1, 1)
    total = None
    count = 0
    for chunk in torch.split(images, 500):
        x = (chunk.to(torch.float64) / 255 - mean) / std
        cols = nn.functional.unfold(x, kernel).transpose(1, 2).reshape(-1, x.shape[1] * kernel**2)
        part = cols.T @ cols
        total = part if total is None else total + part
        count += cols.shape[0]
    return total / count


def whiten_first_conv(model: SpikingNet, images: torch.Tensor) -> int:
    """Set conv layer 0's first filters to the whitening of ``images``' patches; the number of
    filters set (0 when layer 0 is not a conv)."""
    layer = model.layers[0]
    if layer.kind != "conv":
        return 0
    out, c, k, _ = layer.weight.shape
    # evenly spaced over the split: files sorted by class give every class its share
    pick = torch.linspace(0, len(images) - 1, min(WHITEN_IMAGES, len(images))).round().long()
    cov = patch_covariance(images[pick.to(images.device)].cpu(), model, k)
    values, vectors = torch.linalg.eigh(cov)  # ascending
    n = min(out // 2, values.numel())
    order = torch.argsort(values, descending=True)[:n]
    filters = (vectors[:, order] / torch.sqrt(values[order] + WHITEN_EPS)).T.reshape(n, c, k, k)
    with torch.no_grad():
        w = layer.weight
        w[:n] = filters.to(w)
        w[n : 2 * n] = -filters.to(w)
    return 2 * n


def identity_init(model: SpikingNet) -> int:
    """Dirac-initialise the first ``min(in, out)`` filters of every conv after layer 0; the
    number of layers changed."""
    changed = 0
    for layer in list(model.layers)[1 : model.flatten_index]:
        w = layer.weight
        with torch.no_grad():
            nn.init.dirac_(w[: w.shape[1]] if w.shape[0] >= w.shape[1] else w)
        changed += 1
    return changed


def initialise(model: SpikingNet, images: torch.Tensor, whiten: bool, identity: bool) -> None:
    """Apply the configured initialisations to a fresh ``model`` (``images``: the training
    split's uint8 (N, C, H, W))."""
    if whiten:
        n = whiten_first_conv(model, images)
        log.info("model.whiten: %d filters of layer 0 whiten its input patches", n)
    if identity:
        n = identity_init(model)
        log.info("model.identity_init: %d conv layers start as identity", n)
