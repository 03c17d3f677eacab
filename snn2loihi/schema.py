"""The NetX network as typed records, one per HDF5 layer group.

Shapes follow PyTorch (NetX's file convention): CHW for input/conv/flatten, (N,) for dense.
Weights, biases and neuron parameters are plain integers, exactly what Loihi runs:
weights in units of the hardware's 8-bit mantissa, bias as ``bias_mant`` (applied as
``bias_mant << 6``), threshold as ``vThMant`` (compared as ``v > vThMant << 6``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from snn2loihi.loihi import DECAY_UNITY

SUPPORTED_TYPES = ("input", "conv", "flatten", "dense")
# Layer types NetX knows but cannot run (or runs broken) in lava-dl 0.6.0.
REFUSED_TYPES = ("pool", "convT", "unpool", "average", "concat", "dense_rec", "dense_comp")


class _RecordEq:
    """Field-wise equality where numpy arrays compare by shape and value (not dtype)."""

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            a, b = getattr(self, f.name), getattr(other, f.name)
            if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
                if a is None or b is None or not np.array_equal(a, b) or a.shape != b.shape:
                    return False
            elif a != b:
                return False
        return True

    __hash__ = None  # type: ignore[assignment]


@dataclass(frozen=True)
class CubaNeuron:
    """Loihi CUBA LIF parameters of one layer (scalars shared by all its neurons).

    ``i_decay``/``v_decay``: 0..4096 (4096 = no memory). ``vth_mant``: 0..2^17-1.
    ``ref_delay`` and ``graded_spike`` are written for slayer compatibility; NetX ignores them.
    """

    i_decay: int
    v_decay: int
    vth_mant: int
    ref_delay: int = 1
    graded_spike: bool = False

    @classmethod
    def integrate_and_fire(cls, vth_mant: int) -> CubaNeuron:
        """The non-leaky IF neuron of rate-coded SNNs: ``iDecay=4096, vDecay=0``."""
        return cls(i_decay=DECAY_UNITY, v_decay=0, vth_mant=vth_mant)


@dataclass(frozen=True, eq=False)
class InputLayer(_RecordEq):
    """Input layer without a neuron: only declares the input shape (C, H, W) or (N,)."""

    shape: tuple[int, ...]
    kind: ClassVar[str] = "input"


@dataclass(frozen=True, eq=False)
class ConvLayer(_RecordEq):
    """Convolution (PyTorch cross-correlation) + CUBA neurons.

    ``weight``: int64 (Cout, Cin/groups, kH, kW). ``bias``: int64 (Cout,) or None.
    ``shape``: output (Cout, Hout, Wout). stride/padding/dilation in (H, W) order.
    """

    shape: tuple[int, int, int]
    weight: np.ndarray
    neuron: CubaNeuron
    bias: np.ndarray | None = None
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1
    kind: ClassVar[str] = "conv"


@dataclass(frozen=True, eq=False)
class FlattenLayer(_RecordEq):
    """Marks that the next dense layer reads the previous output flattened in CHW order."""

    shape: tuple[int, ...]
    kind: ClassVar[str] = "flatten"


@dataclass(frozen=True, eq=False)
class DenseLayer(_RecordEq):
    """Fully connected synapse + CUBA neurons. ``weight``: int64 (Nout, Nin); ``bias``: (Nout,)."""

    shape: tuple[int, ...]
    weight: np.ndarray
    neuron: CubaNeuron
    bias: np.ndarray | None = None
    kind: ClassVar[str] = "dense"


Layer = InputLayer | ConvLayer | FlattenLayer | DenseLayer
SynapticLayer = ConvLayer | DenseLayer


@dataclass(frozen=True, eq=False)
class NetXNetwork(_RecordEq):
    """A whole NetX network: the layer records in file order and the input shape.

    ``input_shape`` is CHW (or (N,) for a dense-first net). It comes from the input layer when the
    file has one; slayer's ``export_hdf5`` writes none, in which case it is given or inferred.
    """

    layers: tuple[Layer, ...]
    input_shape: tuple[int, ...] = field(default=())

    @property
    def synaptic_layers(self) -> list[tuple[int, SynapticLayer]]:
        """(file index, layer) of each conv/dense layer: the layers that have neurons."""
        return [
            (i, ly) for i, ly in enumerate(self.layers) if isinstance(ly, ConvLayer | DenseLayer)
        ]

    @property
    def output_shape(self) -> tuple[int, ...]:
        """Shape of the last synaptic layer's neurons."""
        return self.synaptic_layers[-1][1].shape

    @property
    def num_synaptic_layers(self) -> int:
        """Number of synapse layers = pipeline delay in steps on Lava/Loihi."""
        return len(self.synaptic_layers)


def conv_output_hw(
    in_hw: tuple[int, int],
    kernel: tuple[int, int],
    stride: tuple[int, int],
    padding: tuple[int, int],
    dilation: tuple[int, int],
) -> tuple[int, int]:
    """Output (H, W) of a convolution, as PyTorch and Lava compute it."""
    return tuple(  # type: ignore[return-value]
        (in_hw[d] + 2 * padding[d] - dilation[d] * (kernel[d] - 1) - 1) // stride[d] + 1
        for d in range(2)
    )
