"""From trainable layers to per-step SNN layers: BatchNorm folding and the integer grid.

``step_layers`` gives the float SNN (BN folded from running statistics, bias spread over the
steps); ``integer_layers`` puts it on the export's integer grid (:mod:`snn2loihi.quant`). The
integer SNN branch, :func:`snn2loihi.train.netx_model.to_netx` and therefore the emulator all
read the same :class:`IntegerLayer` list.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from snn2loihi import quant
from snn2loihi.errors import InputDataError
from snn2loihi.loihi import DECAY_UNITY, GRADED_INPUT_MAX, VTH_MAX
from snn2loihi.schema import CubaNeuron
from snn2loihi.synapse import expand_blocks
from snn2loihi.train.model import SpikingNet


def fold_batchnorm(
    weight: torch.Tensor,
    bias: torch.Tensor,
    bn: nn.modules.batchnorm._BatchNorm,
    weight_divisor: int = 1,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Fold BN's running statistics into a synapse: ``BN(W.x + b) == W'.x + b'``.

    ``weight``: (Cout, ...); ``bias``: (Cout,). ``a = gamma / sqrt(var + eps)``,
    ``W' = W * a`` per output channel, ``b' = a * (b - mean) + beta``. ``weight_divisor``, a
    power of two (``pool^2``), folds ``W / weight_divisor`` in the same single pass: the
    product of ``W`` and the exactly divided ``a`` is, bit for bit, the product of the exactly
    divided ``W`` and ``a`` (one rounding of the same real value; float32's subnormal range
    aside).
    """
    row_scale, b = batchnorm_affine(bias, bn, weight_divisor)
    return scale_rows(weight, row_scale), b


def batchnorm_affine(
    bias: torch.Tensor, bn: nn.modules.batchnorm._BatchNorm, weight_divisor: int = 1
) -> tuple[torch.Tensor, torch.Tensor]:
    """What :func:`fold_batchnorm` multiplies each output row of the weights by, ``a /
    weight_divisor`` with ``a = gamma / sqrt(var + eps)`` (Cout,), and the folded bias
    ``a * (bias - mean) + beta`` (Cout,)."""
    a = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    row_scale = a if weight_divisor == 1 else a / weight_divisor
    return row_scale, a * (bias - bn.running_mean) + bn.bias


def scale_rows(weight: torch.Tensor, row_scale: torch.Tensor) -> torch.Tensor:
    """``weight`` (Cout, ...) with output row c times ``row_scale[c]``."""
    return weight * row_scale.view((-1,) + (1,) * (weight.ndim - 1))


@dataclass
class StepLayer:
    """One layer of the float SNN: what it adds to ``v`` at every step.

    ``weight`` (Cout, ...) and ``bias`` (Cout,) are per step (float units); ``thresholds``
    (Cout,) per channel, None for the readout. ``kind``/``stride``/``padding`` as run (pooling
    folded in, :attr:`SynapticLayer.geometry`); the kernel as run is ``weight``, or with
    ``pool`` > 1 its ``pool x pool`` block expansion (``weight`` is then the compact kernel).
    ``row_scale`` (Cout,): where not None, the weights are ``weight * row_scale`` per output
    row, a product left to the quantizer (:func:`step_layer` ``fold_weight=False``).
    """

    kind: str
    weight: torch.Tensor
    bias: torch.Tensor
    thresholds: torch.Tensor | None
    stride: int = 1
    padding: int = 0
    pool: int = 1
    row_scale: torch.Tensor | None = None
    shortcut: StepShortcut | None = None

    @property
    def readout(self) -> bool:
        return self.thresholds is None


@dataclass
class StepShortcut:
    """A residual layer's shortcut in the float SNN: ``weight`` (Cout, Csource, 1, 1) in the
    layer's units (BN's factor folded, or left in the layer's ``row_scale``), reading the
    spikes of layer ``source`` with ``stride``."""

    source: int
    weight: torch.Tensor
    stride: int


@torch.no_grad()
def step_layer(
    model: SpikingNet, k: int, compact: bool = False, fold_weight: bool = True
) -> StepLayer:
    """Layer ``k`` of the float SNN of ``model``: BN folded, layer 0's weights and all biases /
    step_divisor.

    ``compact``: a pooling conv keeps its compact kernel (``StepLayer.pool`` > 1); every value
    equals the expanded kernel's, whose blocks repeat it. There, for a spiking layer after
    layer 0, ``weight / pool^2`` and BN fold in one product (:func:`fold_batchnorm`
    ``weight_divisor``), and with ``fold_weight=False`` (float32 weights) that product is left
    to the quantizer: ``weight`` is the layer's own and ``row_scale`` BN's factor / pool^2.
    """
    layer = model.layers[k]
    d = float(model.step_divisor)
    row_scale = None
    if model.shortcut(k) is not None:
        return _residual_step_layer(model, k, fold_weight)
    if layer.spiking and compact and k > 0:  # the compact kernel's / pool^2 folded with BN
        row_scale, b = batchnorm_affine(layer.bias, layer.bn, layer.repeat)
        w = layer.weight
        if fold_weight or w.dtype != torch.float32 or row_scale.dtype != torch.float32:
            w, row_scale = scale_rows(w, row_scale), None
    else:
        w, b = model.layer_affine(k, compact=compact)
        if layer.spiking:
            w, b = fold_batchnorm(w, b, layer.bn)
    if k == 0:
        w = w / d
    stride, padding = layer.geometry if layer.kind == "conv" else (1, 0)
    th = layer.thresholds.clone() if layer.spiking else None
    pool = layer.pool if compact else 1
    return StepLayer(layer.kind, w.float(), (b / d).float(), th, stride, padding, pool, row_scale)


