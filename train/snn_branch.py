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

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from snn2loihi.neuron import ACT_SHIFT, INT32_SAFE_INPUT, cuba_step
from snn2loihi.synapse import ConvGeometry, IntegerSynapse
from snn2loihi.train.fold import IntegerLayer, StepLayer, integer_layers, step_layers
from snn2loihi.train.model import SpikingNet


@dataclass
class SnnOutput:
    """Spike counts per spiking layer (B, *shape) float in 0..T, and logits (B, classes)."""

    counts: list[torch.Tensor]
    logits: torch.Tensor

    def spikes_per_sample(self) -> list[float]:
        """Mean number of spikes per sample in each spiking layer."""
        return [float(c.flatten(1).sum(1).mean()) for c in self.counts]


def _channel_view(t: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """(C,) -> broadcastable to (B, *shape): (C, 1, 1) for CHW, (N,) for dense."""
    return t.view(-1, *([1] * (len(shape) - 1)))


_COMPILED: dict[str, object] = {}


def neuron_step_fn(compiled: bool):
    """``cuba_step`` itself, or the same function through ``torch.compile`` (fused kernels,
    identical integers; compiled once, on first use)."""
    if not compiled:
        return cuba_step
    if "cuba_step" not in _COMPILED:
        _COMPILED["cuba_step"] = torch.compile(cuba_step, dynamic=True)
    return _COMPILED["cuba_step"]


class _IntegerRunner:
    """One integer layer: exact synapse (as :class:`IntegerSynapse`) + ``cuba_step``."""

    def __init__(self, layer: IntegerLayer, device: torch.device, compiled: bool = False):
        self.layer = layer
        self.device = device
        self.neuron_step = neuron_step_fn(compiled)
        geometry = None
        if layer.kind == "conv":
            geometry = ConvGeometry(
                (layer.stride, layer.stride), (layer.padding, layer.padding), (1, 1), 1
            )
        self._synapse = IntegerSynapse(
            layer.kind,
            layer.weight.numpy(),
            input_max=layer.input_max,
            geometry=geometry,
            device=device,
        )
        # |a| <= INT32_SAFE_INPUT proven from the weights: the neuron step needs no int32 wraps.
        self.int32_safe = self._synapse.max_abs_output <= INT32_SAFE_INPUT
        self.bias = layer.bias.to(device)

    def synapse(self, s: torch.Tensor) -> torch.Tensor:
        """Integer synaptic input (int64) for integer input ``s`` (B, Cin, H, W) or (B, Nin)."""
        return self._synapse(s).to(torch.int64)

    def start(self, a: torch.Tensor):
        zero = torch.zeros(a.shape, dtype=torch.int64, device=a.device)
        return zero, zero.clone(), _channel_view(self.bias, tuple(a.shape[1:]))

    def step(self, a: torch.Tensor, state):
        u, v, bias = state
        spikes, u, v = self.neuron_step(
            a, u, v, bias, self.layer.neuron, int32_safe=self.int32_safe
        )
        return spikes, (u, v, bias)

    def readout(self, state) -> torch.Tensor:
        v = state[1]
        return (v >> ACT_SHIFT).to(torch.float64).mul(self.layer.scale).float()


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

    def start(self, a: torch.Tensor):
        shape = tuple(a.shape[1:])
        th = None if self.th is None else _channel_view(self.th, shape)
        return torch.zeros_like(a), _channel_view(self.bias, shape), th

    def step(self, a: torch.Tensor, state):
        v, bias, th = state
        v = v * self.leak + a + bias
        if th is None:
            return None, (v, bias, th)
        spikes = v > th
        return spikes, (torch.where(spikes, torch.zeros_like(v), v), bias, th)

    def readout(self, state) -> torch.Tensor:
        return state[0]


@torch.no_grad()
def _run(runners, x: torch.Tensor, steps: int, flatten_index: int) -> SnnOutput:
    """Layer by layer from rest; layer 0's input current is computed once (the image is the same
    every step), later layers compute each step's synaptic input from the previous layer's spikes
    of that step, so only one step of currents is held at a time."""
    b = x.shape[0]
    counts: list[torch.Tensor] = []
    prev = None  # (B, T, *shape) bool spikes of the previous layer
    for k, runner in enumerate(runners):
        if k == 0:
            a0 = runner.synapse(x.reshape(b, -1) if flatten_index == 0 else x)

            def current(t, a0=a0):
                return a0

        else:

            def current(t, prev=prev, flat=k >= flatten_index, runner=runner):
                s = prev[:, t]
                return runner.synapse(s.reshape(b, -1) if flat else s)

        is_readout = k == len(runners) - 1
        state = spikes = None
        for t in range(steps):
            a = current(t)
            if state is None:
                state = runner.start(a)
                if not is_readout:
                    spikes = torch.empty(
                        (b, steps, *a.shape[1:]), dtype=torch.bool, device=x.device
                    )
            s, state = runner.step(a, state)
            if not is_readout:
                spikes[:, t] = s
        if is_readout:
            return SnnOutput(counts, runner.readout(state))
        counts.append(spikes.sum(1, dtype=torch.float32))
        prev = spikes
    raise AssertionError("a network ends with its readout layer")


def run_integer_snn(
    layers: list[IntegerLayer],
    x: torch.Tensor,
    steps: int,
    flatten_index: int,
    compile_neuron: bool = False,
):
    """Integer SNN on raw pixels ``x`` (B, C, H, W) uint8/int; see module docstring."""
    runners = [_IntegerRunner(ly, x.device, compile_neuron) for ly in layers]
    return _run(runners, x.to(torch.int64), steps, flatten_index)


def run_float_snn(
    layers: list[StepLayer], x: torch.Tensor, steps: int, flatten_index: int, leak: float = 1.0
):
    """Float SNN on raw pixels ``x`` (B, C, H, W); ``leak`` multiplies ``v`` every step."""
    runners = [_FloatRunner(ly, x.device, leak) for ly in layers]
    return _run(runners, x.float(), steps, flatten_index)


def run_snn(
    model: SpikingNet,
    x: torch.Tensor,
    *,
    quantized: bool = True,
    weight_bits: int = 8,
    compile_neuron: bool = False,
) -> SnnOutput:
    """The SNN branch of ``model`` on raw pixels ``x`` (B, C, H, W), T = ``model.steps``.

    ``compile_neuron`` runs ``cuba_step`` through ``torch.compile`` (integer branch only).
    """
    if quantized:
        layers = integer_layers(model, weight_bits)
        return run_integer_snn(layers, x, model.steps, model.flatten_index, compile_neuron)
    leak = 1.0 - model.v_decay / 4096
    return run_float_snn(step_layers(model), x, model.steps, model.flatten_index, leak)
