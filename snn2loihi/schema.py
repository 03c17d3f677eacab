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

SUPPORTED_TYPES = ("input", "conv", "flatten", "dense", "dense_rec")
# Layer types NetX knows but cannot run (or runs broken) in lava-dl 0.6.0.
REFUSED_TYPES = ("pool", "convT", "unpool", "average", "concat", "dense_comp")
CUBA_TYPES = ("CUBA", "LOIHI")  # both build Lava's LIF (LIFReset with a reset interval)
SDNN_TYPE = "SDNN"
NETX_DEFAULT_VTH = 1 << 17  # NetX's default neuron writes ``1 << 18 - 1``, i.e. 1 << 17
MAX_DELAY = 62  # NetX clamps synaptic delays to 0..62
RESIDUAL_TYPE = "concat"  # a residual layer's file type: lava-dl's NetX refuses it, never runs it
FORMAT_ATTR = "snn2loihi_format"  # root attribute: 2 = the residual superset (absent: plain NetX)
RESIDUAL_FORMAT = 2


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
    type_name: str = "CUBA"  # "CUBA" or "LOIHI" (lava-dl's slayer): the same model in NetX
    netx_default: bool = False  # the file has no neuron group: NetX's default neuron

    kind: ClassVar[str] = "CUBA"

    @classmethod
    def integrate_and_fire(cls, vth_mant: int) -> CubaNeuron:
        """The non-leaky IF neuron of rate-coded SNNs: ``iDecay=4096, vDecay=0``."""
        return cls(i_decay=DECAY_UNITY, v_decay=0, vth_mant=vth_mant)

    @classmethod
    def netx_default_neuron(cls) -> CubaNeuron:
        """What NetX builds for a dense layer without a neuron group: a current integrator
        (``iDecay=0, vDecay=4096``) with ``vThMant = 1 << 17`` (one above the 17-bit range;
        the simulator runs it)."""
        return cls(i_decay=0, v_decay=DECAY_UNITY, vth_mant=NETX_DEFAULT_VTH, netx_default=True)


@dataclass(frozen=True)
class SigmaDeltaNeuron:
    """Lava's sigma-delta neuron (NetX type ``SDNN``), fixed point (``lava/proc/sdn``).

    ``vth_mant``: threshold mantissa, compared as ``|delta| >= vth_mant << 12``. A conv/dense
    layer is ``SigmaDelta`` (ReLU of the running sum plus ``bias << 12``, sends changes ``>> 6``)
    or, with ``sigma_output``, ``Sigma`` (sends its running sum); an input layer is ``Delta``.
    ``activation`` is written by slayer; NetX ignores it (always ReLU).
    """

    vth_mant: int
    sigma_output: bool = False
    activation: str = "relu"

    kind: ClassVar[str] = SDNN_TYPE


Neuron = CubaNeuron | SigmaDeltaNeuron


@dataclass(frozen=True, eq=False)
class InputLayer(_RecordEq):
    """Input layer: declares the input shape (C, H, W) or (N,), and may have a neuron.

    With a ``neuron`` (lava-dl's slayer ``Input`` block) NetX builds a neuron-only layer whose
    input Lava's CPU simulator can only drive through its bias (CUBA) or by skipping the layer.
    ``weight``/``bias`` are slayer's input transform: NetX stores them and never applies them.
    """

    shape: tuple[int, ...]
    neuron: Neuron | None = None
    weight: int | None = None
    bias: int | None = None
    kind: ClassVar[str] = "input"


@dataclass(frozen=True, eq=False)
class Shortcut(_RecordEq):
    """A residual synapse: the spikes of the earlier conv layer ``source`` (its file index)
    through a convolution into the neurons of the layer that holds it, summed with the
    layer's own synaptic input (Lava sums two synapses into one ``a_in``).

    ``weight``: (Cout, Csource/groups, kH, kW) (identity shortcut: a 1x1 kernel);
    stride/padding/dilation in (H, W). ``delay``: steps the spikes wait on top of the
    synapse's one step, so that both paths reach the neurons in the same step
    (the layers between the source and the target, see docs/netx-format.md).
    """

    source: int
    weight: np.ndarray
    delay: int
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1