def _residual_step_layer(model: SpikingNet, k: int, fold_weight: bool) -> StepLayer:
    """A residual conv (k >= 2, no pooling) of the float SNN: one BN over the sum of its own
    synapse and the shortcut, so BN's factor scales both kernels (with ``fold_weight=False``
    and float32 weights it is left in ``row_scale`` for the quantizer, as for other layers)."""
    layer, sc = model.layers[k], model.shortcut(k)
    row_scale, b = batchnorm_affine(layer.bias, layer.bn)
    w, w_sc = layer.weight, sc.kernel(layer.weight)
    if fold_weight or w.dtype != torch.float32 or row_scale.dtype != torch.float32:
        w, w_sc, row_scale = scale_rows(w, row_scale), scale_rows(w_sc, row_scale), None
    stride, padding = layer.geometry
    d = float(model.step_divisor)
    shortcut = StepShortcut(sc.source, w_sc.float(), sc.stride)
    th = layer.thresholds.clone()
    return StepLayer(
        "conv", w.float(), (b / d).float(), th, stride, padding, 1, row_scale, shortcut
    )


def step_layers(model: SpikingNet, compact: bool = False) -> list[StepLayer]:
    """The float SNN of ``model``: :func:`step_layer` of every layer."""
    return [step_layer(model, k, compact) for k in range(len(model.layers))]


@dataclass
class IntegerLayer:
    """One layer on Loihi's integer grid (exactly what export writes).

    ``weight`` (Cout, Cin, kH, kW) or (Nout, Nin), int8 (int16 for 9-bit weights:
    :func:`~snn2loihi.quant.weight_dtype`); ``bias`` int64 (Cout,) = per-step
    ``bias_mant``; ``neuron`` holds ``vThMant``; ``scale`` is float units per integer unit;
    ``input_max`` 255 for the graded first layer, else 1. For conv, ``stride``/``padding`` are
    the conv as run (both H and W): with pool p folded in, ``p * stride`` and ``p * padding`` of
    the spec, and the kernel as run is :meth:`kernel` (``p * kernel``): ``weight`` holds the
    compact kernel and ``pool`` = p (1 without pooling), so training never builds the p^2 times
    larger block kernel; export writes :meth:`kernel`.
    """

    kind: str
    weight: torch.Tensor
    bias: torch.Tensor
    neuron: CubaNeuron
    scale: float
    input_max: int
    readout: bool
    stride: int = 1
    padding: int = 0
    pool: int = 1
    shortcut: StepShortcut | None = None  # integer weights (Cout, Csource, 1, 1)

    def kernel(self) -> torch.Tensor:
        """The integer weights as run: ``weight`` with each value repeated in a p x p block."""
        return expand_blocks(self.weight, self.pool)


@torch.no_grad()
def integer_layers(model: SpikingNet, weight_bits: int = quant.DEFAULT_WEIGHT_BITS):
    """Quantize ``step_layers(model)``: per-channel thresholds folded, per-layer scale chosen.

    Spiking layers get ``vThMant = floor(th / s)``; the readout gets ``vThMant = 2^17 - 1`` and a
    scale for which its ``v`` can neither reach that nor saturate within ``model.steps`` steps.
    """
    return [integer_layer(model, k, weight_bits) for k in range(len(model.layers))]


@torch.no_grad()
def integer_layer(
    model: SpikingNet, k: int, weight_bits: int = quant.DEFAULT_WEIGHT_BITS
) -> IntegerLayer:
    """Layer ``k`` of :func:`integer_layers` (one layer's float temporaries at a time)."""
    sl = step_layer(model, k, compact=True, fold_weight=False)
    for name, value in (("weight", sl.weight), ("bias", sl.bias)):
        if value is not None and not torch.isfinite(value).all():  # NaN would cast to -2^63
            raise InputDataError(
                f"layer {k + 1}: the folded {name} is not finite (NaN/inf weights, or an input "
                "normalization --mean/--std too large to represent); nothing to quantize"
            )
    input_max = GRADED_INPUT_MAX if k == 0 else 1
    weight = sl.weight
    if sl.shortcut is not None:  # one grid for both synapses: their currents add in one v
        n = weight.shape[0]
        weight = torch.cat([weight.reshape(n, -1), sl.shortcut.weight.reshape(n, -1)], 1)
    weight, bias, th, scale = quant.quantize_layer(
        weight,
        sl.bias,
        sl.thresholds,
        weight_bits=weight_bits,
        input_max=input_max,
        readout_steps=model.steps if sl.readout else None,
        repeat=sl.pool**2,
        row_scale=sl.row_scale,
    )
    shortcut = None
    if sl.shortcut is not None:
        own = sl.weight[0].numel()
        sc_weight = weight[:, own:].reshape(sl.shortcut.weight.shape)
        weight = weight[:, :own].reshape(sl.weight.shape)
        shortcut = StepShortcut(sl.shortcut.source, sc_weight.cpu(), sl.shortcut.stride)
    if sl.readout:
        neuron = CubaNeuron.integrate_and_fire(VTH_MAX)
    else:
        vth = quant.quantize_threshold(th, scale)
        neuron = CubaNeuron(i_decay=DECAY_UNITY, v_decay=model.v_decay, vth_mant=vth)
    return IntegerLayer(
        sl.kind,
        weight.cpu(),
        bias.cpu(),
        neuron,
        scale,
        input_max,
        sl.readout,
        sl.stride,
        sl.padding,
        sl.pool,
        shortcut,
    )
