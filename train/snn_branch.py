"""The SNN branch: T steps of IF neurons, layer by layer, without gradients.

Two interchangeable forms of the same network:
- integer (default): Loihi's integer IF neuron (:func:`snn2loihi.neuron.cuba_step`) on the
  export's integer weights, biases and thresholds (:func:`integer_layers`). Its spikes are the
  emulator's spikes, so its accuracy is the deployed accuracy;
- float (``--float-snn`` ablation): the same IF dynamics on the unquantized float parameters.

Both use the emulator's time convention: every layer starts at ``u = v = 0`` and the graded image
(raw uint8 pixels) enters layer 0 at every step. Readout: the last layer never spikes; its ``v``
after T steps is the accumulated input current, and the logits are that current in float units.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from snn2loihi.loihi import ACT_SHIFT, DECAY_UNITY
from snn2loihi.neuron_loop import integrate, integrate_counting
from snn2loihi.synapse import ConvGeometry, IntegerSynapse
from snn2loihi.train.fold import IntegerLayer, StepLayer, integer_layer, step_layers
from snn2loihi.train.model import SpikingNet


@dataclass
class SnnOutput:
    """Spike counts per spiking layer (B, *shape) float in 0..T, and logits (B, classes).

    With ``record=True`` also ``spikes``: per spiking layer the spikes (B, T, *shape) bool, and
    ``readout_v``: the integer readout's ``v`` (B, T, classes) int32 after every step, in the
    emulator's units (None in the float branch).
    """

    counts: list[torch.Tensor]
    logits: torch.Tensor
    spikes: list[torch.Tensor] | None = None
    readout_v: torch.Tensor | None = None

    def spikes_per_sample(self) -> list[float]:
        """Mean number of spikes per sample in each spiking layer."""
        return [float(c.flatten(1).sum(1).mean()) for c in self.counts]


def _channel_view(t: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """(C,) -> broadcastable to (B, *shape): (C, 1, 1) for CHW, (N,) for dense."""
    return t.view(-1, *([1] * (len(shape) - 1)))


class _IntegerRunner:
    """One integer layer: exact synapse (as :class:`IntegerSynapse`) + Loihi's neurons."""

    def __init__(
        self,
        layer: IntegerLayer,
        device: torch.device,
        compiled: bool = False,
        input_hw: tuple[int, int] | None = None,
        frames: int | None = None,
    ):
        """``input_hw``: a conv layer's input (H, W), and ``frames``: how many frames its synapse
        runs on (once: runners are rebuilt every step), which let the synapse pick its kernel
        by output size and build cost (:class:`IntegerSynapse`)."""
        self.layer = layer
        self.compiled = compiled
        geometry = None
        if layer.kind == "conv":
            geometry = ConvGeometry(
                (layer.stride, layer.stride), (layer.padding, layer.padding), (1, 1), 1
            )
        self._synapse = IntegerSynapse(
            layer.kind,
            layer.weight,
            input_max=layer.input_max,
            geometry=geometry,
            device=device,
            block=layer.pool,
            input_hw=input_hw if layer.kind == "conv" else None,
            frames=frames,
        )
        self.int32_safe = self._synapse.int32_safe  # int32 state, no int32 wraps needed
        self._shortcut = None
        if layer.shortcut is not None:  # the summed input: int64, as the emulator sums it
            stride = (layer.shortcut.stride,) * 2
            self._shortcut = IntegerSynapse(
                "conv",
                layer.shortcut.weight,
                input_max=1,
                geometry=ConvGeometry(stride, (0, 0), (1, 1), 1),
                device=device,
            )
            self.int32_safe = False
        self.dtype = torch.int32 if self.int32_safe else torch.int64
        self.bias = layer.bias.to(device=device, dtype=self.dtype)

    def synapse(self, s: torch.Tensor) -> torch.Tensor:
        """Integer synaptic input for integer input ``s`` (B, Cin, H, W) or (B, Nin)."""
        return self._synapse(s).to(self.dtype)

    def shortcut(self, s: torch.Tensor) -> torch.Tensor:
        """The shortcut's integer current for the source's spikes ``s`` (B, Csource, H, W)."""
        return self._shortcut(s).to(self.dtype)

    def _bias_for(self, a: torch.Tensor) -> torch.Tensor:
        """The bias broadcastable to one step of ``a`` (B, T, *shape)."""
        return _channel_view(self.bias, tuple(a.shape[2:]))

    def spikes(self, a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Spikes (B, T, *shape) bool for synaptic input ``a`` (B, T, *shape), and their
        counts (B, *shape) float32, contiguous (counted by the neuron loop)."""
        spikes, counts = integrate_counting(
            a,
            self._bias_for(a),
            self.layer.neuron,
            int32_safe=self.int32_safe,
            compiled=self.compiled,
        )
        return spikes, counts.to(torch.float32, memory_format=torch.contiguous_format)

    def readout(self, a: torch.Tensor) -> torch.Tensor:
        """Logits (B, classes): the readout's ``v`` after T steps, in float units."""
        return self.readout_trace(a)[0]

    def readout_trace(self, a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits as :meth:`readout`, and the integer ``v`` (B, T, classes) they come from."""
        v_tr = integrate(
            a, self._bias_for(a), self.layer.neuron, int32_safe=self.int32_safe, record_state=True
        )[2]
        v = v_tr[:, -1].to(a.device, torch.int64)
        return (v >> ACT_SHIFT).to(torch.float64).mul(self.layer.scale).float(), v_tr


class _FloatRunner:
    """One float layer: float synapse + IF (or LIF with ``leak`` < 1) with reset to zero."""

    def __init__(self, layer: StepLayer, device: torch.device, leak: float):
        self.layer = layer
        self.weight = layer.weight.to(device)
        self.bias = layer.bias.to(device)
        self.th = None if layer.thresholds is None else layer.thresholds.to(device)
        self.leak = 1.0 if layer.readout else leak

    def synapse(self, s: torch.Tensor) -> torch.Tensor:
        s = s.to(self.weight.dtype)
        if self.layer.kind == "dense":
            return F.linear(s, self.weight)
        return F.conv2d(s, self.weight, stride=self.layer.stride, padding=self.layer.padding)

    def shortcut(self, s: torch.Tensor) -> torch.Tensor:
        sc = self.layer.shortcut
        w = sc.weight.to(self.weight.device)
        return F.conv2d(s.to(w.dtype), w, stride=sc.stride)

    def _integrate(self, a: torch.Tensor):
        shape = tuple(a.shape[2:])
        bias = _channel_view(self.bias, shape)
        th = None if self.th is None else _channel_view(self.th, shape)
        v = torch.zeros_like(a[:, 0])
        spikes = None if th is None else torch.empty(a.shape, dtype=torch.bool, device=a.device)
        for t in range(a.shape[1]):
            v = v * self.leak + a[:, t] + bias
            if th is not None:
                spikes[:, t] = s = v > th
                v = torch.where(s, torch.zeros_like(v), v)
        return spikes, v

    def spikes(self, a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        spikes = self._integrate(a)[0]
        return spikes, spike_counts(spikes)

    def readout(self, a: torch.Tensor) -> torch.Tensor:
        return self._integrate(a)[1]

    def readout_trace(self, a: torch.Tensor) -> tuple[torch.Tensor, None]:
        return self.readout(a), None


def spike_counts(spikes: torch.Tensor) -> torch.Tensor:
    """Spikes (B, T, *shape) bool -> counts (B, *shape) float32 (summed in uint8 when T < 256:
    a reduction over the step axis in float32 is many times slower)."""
    if spikes.shape[1] < 256:
        return spikes.view(torch.uint8).sum(1, dtype=torch.uint8).float()
    return spikes.sum(1, dtype=torch.float32)


@torch.no_grad()
def _run(
    n_layers: int,
    runner_at: Callable[[int, tuple[int, int] | None, int], _IntegerRunner | _FloatRunner],
    x: torch.Tensor,
    steps: int,
    flatten_index: int,
    record: bool = False,
    sources: frozenset[int] = frozenset(),
) -> SnnOutput:
    """Layer by layer from rest; ``runner_at(k, input_hw, frames)`` makes layer k's runner when
    it is reached (``input_hw``: its input's (H, W), None for dense; ``frames``: how many frames
    its synapse runs on), so one layer's weights and
    temporaries are held at a time. Layer 0's input current is computed
    once (the image is the same every step); each later layer's synapse runs once on all
    (sample, step) pairs of the previous layer's spikes, then its neurons loop over the T steps.
    ``record``: keep every layer's spikes and the readout's ``v`` trace (see :class:`SnnOutput`).
    ``sources``: layers whose spikes a later residual layer's shortcut reads in the same
    step (kept until then)."""
    b = x.shape[0]
    counts: list[torch.Tensor] = []
    spikes: list[torch.Tensor] = []
    kept: dict[int, torch.Tensor] = {}  # spikes of shortcut sources
    prev = None  # (B, T, *shape) bool spikes of the previous layer
    for k in range(n_layers):
        source = x if k == 0 else prev  # (B, C, H, W) or (B, T, C, H, W) for a conv layer
        input_hw = tuple(source.shape[-2:]) if k < flatten_index else None
        runner = runner_at(k, input_hw, b if k == 0 else b * steps)
        if k == 0:
            a = runner.synapse(x.reshape(b, -1) if flatten_index == 0 else x)
            a = a.unsqueeze(1).expand(b, steps, *a.shape[1:])
        else:
            s = prev.reshape(b * steps, *prev.shape[2:])
            a = runner.synapse(s.reshape(b * steps, -1) if k >= flatten_index else s)
            if runner.layer.shortcut is not None:
                src = kept.pop(runner.layer.shortcut.source)
                a = a + runner.shortcut(src.reshape(b * steps, *src.shape[2:]))
            a = a.reshape(b, steps, *a.shape[1:])
        if k == n_layers - 1:
            if not record:
                return SnnOutput(counts, runner.readout(a))
            logits, readout_v = runner.readout_trace(a)
            return SnnOutput(counts, logits, spikes, readout_v)
        prev, layer_counts = runner.spikes(a)
        del a, runner  # freed before the next layer's are made
        counts.append(layer_counts)
        if k in sources:
            kept[k] = prev
        if record:
            spikes.append(prev)
    raise AssertionError("a network ends with its readout layer")


def run_integer_snn(
    layers: list[IntegerLayer],
    x: torch.Tensor,
    steps: int,
    flatten_index: int,
    compile_neuron: bool = False,
    record: bool = False,
):
    """Integer SNN on raw pixels ``x`` (B, C, H, W) uint8/int; see module docstring."""

    def runner_at(k: int, input_hw: tuple[int, int] | None, frames: int) -> _IntegerRunner:
        return _IntegerRunner(layers[k], x.device, compile_neuron, input_hw, frames)

    return _run(len(layers), runner_at, x, steps, flatten_index, record, _sources(layers))


def run_float_snn(
    layers: list[StepLayer],
    x: torch.Tensor,
    steps: int,
    flatten_index: int,
    leak: float = 1.0,
    record: bool = False,
):
    """Float SNN on raw pixels ``x`` (B, C, H, W); ``leak`` multiplies ``v`` every step."""

    def runner_at(k: int, input_hw: tuple[int, int] | None, frames: int) -> _FloatRunner:
        return _FloatRunner(layers[k], x.device, leak)

    sources = _sources(layers)
    return _run(len(layers), runner_at, x.float(), steps, flatten_index, record, sources)


def _sources(layers: list[IntegerLayer] | list[StepLayer]) -> frozenset[int]:
    """The layers whose spikes a residual layer's shortcut reads."""
    return frozenset(ly.shortcut.source for ly in layers if ly.shortcut is not None)


def run_snn(
    model: SpikingNet,
    x: torch.Tensor,
    *,
    quantized: bool = True,
    weight_bits: int = 8,
    compile_neuron: bool = False,
    record: bool = False,
) -> SnnOutput:
    """The SNN branch of ``model`` on raw pixels ``x`` (B, C, H, W), T = ``model.steps``.

    ``compile_neuron`` runs the spiking layers' neurons as fused kernels on the CPU
    (:func:`snn2loihi.neuron_loop.integrate` ``compiled``; integer branch only, same integers).
    ``record`` keeps every step's spikes (and, integer branch, the readout's ``v``; for tests).
    """
    if quantized:  # each layer quantized when the run reaches it

        def runner_at(k: int, input_hw: tuple[int, int] | None, frames: int) -> _IntegerRunner:
            layer = integer_layer(model, k, weight_bits)
            return _IntegerRunner(layer, x.device, compile_neuron, input_hw, frames)

        sources = model.shortcut_sources
        return _run(
            len(model.layers), runner_at, x, model.steps, model.flatten_index, record, sources
        )
    leak = 1.0 - model.v_decay / DECAY_UNITY
    return run_float_snn(step_layers(model), x, model.steps, model.flatten_index, leak, record)
