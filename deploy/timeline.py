"""Any NetX network on Lava's global clock, as ``netx.hdf5.Network`` builds and runs it.

Each sample is one run of ``steps`` time steps from a fresh network (Lava's ``time_step`` 1 to
``steps``); entry ``t`` of every record is the state after step ``t + 1``. Per layer, exactly as
lava-dl 0.6 builds it (``lava/lib/dl/netx/hdf5.py``):

- an input layer with a neuron is a neuron-only layer: driven through its bias (``drive
  "bias"``, the image as ``bias_mant``, constant over the run) or skipped (``drive "skip"``,
  netx's ``skip_layers=1``: the input goes to the first synapse layer, as spikes after a CUBA
  input neuron, as graded messages after an SDNN one). Without an input neuron the input goes
  to the first synapse layer (``drive "input"``): spikes, or 8-bit graded values;
- every dense/conv synapse delays by one step (``a(t) = W . s(t - 1)``), dense delays ``d`` by
  ``1 + d`` (each delay's sum shifted by the weight exponent on its own, as ``DelayDense``);
  a recurrent dense layer adds ``W_rec . s_self(t - 1)`` (one weight exponent for both);
- resets (``reset_interval`` R, ``reset_offset`` K): the j-th layer built zeroes ``u`` and ``v``
  at the start of every step with ``t % R == (K + 1 + j) % R``; sigma-delta layers never reset
  (netx warns and ignores it). No interval: no reset.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from snn2loihi.errors import InputDataError, UnsupportedLayerError
from snn2loihi.loihi import GRADED_INPUT_MAX, INT32_SAFE_INPUT, worst_case_input
from snn2loihi.neuron import cuba_step
from snn2loihi.neuron_loop import NEURON_BLOCK
from snn2loihi.schema import (
    ConvLayer,
    CubaNeuron,
    DenseLayer,
    InputLayer,
    NetXNetwork,
    Neuron,
    RecurrentDenseLayer,
)
from snn2loihi.sigma_delta import (
    SigmaDeltaState,
    delta_step,
    int32_safe_bound,
    sigma_delta_step,
    sigma_step,
)
from snn2loihi.synapse import ConvGeometry, IntegerSynapse, dense_weights_as_lava

DRIVES = ("bias", "skip", "input")
CUBA_STATES = ("u", "v")
SDNN_STATES = ("sigma", "act", "residue")
RECORDABLE = ("s", *CUBA_STATES, *SDNN_STATES)
SDNN_MESSAGE_MAX = 2**16  # graded input into a skipped SDNN input layer's successor
BIAS_DRIVE_RANGE = (-(2**15), 2**15 - 1)  # Lava holds bias_mant as int16
FLOAT64_EXACT = 2**53


@dataclass(frozen=True)
class Timeline:
    """netx's reset arguments: ``reset_interval`` R (None: never reset) and ``reset_offset`` K."""

    reset_interval: int | None = None
    reset_offset: int = 0

    def __post_init__(self):
        if self.reset_interval is not None and self.reset_interval < 1:
            raise InputDataError(f"--reset-interval {self.reset_interval} must be >= 1")
        if self.reset_offset < 0:
            raise InputDataError(f"--reset-offset {self.reset_offset} must be >= 0")

    def resets(self, j: int, steps: int) -> list[bool]:
        """For the j-th layer built: whether it resets at the start of each step 1..steps."""
        if self.reset_interval is None:
            return [False] * steps
        r = self.reset_interval
        offset = (self.reset_offset + 1 + j) % r
        return [t % r == offset for t in range(1, steps + 1)]


@dataclass(frozen=True)
class BuiltLayer:
    """One layer as netx builds it: file ``index``, the record, and whether its synapse sees
    binary spikes (``input_message_bits = 0``)."""

    index: int
    layer: InputLayer | ConvLayer | DenseLayer
    binary_input: bool

    @property
    def neuron(self) -> Neuron:
        return self.layer.neuron


def output_message_bits(neuron: Neuron) -> int:
    """What netx gives the next layer as ``input_message_bits``: 0 after CUBA, 16 after SDNN."""
    return 0 if isinstance(neuron, CubaNeuron) else 16


