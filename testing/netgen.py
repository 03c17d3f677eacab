"""Random integer NetX networks for tests, benchmarks and trying the deploy tools without training.

``random_network`` builds a network from a compact spec; ``SMALL`` and ``CIFAR`` are the two
reference networks of the Loihi/NetX notes (2x8x8 -> conv4 -> dense10 and
3x32x32 -> conv16 -> conv32/s2 -> conv64/s2 -> dense10).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import numpy as np

from snn2loihi.loihi import VTH_MAX
from snn2loihi.schema import (
    ConvLayer,
    CubaNeuron,
    DenseLayer,
    FlattenLayer,
    InputLayer,
    NetXNetwork,
    Shortcut,
    conv_output_hw,
)


@dataclass(frozen=True)
class RandomConv:
    """A conv layer of a random network (kernel/stride/padding/dilation in (H, W))."""

    channels: int
    kernel: tuple[int, int] = (3, 3)
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1


READOUT = CubaNeuron.integrate_and_fire(VTH_MAX)


@dataclass(frozen=True)
class NetSpec:
    """Input shape (CHW or (N,)), conv layers, then dense layer widths; neuron and value ranges."""

    input_shape: tuple[int, ...]
    convs: tuple[RandomConv, ...] = ()
    dense: tuple[int, ...] = (10,)
    neuron: CubaNeuron = field(
        default_factory=lambda: CubaNeuron(i_decay=1024, v_decay=128, vth_mant=80)
    )
    weight_range: tuple[int, int] = (-128, 192)
    bias_range: tuple[int, int] = (-8, 16)
    readout: bool = False  # the last layer never spikes (IF, vThMant = 2^17 - 1), as in exports


SMALL = NetSpec(input_shape=(2, 8, 8), convs=(RandomConv(4),), dense=(10,))
# non-square input, kernel (3,2), stride (2,1), padding (1,0), dilation, groups, two convs
GEOMETRY = NetSpec(
    input_shape=(4, 9, 7),
    convs=(
        RandomConv(6, kernel=(3, 2), stride=(2, 1), padding=(1, 0), groups=2),
        RandomConv(4, kernel=(2, 2), padding=(2, 1), dilation=(2, 1)),
    ),
    dense=(7,),
)
CIFAR = NetSpec(
    input_shape=(3, 32, 32),
    convs=(
        RandomConv(16, padding=(1, 1)),
        RandomConv(32, stride=(2, 2), padding=(1, 1)),
        RandomConv(64, stride=(2, 2), padding=(1, 1)),
    ),
    dense=(10,),
)


def random_network(spec: NetSpec, seed: int = 0) -> NetXNetwork:
    """Random integer weights and biases within ``spec``'s ranges; deterministic in ``seed``."""
    rng = np.random.default_rng(seed)
    lo, hi = spec.weight_range
    blo, bhi = spec.bias_range
    layers: list = [InputLayer(tuple(spec.input_shape))]
    shape = tuple(spec.input_shape)
    for c in spec.convs:
        cin = shape[0]
        w = rng.integers(lo, hi + 1, size=(c.channels, cin // c.groups, *c.kernel))
        hw = conv_output_hw(shape[1:], c.kernel, c.stride, c.padding, c.dilation)
        shape = (c.channels, *hw)
        layers.append(
            ConvLayer(
                shape=shape,
                weight=w,
                neuron=spec.neuron,
                bias=rng.integers(blo, bhi + 1, size=c.channels),
                stride=c.stride,
                padding=c.padding,
                dilation=c.dilation,
                groups=c.groups,
            )
        )
    if len(shape) == 3 and spec.dense:
        layers.append(FlattenLayer((math.prod(shape), 1, 1)))
        shape = (math.prod(shape),)
    for k, width in enumerate(spec.dense):
        w = rng.integers(lo, hi + 1, size=(width, math.prod(shape)))
        last = k == len(spec.dense) - 1
        layers.append(
            DenseLayer(
                shape=(width,),
                weight=w,
                neuron=READOUT if spec.readout and last else spec.neuron,
                bias=rng.integers(blo, bhi + 1, size=width),
            )
        )
        shape = (width,)
    return NetXNetwork(layers=tuple(layers), input_shape=tuple(spec.input_shape))


def random_residual_network(seed: int = 0, neuron: CubaNeuron | None = None) -> NetXNetwork:
    """A small random residual network (the superset of NetX): input 2x8x8 -> stem conv4 ->
    conv4 -> conv4 + identity shortcut from the stem (1x1, delay 1) -> conv6/s2 -> conv6 +
    1x1 stride-2 shortcut from the third conv (delay 1) -> dense 10. Deterministic in ``seed``."""
    rng = np.random.default_rng(seed)
    neuron = neuron or CubaNeuron(i_decay=1024, v_decay=128, vth_mant=150)
    same = RandomConv(4, padding=(1, 1))
    spec = NetSpec((2, 8, 8), (same, same, same, RandomConv(6, stride=(2, 2), padding=(1, 1)),
                   RandomConv(6, padding=(1, 1))), (10,), neuron, weight_range=(-80, 80))  # fmt: skip
    layers = list(random_network(spec, seed=seed).layers)
    identity = np.eye(4, dtype=np.int64)[:, :, None, None] * rng.integers(20, 90, size=(4, 1, 1, 1))
    down = rng.integers(-80, 80, size=(6, 4, 1, 1))
    layers[3] = dataclasses.replace(layers[3], shortcuts=(Shortcut(1, identity, delay=1),))
    layers[5] = dataclasses.replace(
        layers[5], shortcuts=(Shortcut(3, down, delay=1, stride=(2, 2)),)
    )
    return NetXNetwork(layers=tuple(layers), input_shape=(2, 8, 8))
