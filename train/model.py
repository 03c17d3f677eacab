"""The trainable network: a plain stack of conv and dense layers that NetX can deploy.

Input is raw pixels (B, C, H, W) as floats 0..255; the input normalization is folded into the
first layer (:func:`snn2loihi.quant.fold_input_normalization`) so the chip receives uint8 pixels.
The last layer is a non-spiking dense readout whose accumulated input current gives the logits.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from snn2loihi.errors import ConfigError
from snn2loihi.loihi import CONV_PARAM_MAX
from snn2loihi.quant import fold_input_normalization
from snn2loihi.synapse import expand_blocks
from snn2loihi.train.layers import SynapticLayer, check_geometry, conv_out_size
from snn2loihi.train.mapping import relu_mapped, stsu

log = logging.getLogger(__name__)

# ``(k, a, counts_k)``: a spiking layer's index, BN output (B, *shape) and spike counts (or None)
LayerHook = Callable[[int, torch.Tensor, torch.Tensor | None], None]
# ``(k, a) -> h``: spiking layer k's output (what the next layer reads) for its BN output ``a``
Activation = Callable[[int, torch.Tensor], torch.Tensor]

# Conv stacks: "64" a 3x3 conv, "s64" a stride-2 conv, "p64" 2x2 average pooling folded into it
# (extended forms such as "64k5s2pad0p2" and tables: see ConvSpec and docs/training.md).
ARCHITECTURES: dict[str, tuple[tuple[str, ...], tuple[int, ...]]] = {
    "digits": (("32", "s64"), (128,)),
    "mnist": (("32", "s64", "s64"), (256,)),
    "vgg11": (("64", "p128", "p256", "256", "p512", "512", "p512", "512"), ()),
    # Fast CIFAR recipe (configs/cifar_fast.toml): 6 convs, 2x2 average pools folded into the
    # 2nd, 4th and 6th (32 -> 16 -> 8 -> 4), a dense 512 (with BN, so the readout sees 512 spike
    # counts, not 8192: Adam's steps on a readout fed by 8192 counts overshoot), readout.
    # No max pooling, no residual adds.
    "cifar_fast": (("64", "128p2", "128", "256p2", "256", "512p2"), (512,)),
    # The same network at half width (about 4x fewer operations): the CPU smoke of the recipe.
    "cifar_fast_half": (("32", "64p2", "64", "128p2", "128", "256p2"), (256,)),
    # Residual networks (docs/training.md): a stem conv, then blocks of two convs whose second
    # ("r") also receives the block's input through a shortcut (identity, or 1x1 stride 2 where
    # the block halves the size and widens).
    "resnet_digits": (("16", "16", "16r", "s32", "32r"), (64,)),
    "resnet_cifar": (("64", "64", "64r", "s128", "128r", "s256", "256r", "s512", "512r"), (256,)),
}

CONV_SPEC_FORMS = (
    "'64' (3x3 conv), 's64' (stride 2), 'p64' (2x2 avg pool folded in), "
    "'64k5s2pad0p2' (channels, then any of k<kernel> s<stride> pad<padding> p<pool>), "
    "a trailing 'r' ('64r', 's64r': the conv closes a residual block of two convs) or "
    "{channels=64, kernel=5, stride=2, padding=2, pool=2, residual=true}"
)
_OPTION = re.compile(r"(pad|k|s|p)(\d+)")
_TABLE_KEYS = ("channels", "kernel", "stride", "padding", "pool", "residual")


class ConvFitError(ConfigError):
    """A conv of ``model.convs`` that does not fit its input; ``index`` is its position."""

    def __init__(self, message: str, index: int):
        super().__init__(message)
        self.index = index


@dataclass(frozen=True)
class ConvSpec:
    """One conv of the stack, in units of the pooled input.

    ``channels`` out; square ``kernel``; ``stride``; symmetric zero ``padding`` (None ->
    ``kernel // 2``); ``pool``: a ``pool x pool`` average pool with stride ``pool`` before the
    conv, folded into it. ``residual``: the conv closes a residual block of two convs, its
    neurons also receive the block's input (the spikes of the conv two before) through a
    shortcut (:class:`ResidualShortcut`). ``legacy`` marks the short form ``"p64"``, which keeps its historical
    behaviour on input sizes where the fold is not exact (a warning instead of an error).
    """

    channels: int
    stride: int = 1
    pool: int = 1
    kernel: int = 3
    padding: int | None = None
    residual: bool = False
    legacy: bool = field(default=False, compare=False, repr=False)

    def __post_init__(self):
        c = self.channels
        if isinstance(c, bool) or not isinstance(c, int) or c < 1:
            raise ValueError(f"channels = {c!r} must be an integer >= 1")
        check_geometry("conv", self.kernel, self.stride, self.padding, self.pool)
        if not isinstance(self.residual, bool):
            raise ValueError(f"residual = {self.residual!r} must be true or false")
        if self.residual and self.pool != 1:
            raise ValueError("a residual conv cannot fold pooling (use a strided conv)")
        if self.padding is None:
            object.__setattr__(self, "padding", self.kernel // 2)
        for name, value in (("stride", self.stride), ("padding", self.padding)):
            if value * self.pool > CONV_PARAM_MAX:
                raise ValueError(
                    f"{name} {value} x pool {self.pool} = {value * self.pool} exceeds NetX's "
                    f"maximum {CONV_PARAM_MAX}"
                )

    @classmethod
    def parse(cls, spec: str | int | Mapping | ConvSpec) -> ConvSpec:
        """A spec from a config entry: a string (see :data:`CONV_SPEC_FORMS`), an int
        (channels) or a table with keys ``channels`` (required), ``kernel``, ``stride``,
        ``padding``, ``pool``. Raises ValueError naming what is wrong."""
        if isinstance(spec, ConvSpec):
            return spec
        if isinstance(spec, Mapping):
            return cls._from_table(spec)
        if isinstance(spec, bool) or not isinstance(spec, str | int):
            raise ValueError(f"{spec!r} is neither a string, an integer nor a table")
        return cls._from_text(str(spec).strip())

    @classmethod
    def _from_table(cls, table: Mapping) -> ConvSpec:
        unknown = sorted(set(table) - set(_TABLE_KEYS))
        if unknown:
            raise ValueError(f"unknown key {unknown[0]!r} (keys: {', '.join(_TABLE_KEYS)})")
        if "channels" not in table:
            raise ValueError("missing key 'channels'")
        return cls(**{k: table[k] for k in _TABLE_KEYS if k in table})

    @classmethod
    def _from_text(cls, text: str) -> ConvSpec:
        if text.endswith("r") and len(text) > 1:  # closes a residual block
            return dataclasses.replace(cls._from_text(text[:-1]), residual=True)
        if text[:1] in ("s", "p") and text[1:].isdigit():  # the short forms
            n = int(text[1:])
            return cls(n, stride=2) if text[0] == "s" else cls(n, pool=2, legacy=True)
        digits = len(text) - len(text.lstrip("0123456789"))
        if digits == 0:
            raise ValueError(f"{text!r} does not start with the channel count")
        options: dict[str, int] = {}
        rest = text[digits:]
        names = {"k": "kernel", "s": "stride", "pad": "padding", "p": "pool"}
        while rest:
            match = _OPTION.match(rest)
            if match is None:
                raise ValueError(f"cannot read {rest!r} in {text!r}")
            name = names[match.group(1)]
            if name in options:
                raise ValueError(f"{name} is given twice in {text!r}")
            options[name] = int(match.group(2))
            rest = rest[match.end() :]
        return cls(int(text[:digits]), **options)

    def to_text(self) -> str:
        """The extended string form, defaults left out (``ConvSpec.parse`` reads it back)."""
        text = f"{self.channels}"
        if self.kernel != 3:
            text += f"k{self.kernel}"
        if self.stride != 1:
            text += f"s{self.stride}"
        if self.padding != self.kernel // 2:
            text += f"pad{self.padding}"
        if self.pool != 1:
            text += f"p{self.pool}"
        return text + ("r" if self.residual else "")


class ResidualShortcut(nn.Module):
    """The shortcut of a residual conv: the block input (the activations, in the SNN the
    spikes, of conv layer ``source``) into the conv's synaptic input, before its BatchNorm.

    Identity (``weight`` None) where the block keeps channels and size; else a trainable
    1x1 conv with ``stride`` (the block's downsampling). Its kernel as run is :meth:`kernel`
    (a 1x1 identity for the identity shortcut); BN's factor scales it with the layer's own.
    """

    def __init__(self, source: int, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        self.source = source
        self.stride = stride
        self.identity = in_channels == out_channels and stride == 1
        self.weight = None
        if not self.identity:
            self.weight = nn.Parameter(torch.empty(out_channels, in_channels, 1, 1))
            nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        self.channels = out_channels

    def kernel(self, like: torch.Tensor) -> torch.Tensor:
        """The (Cout, Csource, 1, 1) kernel, dtype and device of ``like``."""
        if self.weight is not None:
            return self.weight.to(like.dtype)
        eye = torch.eye(self.channels, dtype=like.dtype, device=like.device)
        return eye.view(self.channels, self.channels, 1, 1)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """The shortcut's current for the source's activations ``h`` (B, Csource, H, W)."""
        if self.weight is None:
            return h
        return F.conv2d(h, self.weight, stride=self.stride)

    def extra_repr(self) -> str:
        return f"source={self.source}, stride={self.stride}, identity={self.identity}"


class SpikingNet(nn.Module):
    """Conv stack -> flatten -> dense stack -> dense readout, shared by both branches.

    Args:
        input_shape: (C, H, W) of the raw uint8 images.
        num_classes: readout size.
        convs: conv specs (:class:`ConvSpec`, or config entries for :meth:`ConvSpec.parse`).
        dense: hidden dense widths.
        mean, std: per-channel input normalization (of pixel/255), folded into layer 0.
        steps: T, the number of time steps.
        step_divisor: divides layer 0's weights and every bias per step (T for SNN2ANN, where the
            currents of the T steps sum to the ANN pre-activation; 1 for BPTT).
        threshold: initial threshold of every spiking channel.
        v_decay: Loihi vDecay of the spiking neurons (0: IF; >0: LIF, BPTT only).
        bn_momentum: BatchNorm's running-statistics momentum (PyTorch's convention: the weight
            of the new batch), which the integer branch folds every step.
    """

    def __init__(
        self,
        input_shape: tuple[int, int, int],
        num_classes: int,
        convs: tuple[str | Mapping | ConvSpec, ...],
        dense: tuple[int, ...],
        *,
        mean: tuple[float, ...],
        std: tuple[float, ...],
        steps: int,
        step_divisor: int,
        threshold: float = 1.0,
        v_decay: int = 0,
        bn_momentum: float = 0.1,
    ):
        super().__init__()
        self.input_shape = tuple(input_shape)
        self.num_classes = num_classes
        self.mean, self.std = tuple(mean), tuple(std)
        self.steps = steps
        self.step_divisor = step_divisor
        self.v_decay = v_decay
        layers: list[SynapticLayer] = []
        shortcuts: dict[str, ResidualShortcut] = {}
        shapes: list[tuple[int, int, int]] = []  # each conv's output (C, H, W)
        c, h, w = self.input_shape
        for i, entry in enumerate(convs):
            spec = _parse_entry(i, entry)
            layer = SynapticLayer(
                "conv",
                c,
                spec.channels,
                kernel=spec.kernel,
                stride=spec.stride,
                padding=spec.padding,
                pool=spec.pool,
                threshold=threshold,
                bn_momentum=bn_momentum,
            )
            _check_fold(i, entry, spec, layer, (h, w))
            layers.append(layer)
            c, h, w = spec.channels, *layer.output_hw((h, w))
            shapes.append((c, h, w))
            if spec.residual:
                shortcuts[str(i)] = _shortcut(i, entry, shapes)
        self.shortcuts = nn.ModuleDict(shortcuts)
        self.flatten_index = len(layers)
        n = c * h * w
        for width in dense:
            layers.append(
                SynapticLayer("dense", n, width, threshold=threshold, bn_momentum=bn_momentum)
            )
            n = width
        layers.append(SynapticLayer("dense", n, num_classes, spiking=False))
        self.layers = nn.ModuleList(layers)

    def layer_affine(self, k: int, compact: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """Layer k's synapse ``(weight, bias)`` on its real input (raw pixels for layer 0).

        ``compact``: a pooling conv's compact kernel (:meth:`SynapticLayer.affine`); the kernel
        as run is always its block expansion, so both forms hold the same values.
        """
        layer = self.layers[k]
        w, b = layer.affine(compact=True)
        if k == 0:
            w, b = fold_input_normalization(w, b, self.mean, self.std, repeat=layer.repeat)
        if not compact:
            w = expand_blocks(w, layer.pool)
        return w, b

    def layer_synapse(self, k: int, h: torch.Tensor) -> torch.Tensor:
        """Layer ``k``'s synapse (before BN) on ``h`` as the differentiable passes run it.

        A pooling conv (k > 0) whose pooling folds exactly averages ``h`` and applies the stored
        kernel: the folded conv's values (sum-pooled input, compact kernel ``weight / pool^2``)
        bit for bit outside float32's subnormal range, since every product and partial sum is
        the same one times the power of two ``pool^2``, and no scaled copy of the kernel is made
        and held for the backward pass. Otherwise :meth:`layer_affine` and the folded conv.
        """
        layer = self.layers[k]
        if k > 0 and layer.kind == "conv" and layer.pool > 1:
            if layer.pool_fold_error(tuple(h.shape[2:])) is None:
                h = F.avg_pool2d(h, layer.pool)
                return F.conv2d(h, layer.weight, layer.bias, layer.stride, layer.padding)
        w, b = self.layer_affine(k, compact=True)
        return layer.synapse(h, w, b, compact=True)

    def walk(
        self,
        x: torch.Tensor,
        activation: Activation,
        input_current: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """The layer walk of every training forward; returns the readout's synaptic current.

        ``x``: raw pixels (B, C, H, W) float. Each layer's synapse runs on the previous layer's
        output (flattened where the dense stack starts) and a residual layer adds its shortcut's
        current before BN, as the chip sums the two; ``activation(k, a)`` turns spiking layer
        ``k``'s BN output ``a`` into the output the next layer reads (ReLU, spikes).
        ``input_current`` maps layer 0's current (B, ...) onto the frames the later layers run
        on (BPTT: the same image current at each of the T steps, (B*T, ...)).
        """
        h = x
        sources = self.shortcut_sources
        block_inputs: dict[int, torch.Tensor] = {}  # outputs of shortcut sources
        for k, layer in enumerate(self.layers):
            if k == self.flatten_index:
                h = h.flatten(1)
            z = self.layer_synapse(k, h)
            if k == 0 and input_current is not None:
                z = input_current(z)
            shortcut = self.shortcut(k)
            if shortcut is not None:
                z = z + shortcut(block_inputs.pop(shortcut.source))
            if not layer.spiking:
                return z
            h = activation(k, layer.bn(z))
            if k in sources:
                block_inputs[k] = h
        raise AssertionError("the last layer is always the readout")

    def ann_forward(
        self,
        x: torch.Tensor,
        counts: list[torch.Tensor] | None = None,
        mapping=stsu,
        dropout: float = 0.0,
        layer_hook: LayerHook | None = None,
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """ANN branch: one differentiable pass.

        ``x``: raw pixels (B, C, H, W) float. ``counts``: per spiking layer the SNN spike counts
        (B, *shape); when given, each activation is replaced by them through ``mapping``.
        Returns ``(logits (B, classes), pre-activations after BN per spiking layer)``.

        ``layer_hook(k, a, counts_k)`` (training's ATA measure) sees each spiking layer's BN
        output ``a`` and its counts (None without ``counts``) as soon as the layer is done;
        the BN outputs are then not returned (the list is empty) and ``counts`` is consumed
        (each entry set to None once used, so that the counts are not held to the end of the
        pass nor through backward).
        """
        pre: list[torch.Tensor] = []

        def activation(k: int, a: torch.Tensor) -> torch.Tensor:
            if counts is not None and dropout == 0:
                h = relu_mapped(a, counts[k], mapping)  # the ReLU output is not held
            else:
                h = F.relu(a)
                if dropout > 0:
                    h = F.dropout(h, dropout, self.training)
                if counts is not None:
                    h = mapping(h, counts[k])
            if layer_hook is None:
                pre.append(a)
                return h
            layer_hook(k, a, None if counts is None else counts[k])
            if counts is not None:
                counts[k] = None  # type: ignore[call-overload]
            return h

        return self.walk(x, activation), pre

    def forward(
        self,
        x: torch.Tensor,
        counts: list[torch.Tensor] | None = None,
        mapping=stsu,
        dropout: float = 0.0,
        bptt: dict | None = None,
        layer_hook: LayerHook | None = None,
        noise: dict | None = None,
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The training forward (what DDP wraps): :meth:`ann_forward`, or with ``bptt`` (the
        keyword arguments of :func:`snn2loihi.train.bptt.bptt_forward`) the unrolled BPTT pass,
        or with ``noise`` (those of :func:`snn2loihi.train.noise.noise_forward`) the noisy
        single step."""
        if noise is not None:
            from snn2loihi.train.noise import noise_forward

            return noise_forward(self, x, **noise)
        if bptt is not None:
            from snn2loihi.train.bptt import bptt_forward

            return bptt_forward(self, x, **bptt)
        return self.ann_forward(x, counts, mapping, dropout, layer_hook)

    def shortcut(self, k: int) -> ResidualShortcut | None:
        """Layer ``k``'s residual shortcut, or None."""
        return self.shortcuts[str(k)] if str(k) in self.shortcuts else None

    @property
    def shortcut_sources(self) -> frozenset[int]:
        """The layers whose outputs some shortcut reads."""
        return frozenset(sc.source for sc in self.shortcuts.values())

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


def _shortcut(i: int, entry, shapes: list[tuple[int, int, int]]) -> ResidualShortcut:
    """The shortcut of residual conv ``i`` from conv ``i - 2`` (the block's input), whose
    output shapes (C, H, W) ``shapes`` holds: identity, or a 1x1 conv with the stride that
    maps the source's size onto conv ``i``'s."""
    entry = entry.to_text() if isinstance(entry, ConvSpec) else entry
    if i < 2:
        raise ConvFitError(
            f"model.convs[{i}] = {entry!r}: a residual conv closes a block of two convs; the "
            "block's input must be a conv two places before it (use it from model.convs[2] on)",
            i,
        )
    (cs, hs, ws), (ct, ht, wt) = shapes[i - 2], shapes[i]
    stride = max(1, hs // ht)
    if conv_out_size(hs, 1, stride, 0) != ht or conv_out_size(ws, 1, stride, 0) != wt:
        raise ConvFitError(
            f"model.convs[{i}] = {entry!r}: the block's input {cs}x{hs}x{ws} (model.convs"
            f"[{i - 2}]) cannot be added to its output {ct}x{ht}x{wt} by a 1x1 strided shortcut",
            i,
        )
    return ResidualShortcut(i - 2, cs, ct, stride)


def _parse_entry(i: int, entry) -> ConvSpec:
    try:
        return ConvSpec.parse(entry)
    except ValueError as exc:
        raise ConfigError(
            f"model.convs[{i}] = {entry!r}: {exc}; accepted forms: {CONV_SPEC_FORMS}"
        ) from None


def _check_fold(i: int, entry, spec: ConvSpec, layer: SynapticLayer, in_hw) -> None:
    """Refuse (or, for the legacy ``"p64"`` form, warn about) a conv that does not fit
    its input or whose folded pooling differs from ``avg_pool -> conv``."""
    hw = "x".join(map(str, in_hw))
    entry = entry.to_text() if isinstance(entry, ConvSpec) else entry
    out = layer.output_hw(in_hw)
    if min(out) < 1:
        raise ConvFitError(
            f"model.convs[{i}] = {entry!r} (layer {i}): input {hw} is too small for kernel "
            f"{spec.kernel}, stride {spec.stride}, padding {spec.padding}, pool {spec.pool}",
            i,
        )
    why = layer.pool_fold_error(in_hw)
    if why is None:
        return
    if spec.legacy:
        log.warning(
            "model.convs[%d] = %r (layer %d) on input %s: %s; kept as the folded conv "
            "(what training and the chip run)",
            i,
            entry,
            i,
            hw,
            why,
        )
        return
    raise ConvFitError(f"model.convs[{i}] = {entry!r} (layer {i}) on input {hw}: {why}", i)


def build_model(
    arch: str,
    input_shape: tuple[int, int, int],
    num_classes: int,
    *,
    convs: tuple[str | Mapping | ConvSpec, ...] | None = None,
    dense: tuple[int, ...] | None = None,
    **kwargs,
) -> SpikingNet:
    """A named architecture (``digits``, ``mnist``, ``vgg11``, ``cifar_fast``,
    ``cifar_fast_half``) or ``custom``
    convs/dense."""
    if arch != "custom":
        if arch not in ARCHITECTURES:
            raise ValueError(f"unknown architecture {arch!r}")
        preset_convs, preset_dense = ARCHITECTURES[arch]
        convs = preset_convs if convs is None else convs
        dense = preset_dense if dense is None else dense
    return SpikingNet(input_shape, num_classes, tuple(convs or ()), tuple(dense or ()), **kwargs)