@dataclass(frozen=True, eq=False)
class ConvLayer(_RecordEq):
    """Convolution (PyTorch cross-correlation) + CUBA neurons.

    ``weight``: int64 (Cout, Cin/groups, kH, kW). ``bias``: int64 (Cout,) or None.
    ``shape``: output (Cout, Hout, Wout). stride/padding/dilation in (H, W) order.
    ``shortcuts``: residual synapses into the same neurons (the superset of NetX; a layer
    with shortcuts is written as type ``concat``, which lava-dl's NetX refuses).
    """

    shape: tuple[int, int, int]
    weight: np.ndarray
    neuron: Neuron
    bias: np.ndarray | None = None
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1
    shortcuts: tuple[Shortcut, ...] = ()
    kind: ClassVar[str] = "conv"


@dataclass(frozen=True, eq=False)
class FlattenLayer(_RecordEq):
    """Marks that the next dense layer reads the previous output flattened in CHW order."""

    shape: tuple[int, ...]
    kind: ClassVar[str] = "flatten"


@dataclass(frozen=True, eq=False)
class DenseLayer(_RecordEq):
    """Fully connected synapse + neurons. ``weight``: int64 (Nout, Nin); ``bias``: (Nout,).

    ``delay``: synaptic delays in steps on top of the synapse's one step, as the file holds
    them (a scalar, (Nout,), (Nin,) or (Nout, Nin)); NetX clamps them to 0..62. None: no delays.
    """

    shape: tuple[int, ...]
    weight: np.ndarray
    neuron: Neuron
    bias: np.ndarray | None = None
    delay: np.ndarray | None = None
    kind: ClassVar[str] = "dense"

    def delay_matrix(self) -> np.ndarray | None:
        """Delays (Nout, Nin) int64 as NetX maps them (clamped to 0..62, a 1-D delay matched to
        the rows first, then to the columns), or None without delays."""
        if self.delay is None:
            return None
        d = np.asarray(self.delay, dtype=np.int64)
        if d.max(initial=0) > MAX_DELAY:
            d = np.clip(d, 0, MAX_DELAY)
        n_out, n_in = self.weight.shape
        if d.size == 1:
            return np.full((n_out, n_in), int(d.reshape(-1)[0]), dtype=np.int64)
        if d.ndim == 1:
            if d.size == n_out:
                return np.repeat(d.reshape(-1, 1), n_in, axis=1)
            return np.repeat(d.reshape(1, -1), n_out, axis=0)
        return d.reshape(n_out, n_in)


@dataclass(frozen=True, eq=False)
class RecurrentDenseLayer(DenseLayer):
    """Dense layer whose neurons also feed themselves back: ``weight_rec`` (Nout, Nout)."""

    weight_rec: np.ndarray | None = None
    kind: ClassVar[str] = "dense_rec"


Layer = InputLayer | ConvLayer | FlattenLayer | DenseLayer | RecurrentDenseLayer
SynapticLayer = ConvLayer | DenseLayer


@dataclass(frozen=True, eq=False)
class NetXNetwork(_RecordEq):
    """A whole NetX network: the layer records in file order and the input shape.

    ``input_shape`` is CHW (or (N,) for a dense-first net). It comes from the input layer when the
    file has one; slayer's ``export_hdf5`` writes none, in which case it is given or inferred.
    ``steps``: the time steps T per sample the network was trained for (the file's root attribute
    ``steps``, written by snn2loihi's export; None when the file does not say).
    """

    layers: tuple[Layer, ...]
    input_shape: tuple[int, ...] = field(default=())
    steps: int | None = None

    @property
    def synaptic_layers(self) -> list[tuple[int, SynapticLayer]]:
        """(file index, layer) of each conv/dense layer: the layers that have neurons."""
        return [
            (i, ly) for i, ly in enumerate(self.layers) if isinstance(ly, ConvLayer | DenseLayer)
        ]

    @property
    def input_neuron(self) -> Neuron | None:
        """The input layer's neuron (lava-dl's slayer ``Input`` block), or None."""
        first = self.layers[0] if self.layers else None
        return first.neuron if isinstance(first, InputLayer) else None

    @property
    def plain(self) -> bool:
        """True for the networks snn2loihi exports: CUBA neurons, no input neuron, no delays,
        no recurrence. Only these run in the per-sample convention (see the emulator)."""
        return self.input_neuron is None and all(
            isinstance(ly.neuron, CubaNeuron)
            and not (isinstance(ly, DenseLayer) and ly.delay is not None)
            and not isinstance(ly, RecurrentDenseLayer)
            for _, ly in self.synaptic_layers
        )

    @property
    def residual(self) -> bool:
        """True when some layer has shortcuts: the file is the superset of NetX."""
        return any(isinstance(ly, ConvLayer) and ly.shortcuts for ly in self.layers)

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