def drive_for(net: NetXNetwork, time_axis: bool) -> str:
    """How an input drives ``net``: images without a time axis drive an input neuron's bias;
    an input with a time axis skips an input neuron (netx ``skip_layers=1``)."""
    if net.input_neuron is None:
        if not time_axis:
            raise InputDataError(
                "input without a time axis: this network has no input neuron to drive through "
                "its bias; give (samples, steps, *input_shape), or images with --steps"
            )
        return "input"
    if not time_axis:
        if not isinstance(net.input_neuron, CubaNeuron):
            raise InputDataError(
                "input without a time axis: an SDNN input layer (Delta) has no bias to drive; "
                "give (samples, steps, *input_shape): the input layer is then skipped"
            )
        return "bias"
    return "skip"


def built_layers(net: NetXNetwork, drive: str, graded: bool) -> list[BuiltLayer]:
    """The layers netx builds for ``drive`` in order (``net.layers`` of netx), flatten omitted.

    A residual network (shortcuts) is refused: netx cannot build it, and the global clock
    does not model its shortcuts; it runs on the per-sample clock."""
    if net.residual:
        raise UnsupportedLayerError(
            "this residual network (layers with shortcuts) runs only on the per-sample clock "
            "(--clock sample, without --record, --reset-interval or --reset-offset)"
        )
    layers: list[BuiltLayer] = []
    bits = 8 if graded else 0
    if drive == "bias":
        layers.append(BuiltLayer(0, net.layers[0], True))
    if net.input_neuron is not None:
        bits = output_message_bits(net.input_neuron)
    for i, ly in net.synaptic_layers:
        layers.append(BuiltLayer(i, ly, bits == 0))
        bits = output_message_bits(ly.neuron)
    return layers


def check_timeline_input(
    net: NetXNetwork, x: np.ndarray | torch.Tensor, drive: str
) -> tuple[torch.Tensor, bool]:
    """Validate ``x`` for ``drive``: (N, *input_shape) bias values for ``bias``, else
    (N, T, *input_shape). Returns (int64 tensor, graded)."""
    t = torch.as_tensor(np.array(x) if not isinstance(x, torch.Tensor) else x)
    lead = 1 if drive == "bias" else 2
    expected = ("samples",) if lead == 1 else ("samples", "steps")
    if t.ndim != lead + len(net.input_shape) or tuple(t.shape[lead:]) != net.input_shape:
        raise InputDataError(
            f"input has shape {tuple(t.shape)}, expected ({', '.join(expected)}, "
            f"{', '.join(map(str, net.input_shape))}) for drive '{drive}'"
        )
    if min(t.shape[:lead]) < 1:
        raise InputDataError(f"input has shape {tuple(t.shape)}: nothing to run")
    if t.is_floating_point() and (not torch.isfinite(t).all() or not torch.equal(t, t.trunc())):
        raise InputDataError("input holds non-integer values")
    t = t.to(torch.int64)
    lo, hi = int(t.min()), int(t.max())
    if drive == "bias":
        bound = BIAS_DRIVE_RANGE
        what = "bias values of the input neuron (Lava holds bias_mant as int16)"
    elif drive == "skip" and not isinstance(net.input_neuron, CubaNeuron):
        bound = (-SDNN_MESSAGE_MAX, SDNN_MESSAGE_MAX)
        what = "graded messages after the skipped SDNN input layer"
    elif drive == "skip":
        bound = (0, 1)
        what = "spikes: after a skipped CUBA input layer netx sends the input as spikes"
    else:
        bound = (0, GRADED_INPUT_MAX)
        what = "spikes (0/1) or 8-bit graded values"
    if lo < bound[0] or hi > bound[1]:
        raise InputDataError(
            f"input values span [{lo}, {hi}], expected {bound[0]}..{bound[1]}: {what}"
        )
    return t, drive == "input" and hi > 1


@dataclass
class TimelineTrace:
    """One built layer over the run: ``messages`` (N, T, *shape) (bool spikes of CUBA layers,
    int32 messages of SDNN layers) and the recorded ``states`` (name -> (N, T, *shape) int32)."""

    index: int
    kind: str
    neuron: str
    messages: torch.Tensor
    states: dict[str, torch.Tensor] = field(default_factory=dict)


