"""The ANN branch as a standard ONNX graph (BatchNorm folded, ReLU activations, opset 17).

Graph input ``image``: float (N, C, H, W), the normalized image ``(pixel / 255 - mean) / std``
(batch dimension dynamic). Output ``logits``: (N, classes), the ANN branch's logits. The first
node maps the normalized image back to pixels (``x * 255 std + 255 mean``) so the first layer
runs with training's folded input normalization, whose zero padding is pixel 0 as on the chip.
"""

from __future__ import annotations

import io
import logging
import warnings
from pathlib import Path

import torch
from torch import nn

from snn2loihi.atomic import atomic_path
from snn2loihi.export.errors import NotDeployableError

log = logging.getLogger(__name__)

OPSET = 17


class AnnGraph(nn.Module):
    """Plain conv/linear + ReLU stack equal to ``model.ann_forward`` in eval mode (BN folded)."""

    def __init__(self, model):
        super().__init__()
        from snn2loihi.train.fold import fold_batchnorm

        if len(getattr(model, "shortcuts", ())):
            raise NotDeployableError(
                "the ONNX export writes plain conv/dense stacks; this model has residual "
                f"shortcuts (layers {', '.join(sorted(model.shortcuts))}): export without --onnx"
            )
        c = len(model.mean)
        std = torch.tensor(model.std, dtype=torch.float32).view(1, c, 1, 1)
        mean = torch.tensor(model.mean, dtype=torch.float32).view(1, c, 1, 1)
        self.register_buffer("pixel_gain", 255.0 * std)
        self.register_buffer("pixel_offset", 255.0 * mean)
        self.flatten_index = model.flatten_index
        mods = []
        with torch.no_grad():
            for k, layer in enumerate(model.layers):
                w, b = model.layer_affine(k)
                if layer.spiking:
                    w, b = fold_batchnorm(w, b, layer.bn)
                if layer.kind == "conv":
                    stride, padding = layer.geometry
                    m = nn.Conv2d(w.shape[1], w.shape[0], w.shape[2:], stride, padding)
                else:
                    m = nn.Linear(w.shape[1], w.shape[0])
                m.weight.copy_(w.float())
                m.bias.copy_(b.float())
                mods.append(m)
        self.synapses = nn.ModuleList(mods)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        h = image * self.pixel_gain + self.pixel_offset
        last = len(self.synapses) - 1
        for k, syn in enumerate(self.synapses):
            if k == self.flatten_index:
                h = torch.flatten(h, 1)
            h = syn(h)
            if k < last:
                h = torch.relu(h)
        return h


def normalize_images(model, x: torch.Tensor) -> torch.Tensor:
    """uint8 pixels (N, C, H, W) -> the graph's normalized float input."""
    c = len(model.mean)
    mean = torch.tensor(model.mean).view(1, c, 1, 1)
    std = torch.tensor(model.std).view(1, c, 1, 1)
    return ((x.float() / 255.0 - mean) / std).float()


def export_onnx(model, path: str | Path, *, overwrite: bool = False) -> Path:
    """Write ``model``'s ANN branch to ``path`` as ONNX (atomic); return the path."""
    path = Path(path)
    graph = AnnGraph(model).eval()
    example = torch.zeros(1, *model.input_shape)
    buf = io.BytesIO()
    with warnings.catch_warnings():  # the TorchScript exporter is deprecated, not broken
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            graph,
            (example,),
            buf,
            input_names=["image"],
            output_names=["logits"],
            dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}},
            opset_version=OPSET,
            dynamo=False,
        )
    with atomic_path(path, overwrite=overwrite) as tmp:
        tmp.write_bytes(buf.getvalue())
    log.info("wrote ONNX %s", path)
    return path
