"""The trainable network: a plain stack of conv and dense layers that NetX can deploy.

Input is raw pixels (B, C, H, W) as floats 0..255; the input normalization is folded into the
first layer (:func:`snn2loihi.quant.fold_input_normalization`) so the chip receives uint8 pixels.
The last layer is a non-spiking dense readout whose accumulated input current gives the logits.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from snn2loihi.quant import fold_input_normalization
from snn2loihi.train.layers import SynapticLayer
from snn2loihi.train.mapping import stsu

# Conv stacks: "64" a 3x3 conv, "s64" a stride-2 conv, "p64" 2x2 average pooling folded into it.
ARCHITECTURES: dict[str, tuple[tuple[str, ...], tuple[int, ...]]] = {
    "digits": (("32", "s64"), (128,)),
    "mnist": (("32", "s64", "s64"), (256,)),
    "vgg11": (("64", "p128", "p256", "256", "p512", "512", "p512", "512"), ()),
}


@dataclass(frozen=True)
class ConvSpec:
    """One conv of the stack: output channels, stride and folded average-pool factor."""

    channels: int
    stride: int = 1
    pool: int = 1

    @classmethod
    def parse(cls, text: str) -> ConvSpec:
        """``"64"`` -> 3x3 conv; ``"s64"`` -> stride 2; ``"p64"`` -> 2x2 avg pool folded in."""
        text = str(text).strip()
        head = text[:1]
        if head in ("s", "p"):
            n = int(text[1:])
            return cls(n, stride=2) if head == "s" else cls(n, pool=2)
        return cls(int(text))


class SpikingNet(nn.Module):
    """Conv stack -> flatten -> dense stack -> dense readout, shared by both branches.

    Args:
        input_shape: (C, H, W) of the raw uint8 images.
        num_classes: readout size.
        convs: conv specs (strings for :meth:`ConvSpec.parse`).
        dense: hidden dense widths.
        mean, std: per-channel input normalization (of pixel/255), folded into layer 0.
        steps: T, the number of time steps.
        step_divisor: divides layer 0's weights and every bias per step (T for SNN2ANN, where the
            currents of the T steps sum to the ANN pre-activation; 1 for BPTT).
        threshold: initial threshold of every spiking channel.
        v_decay: Loihi vDecay of the spiking neurons (0: IF; >0: LIF, BPTT only).
    """

    def __init__(
        self,
        input_shape: tuple[int, int, int],
        num_classes: int,
        convs: tuple[str, ...],
        dense: tuple[int, ...],
        *,
        mean: tuple[float, ...],
        std: tuple[float, ...],
        steps: int,
        step_divisor: int,
        threshold: float = 1.0,
        v_decay: int = 0,
    ):
        super().__init__()
        self.input_shape = tuple(input_shape)
        self.num_classes = num_classes
        self.mean, self.std = tuple(mean), tuple(std)
        self.steps = steps
        self.step_divisor = step_divisor
        self.v_decay = v_decay
        layers: list[SynapticLayer] = []
        c, h, w = self.input_shape
        for spec in (ConvSpec.parse(s) for s in convs):
            layers.append(
                SynapticLayer(
                    "conv",
                    c,
                    spec.channels,
                    stride=spec.stride,
                    pool=spec.pool,
                    threshold=threshold,
                )
            )
            c, h, w = spec.channels, *layers[-1].output_hw((h, w))
        self.flatten_index = len(layers)
        n = c * h * w
        for width in dense:
            layers.append(SynapticLayer("dense", n, width, threshold=threshold))
            n = width
        layers.append(SynapticLayer("dense", n, num_classes, spiking=False))
        self.layers = nn.ModuleList(layers)

    def layer_affine(self, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Layer k's synapse ``(weight, bias)`` on its real input (raw pixels for layer 0)."""
        w, b = self.layers[k].affine()
        if k == 0:
            w, b = fold_input_normalization(w, b, self.mean, self.std)
        return w, b

    def ann_forward(
        self,
        x: torch.Tensor,
        counts: list[torch.Tensor] | None = None,
        mapping=stsu,
        dropout: float = 0.0,
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """ANN branch: one differentiable pass.

        ``x``: raw pixels (B, C, H, W) float. ``counts``: per spiking layer the SNN spike counts
        (B, *shape); when given, each activation is replaced by them through ``mapping``.
        Returns ``(logits (B, classes), pre-activations after BN per spiking layer)``.
        """
        h = x
        pre: list[torch.Tensor] = []
        for k, layer in enumerate(self.layers):
            if k == self.flatten_index:
                h = h.flatten(1)
            w, b = self.layer_affine(k)
            z = layer.synapse(h, w, b)
            if not layer.spiking:
                return z, pre
            a = layer.bn(z)
            pre.append(a)
            act = F.relu(a)
            if dropout > 0:
                act = F.dropout(act, dropout, self.training)
            h = act if counts is None else mapping(act, counts[k])
        raise AssertionError("the last layer is always the readout")

    def forward(
        self,
        x: torch.Tensor,
        counts: list[torch.Tensor] | None = None,
        mapping=stsu,
        dropout: float = 0.0,
        bptt: dict | None = None,
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The training forward (what DDP wraps): :meth:`ann_forward`, or with ``bptt`` (the
        keyword arguments of :func:`snn2loihi.train.bptt.bptt_forward`) the unrolled BPTT pass."""
        if bptt is not None:
            from snn2loihi.train.bptt import bptt_forward

            return bptt_forward(self, x, **bptt)
        return self.ann_forward(x, counts, mapping, dropout)

    @property
    def spiking_layers(self) -> list[SynapticLayer]:
        return [ly for ly in self.layers if ly.spiking]

    def layer_shapes(self) -> list[tuple[int, ...]]:
        """Output shape of every layer: (C, H, W) for conv, (N,) for dense."""
        shapes = []
        hw = self.input_shape[1:]
        for layer in self.layers:
            if layer.kind == "conv":
                hw = layer.output_hw(hw)
                shapes.append((layer.out_size, *hw))
            else:
                shapes.append((layer.out_size,))
        return shapes


def build_model(
    arch: str,
    input_shape: tuple[int, int, int],
    num_classes: int,
    *,
    convs: tuple[str, ...] | None = None,
    dense: tuple[int, ...] | None = None,
    **kwargs,
) -> SpikingNet:
    """A named architecture (``digits``, ``mnist``, ``vgg11``) or ``custom`` convs/dense."""
    if arch != "custom":
        if arch not in ARCHITECTURES:
            raise ValueError(f"unknown architecture {arch!r}")
        preset_convs, preset_dense = ARCHITECTURES[arch]
        convs = preset_convs if convs is None else convs
        dense = preset_dense if dense is None else dense
    return SpikingNet(input_shape, num_classes, tuple(convs or ()), tuple(dense or ()), **kwargs)