def _synapse_input_max(s: torch.Tensor, binary: bool) -> tuple[int, bool]:
    if binary or s.dtype == torch.bool:
        return 1, False
    m = int(s.abs().max()) if s.numel() else 0
    return max(1, m), bool(s.min() < 0) if s.numel() else False


def layer_shape(ly) -> tuple[int, ...]:
    """A built layer's neuron shape: CHW for input/conv, (N,) for dense."""
    return tuple(ly.shape) if isinstance(ly, ConvLayer | InputLayer) else (int(np.prod(ly.shape)),)


def state_names(b: BuiltLayer) -> tuple[str, ...]:
    """The state variables Lava's process of this layer has: ``u``, ``v`` (LIF); ``sigma``,
    ``act``, ``residue`` (SigmaDelta, Delta); ``sigma`` (Sigma)."""
    if isinstance(b.neuron, CubaNeuron):
        return CUBA_STATES
    return ("sigma",) if b.neuron.sigma_output else SDNN_STATES


class TimelineRunner:
    """Runs a network on the global clock; see the module docstring. ``record``: the state
    names to keep (``u``, ``v`` for CUBA layers; ``sigma``, ``act``, ``residue`` for SDNN)."""

    def __init__(self, net: NetXNetwork, device: torch.device, timeline: Timeline):
        self.net, self.device, self.timeline = net, device, timeline
        # each layer's synapses per (layer, largest |message|, signed): made once for all the
        # passes of a batch (their weights are prepacked, and they depend on the input only
        # through its range)
        self._parts: dict[tuple[int, int, bool], list[tuple[int, IntegerSynapse]]] = {}

    def run(
        self, x: torch.Tensor, drive: str, graded: bool, steps: int, record: tuple[str, ...]
    ) -> list[TimelineTrace]:
        traces = []
        s: torch.Tensor | None = None if drive == "bias" else x.to(self.device)
        for j, b in enumerate(built_layers(self.net, drive, graded)):
            shape = layer_shape(b.layer)
            n = x.shape[0]
            if isinstance(b.layer, InputLayer):
                a, bias = None, x.to(self.device)
            else:
                a = self._synaptic_input(b, s, steps)
                bias = self._bias(b.layer, shape)
            trace = self._neurons(b, a, bias, self.timeline.resets(j, steps), record, (n, steps))
            traces.append(trace)
            s = trace.messages
        return traces

    @staticmethod
    def _bias(ly: ConvLayer | DenseLayer, shape: tuple[int, ...]) -> torch.Tensor | int:
        if ly.bias is None:
            return 0
        b = torch.as_tensor(np.asarray(ly.bias, dtype=np.int64))
        return b.view(-1, *([1] * (len(shape) - 1)))

    def _synapse(self, kind, weight, b: BuiltLayer, input_max, signed, **kw) -> IntegerSynapse:
        syn = IntegerSynapse(
            kind, weight, input_max=input_max, device=self.device, signed=signed, **kw
        )
        bound = int(worst_case_input(np.asarray(weight)).max()) * input_max * (1 + signed)
        if not syn.exact_fp32 and bound >= FLOAT64_EXACT:
            raise InputDataError(
                f"layer {b.index} ({b.layer.kind}): messages up to {input_max} times these "
                "weights exceed the exactly computable range (2^53)"
            )
        return syn

    def _synaptic_input(self, b: BuiltLayer, s: torch.Tensor, steps: int) -> torch.Tensor:
        """``a`` (N, T, *shape): what the layer's neurons receive at each step; int32 when its
        bound (the sum over the delays of each synapse's ``max_abs_output``) is at most
        ``INT32_SAFE_INPUT``, so the neurons may run in int32, else int64. SDNN layers: int32
        whenever the bound is below 2^31 (their state's own int32 check is on the values)."""
        ly = b.layer
        n = s.shape[0]
        s = (s != 0) if b.binary_input and s.dtype != torch.bool else s

        def flatten(s: torch.Tensor) -> torch.Tensor:
            flat = s.reshape(n * steps, *s.shape[2:])
            return flat.reshape(n * steps, -1) if isinstance(ly, DenseLayer) else flat

        flat = flatten(s)
        key = (b.index, *_synapse_input_max(s, b.binary_input))
        if key not in self._parts:
            self._parts[key] = self._synapse_parts(b, *key[1:])
        parts = self._parts[key]
        bound = sum(syn.max_abs_output for _, syn in parts)
        limit = INT32_SAFE_INPUT if isinstance(b.neuron, CubaNeuron) else 2**31 - 1
        dtype = torch.int32 if bound <= limit else torch.int64
        if len(parts) == 1 and parts[0][0] == 0:
            # no delay: step t receives the messages of step t - 1; shifting the (small)
            # messages instead of the (int32) result saves a pass over a (W . 0 = 0 at t = 0)
            shifted = torch.zeros_like(s)
            shifted[:, 1:] = s[:, : steps - 1]
            out = parts[0][1](flatten(shifted)).to(dtype)
            return out.reshape(n, steps, *layer_shape(ly))
        a = torch.zeros((n, steps, *layer_shape(ly)), dtype=dtype, device=self.device)
        for d, syn in parts:
            if 1 + d >= steps:
                continue
            out = syn(flat).to(dtype).reshape(n, steps, *a.shape[2:])
            a[:, 1 + d :] += out[:, : steps - 1 - d]
        return a

    def _synapse_parts(
        self, b: BuiltLayer, input_max: int, signed: bool
    ) -> list[tuple[int, IntegerSynapse]]:
        """Layer ``b``'s synapses as (delay, synapse) for messages up to ``input_max`` in
        magnitude (``signed``: of either sign): a conv's one, a dense layer's one per delay."""
        ly = b.layer
        if isinstance(ly, ConvLayer):
            geom = ConvGeometry(ly.stride, ly.padding, ly.dilation, ly.groups)
            return [(0, self._synapse("conv", ly.weight, b, input_max, signed, geometry=geom))]
        w_eff, exp = self._dense_weights(ly)
        w_eff = w_eff[:, : ly.weight.shape[1]]
        delays = ly.delay_matrix()
        if delays is None:
            return [(0, self._synapse("dense", w_eff, b, input_max, signed, weight_exp=exp))]
        return [
            (
                int(d),
                self._synapse(
                    "dense", np.where(delays == d, w_eff, 0), b, input_max, signed, weight_exp=exp
                ),
            )
            for d in np.unique(delays)
        ]

    @staticmethod
    def _dense_weights(ly: DenseLayer) -> tuple[np.ndarray, int]:
        """Lava's synapse weights (Nout, Nin [+ Nout]) and exponent; a recurrent layer's are
        optimized together (netx stacks ``weight`` and ``weight_rec``)."""
        w = np.asarray(ly.weight, dtype=np.int64)
        if isinstance(ly, RecurrentDenseLayer):
            w = np.hstack([w, np.asarray(ly.weight_rec, dtype=np.int64)])
        return dense_weights_as_lava(w)

    def _neurons(
        self,
        b: BuiltLayer,
        a: torch.Tensor | None,
        bias: torch.Tensor | int,
        resets: list[bool],
        record: tuple[str, ...],
        shape: tuple[int, int],
    ) -> TimelineTrace:
        """The layer's neurons over the run. ``a``: (N, T, *shape) or None (no synaptic input:
        the bias-driven input layer); ``shape`` = (N, T). Samples go in blocks of about
        ``NEURON_BLOCK`` neurons on the CPU (the step's temporaries stay in cache)."""
        n, steps = shape
        neuron = b.neuron
        size = math.prod(layer_shape(b.layer))
        full = (n, steps, *layer_shape(b.layer))
        cuba = isinstance(neuron, CubaNeuron)
        names = [r for r in record if r in state_names(b)]
        states = {r: torch.empty(full, dtype=torch.int32) for r in names}
        messages = torch.empty(full, dtype=torch.bool if cuba else torch.int32, device=self.device)
        rec = self._recurrent(b)
        # u, v in int32 when |a| is small enough that no int32 overflow can occur (cuba_step);
        # SDNN state in int32 when no sum of the run can leave int32 (int32_safe_bound)
        if cuba:
            safe = rec is None and (a is None or a.dtype == torch.int32)
        else:
            safe = self._sdnn_int32_safe(b, a, bias, steps, rec)
        dtype = torch.int32 if safe else torch.int64
        bias_t = torch.as_tensor(bias, dtype=dtype, device=self.device)
        per_sample_bias = (
            bias_t.ndim == 1 + len(full) - 2 and bias_t.shape[0] == n and bias_t.ndim > 0
        )
        sub = n if self.device.type == "cuda" else max(1, NEURON_BLOCK // max(1, size))
        for lo in range(0, n, sub):
            hi = min(n, lo + sub)
            blk_bias = bias_t[lo:hi] if per_sample_bias else bias_t
            u = torch.zeros((hi - lo, *full[2:]), dtype=dtype, device=self.device)
            v = torch.zeros_like(u)
            sd = SigmaDeltaState.zeros(u, dtype)
            prev = None
            for t in range(steps):
                a_t = u.new_zeros(()).expand_as(u) if a is None else a[lo:hi, t].to(dtype)
                if rec is not None and prev is not None:
                    a_t = a_t + rec(prev)
                if cuba:
                    if resets[t]:
                        u, v = torch.zeros_like(u), torch.zeros_like(v)
                    spikes, u, v = cuba_step(a_t, u, v, blk_bias, neuron, int32_safe=safe)
                    if u.shape != v.shape:  # u = a << 6 of a broadcast zero input
                        u = u.expand_as(v)
                    messages[lo:hi, t] = spikes
                    prev, now = spikes, {"u": u, "v": v}
                else:
                    msg, sd = self._sdnn_step(b, a_t, sd, blk_bias, safe)
                    messages[lo:hi, t] = msg.to(torch.int32)
                    prev, now = msg, {"sigma": sd.sigma, "act": sd.act, "residue": sd.residue}
                for r in names:
                    states[r][lo:hi, t] = now[r].to(torch.int32).cpu()
        return TimelineTrace(b.index, b.layer.kind, neuron.kind, messages, states)

    @staticmethod
    def _sdnn_int32_safe(b: BuiltLayer, a, bias, steps: int, rec) -> bool:
        """Whether this SDNN layer's state may run in int32 without wraps: a SigmaDelta or
        Sigma layer (not the Delta input layer) without recurrence whose measured ``max |a|``
        over the run keeps every sum inside int32 (:func:`int32_safe_bound`)."""
        if isinstance(b.layer, InputLayer) or rec is not None or a is None:
            return False
        a_max = 0
        if a.numel():
            lo, hi = torch.aminmax(a)
            a_max = max(-int(lo), int(hi))
        bias_t = torch.as_tensor(bias)
        bias_max = int(bias_t.abs().max()) if bias_t.numel() else 0
        return int32_safe_bound(a_max, steps, bias_max, b.neuron.vth_mant)

    @staticmethod
    def _sdnn_step(b: BuiltLayer, a_t, sd, bias, safe: bool = False):
        neuron = b.neuron
        if isinstance(b.layer, InputLayer):
            return delta_step(a_t, sd, neuron.vth_mant)
        if neuron.sigma_output:
            return sigma_step(a_t, sd, int32_safe=safe)
        return sigma_delta_step(a_t, sd, bias, neuron.vth_mant, int32_safe=safe)

    def _recurrent(self, b: BuiltLayer):
        """``s -> (W_rec . s) >> -exp`` of a recurrent dense layer, else None."""
        ly = b.layer
        if not isinstance(ly, RecurrentDenseLayer):
            return None
        w_eff, exp = self._dense_weights(ly)
        w_rec = w_eff[:, ly.weight.shape[1] :]
        binary = b.binary_input
        limit = 1 if binary or isinstance(ly.neuron, CubaNeuron) else SDNN_MESSAGE_MAX * 256
        syn = IntegerSynapse(
            "dense",
            w_rec,
            input_max=limit,
            device=self.device,
            weight_exp=exp,
            signed=not isinstance(ly.neuron, CubaNeuron),
        )

        def apply(s: torch.Tensor) -> torch.Tensor:
            s = (s != 0) if binary else s.to(torch.int64)
            return syn(s.reshape(s.shape[0], -1)).to(torch.int64)

        return apply
