"""The trained model as a NetX network: the records export writes with ``write_network``.

Every conv/dense layer uses Loihi's IF neuron (``iDecay=4096``; ``vDecay=0`` unless a BPTT LIF
model); the readout layer has ``vThMant = 2^17 - 1``, which its ``v`` never reaches: the
prediction is ``argmax`` of the readout layer's ``v >> 6`` after the T-th step
(:mod:`snn2loihi.readout`) (record it with the
emulator's ``record_state=True``), equal to the integer SNN branch's logits / scale.
"""

from __future__ import annotations

import math

import torch

from snn2loihi.schema import (
    ConvLayer,
    DenseLayer,
    FlattenLayer,
    InputLayer,
    NetXNetwork,
    Shortcut,
)
from snn2loihi.train.fold import IntegerLayer, integer_layers
from snn2loihi.train.model import SpikingNet


def netx_records(
    layers: list[IntegerLayer],
    input_shape: tuple[int, ...],
    shapes: list[tuple[int, ...]],
    steps: int | None = None,
) -> NetXNetwork:
    """Records for integer layers with output ``shapes`` (CHW for conv, (N,) for dense);
    ``steps``: the time steps T the network was trained for (recorded in the file).
    A residual conv's shortcut reads conv ``source``, file layer ``source + 1`` (the convs
    follow the input layer), delayed ``k - source - 1`` steps so both paths arrive together
    (docs/netx-format.md, the residual superset)."""
    records: list = [InputLayer(tuple(input_shape))]
    prev = tuple(input_shape)
    for ly, shape in zip(layers, shapes, strict=True):
        weight = ly.kernel().numpy().astype("int64")
        bias = ly.bias.numpy().astype("int64")
        if ly.kind == "conv":
            shortcuts = ()
            if ly.shortcut is not None:
                sc, k = ly.shortcut, len(records) - 1  # this conv's model index
                w_sc = sc.weight.numpy().astype("int64")
                stride = (sc.stride, sc.stride)
                shortcuts = (Shortcut(sc.source + 1, w_sc, k - sc.source - 1, stride),)
            records.append(
                ConvLayer(
                    shape=tuple(shape),
                    weight=weight,
                    neuron=ly.neuron,
                    bias=bias,
                    stride=(ly.stride, ly.stride),
                    padding=(ly.padding, ly.padding),
                    shortcuts=shortcuts,
                )
            )
        else:
            if len(prev) == 3:
                records.append(FlattenLayer((math.prod(prev), 1, 1)))
            records.append(
                DenseLayer(shape=tuple(shape), weight=weight, neuron=ly.neuron, bias=bias)
            )
        prev = tuple(shape)
    return NetXNetwork(layers=tuple(records), input_shape=tuple(input_shape), steps=steps)


@torch.no_grad()
def to_netx(model: SpikingNet, weight_bits: int = 8) -> NetXNetwork:
    """The deployable NetX network of ``model`` (eval-mode BN statistics, current thresholds)."""
    return netx_records(
        integer_layers(model, weight_bits),
        model.input_shape,
        model.layer_shapes(),
        steps=model.steps,
    )
