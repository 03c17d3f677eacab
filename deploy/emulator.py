"""Bit-exact PyTorch emulator of a NetX network on Loihi (CPU or GPU).

Time convention (the one the Lava runner uses with ``reset_interval=T, reset_offset=1``):
every layer starts each sample from ``u = v = 0`` when the sample's first input reaches it and
processes exactly that sample's T steps. Lava's one-step synapse delay then only shifts layer k
by k steps, so the emulator runs without delay: a layer's synapse is one batched GEMM over the
(step, sample) frames of a time chunk, and only its neurons (:class:`NeuronGroup`) loop over the
chunk's steps, keeping u and v from chunk to chunk. On the CPU a chunk is ``STEP_CHUNK`` steps of
a pass of samples and passes through every layer before the next, so each layer's synaptic input
is consumed in cache; on a GPU it is all T steps of the batch.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from snn2loihi.deploy.neuron_group import NeuronGroup
from snn2loihi.deploy.timeline import (
    Timeline,
    TimelineRunner,
    TimelineTrace,
    check_timeline_input,
)
from snn2loihi.devices import torch_device
from snn2loihi.errors import InputDataError, UnsupportedLayerError
from snn2loihi.loihi import GRADED_INPUT_MAX
from snn2loihi.netx_io import read_network
from snn2loihi.neuron_loop import STEP_CHUNK
from snn2loihi.schema import ConvLayer, DenseLayer, NetXNetwork
from snn2loihi.synapse import ConvGeometry, IntegerSynapse

log = logging.getLogger(__name__)


@dataclass
class LayerTrace:
    """What one conv/dense layer did: spikes (N, T, *shape) bool; u, v (N, T, *shape) int32.
    ``counts``: spikes per sample (N,) int64, where the run kept no spike trace of this layer
    (``spikes`` is then None)."""

    index: int
    kind: str
    spikes: torch.Tensor | None
    u: torch.Tensor | None = None
    v: torch.Tensor | None = None
    counts: torch.Tensor | None = None

    def total_spikes(self) -> int:
        """All spikes of this layer, all samples and steps."""
        return int(self.counts.sum() if self.spikes is None else self.spikes.sum())


@dataclass
class EmulatorResult:
    """Per-layer traces in network order; ``output`` is the last layer's spikes (N, T, *shape)."""

    layers: list[LayerTrace] = field(default_factory=list)

    @property
    def output(self) -> torch.Tensor:
        return self.layers[-1].spikes


def check_input(
    x: np.ndarray | torch.Tensor, input_shape: tuple[int, ...]
) -> tuple[torch.Tensor, bool]:
    """Validate an input batch and tell whether it is graded.

    ``x``: (N, T, *input_shape) integers in 0..255; binary (0/1) input is sent as spikes, anything
    else as graded 8-bit input (``input_message_bits=8``). Returns (uint8 tensor, graded).
    """
    if not isinstance(x, torch.Tensor):
        x = np.asarray(x)
        if not x.flags.writeable:  # a broadcast view or read-only file: torch wants its own copy
            x = np.array(x)
    t = torch.as_tensor(x)
    if t.ndim != 2 + len(input_shape) or tuple(t.shape[2:]) != tuple(input_shape):
        raise InputDataError(
            f"input has shape {tuple(t.shape)}, expected (samples, steps, {', '.join(map(str, input_shape))})"
        )
    if t.shape[0] < 1 or t.shape[1] < 1:
        raise InputDataError(
            f"input has shape {tuple(t.shape)}: need at least one sample and one step"
        )
    if t.is_floating_point():
        if not torch.isfinite(t).all() or not torch.equal(t, t.trunc()):
            raise InputDataError(
                "input holds non-integer values; use spikes (0/1) or 8-bit integers"
            )
    elif t.dtype == torch.bool:
        t = t.view(torch.uint8)
    lo, hi = (int(v) for v in torch.aminmax(t))
    if lo < 0 or hi > GRADED_INPUT_MAX:
        raise InputDataError(f"input values span [{lo}, {hi}], expected 0..{GRADED_INPUT_MAX}")
    return t.to(torch.uint8), hi > 1


PASS_BYTES = 2**22  # CPU: the int32 synaptic input of the largest layer held per time chunk


def pass_samples(layers, steps: int, budget: int | None = None) -> int:
    """Samples per pass through the network on the CPU: the largest layer's int32 synaptic
    input over ``steps`` steps (one time chunk) within about ``budget`` bytes (default
    :data:`PASS_BYTES`; at least one sample)."""
    largest = max(math.prod(ly.shape) for ly in layers)
    return max(1, (PASS_BYTES if budget is None else budget) // (4 * steps * largest))


def pass_shape(layers, n: int, steps: int) -> tuple[int, int]:
    """(samples, steps) of one time chunk of a CPU pass for a batch of ``n`` samples of ``steps``
    steps: :func:`pass_samples` of :data:`~snn2loihi.neuron_loop.STEP_CHUNK` steps; where those are
    the whole batch, the chunk grows by whole ``STEP_CHUNK`` steps (up to all T) within the
    same budget, so small batches and small networks make few calls per step."""
    chunk = min(STEP_CHUNK, steps)
    samples = min(n, pass_samples(layers, chunk))
    if samples == n and steps > chunk:
        fits = pass_samples(layers, 1) // samples  # steps of the whole batch in the budget
        chunk = steps if fits >= steps else max(chunk, fits - fits % STEP_CHUNK)
    return samples, chunk


NETX_PASS_BYTES = 2**26  # CPU: run_netx's int32 synaptic input of the largest layer per pass


def netx_pass_samples(net: NetXNetwork, steps: int) -> int:
    """Samples per pass of :meth:`Emulator.run_netx` on the CPU: the largest layer's int32
    synaptic input over all ``steps`` within about :data:`NETX_PASS_BYTES` (at least one
    sample). Each sample is its own run on the global clock, so passes give the same integers;
    they bound the memory (lava-dl's PilotNet LIF at 15 steps: 4.6 MB per sample for its first
    conv alone, 2.5 GiB more for a batch of 256 in one pass)."""
    return pass_samples(net.layers, steps, NETX_PASS_BYTES)


@dataclass
class _LayerLayout:
    """How one layer's neurons lie in its (T, N, m) traces: ``shape`` (C, H, W) or (D,) as the
    network states it; ``channels_last``: a conv's m neurons in (H, W, C) order (as the CPU's
    conv kernels leave them), else in the order of ``shape``."""

    shape: tuple[int, ...]
    channels_last: bool

    def flat(self, a: torch.Tensor, k: int, n: int) -> torch.Tensor:
        """Synaptic input (k * n, *shape) of frames ordered step by step -> (k, n, m)."""
        if self.channels_last:
            a = a.permute(0, 2, 3, 1)
        return a.reshape(k, n, -1)

    def bias(self, ly: ConvLayer | DenseLayer, device: torch.device) -> torch.Tensor:
        """The layer's bias mantissa per neuron (m,) int64, in this order."""
        m = math.prod(self.shape)
        if ly.bias is None:
            return torch.zeros(m, dtype=torch.int64, device=device)
        b = torch.as_tensor(np.asarray(ly.bias), dtype=torch.int64, device=device).reshape(-1)
        if len(self.shape) == 1:
            return b
        positions = self.shape[1] * self.shape[2]
        return b.repeat(positions) if self.channels_last else b.repeat_interleave(positions)

    def frames(self, spikes: torch.Tensor, to_dense: bool) -> torch.Tensor:
        """Spikes (k, n, m) uint8 -> the next layer's input frames (k * n, C, H, W) bool (a
        channels-last view where they lie so), or for a dense layer (k * n, m) as they lie: in
        (H, W, C) order where channels-last (a view, for :func:`dense_in_hwc`'s synapse),
        else in (C, H, W) order."""
        if to_dense:
            return spikes.view(torch.bool).reshape(-1, spikes.shape[-1])
        frames = spikes.view(torch.bool).reshape(-1, *self._stored())
        return frames.permute(0, 3, 1, 2) if self.channels_last else frames

    def _stored(self) -> tuple[int, ...]:
        c, *hw = self.shape
        return (*hw, c) if self.channels_last else self.shape

    def trace(self, t: torch.Tensor) -> torch.Tensor:
        """A (T, N, m) trace -> its (N, T, *shape) view (same memory)."""
        t = t.view(*t.shape[:2], *self._stored()).transpose(0, 1)
        return t.permute(0, 1, 4, 2, 3) if self.channels_last else t


def dense_in_hwc(weight: np.ndarray, chw: tuple[int, ...]) -> np.ndarray:
    """A dense layer's weights (Nout, C * H * W), columns in the (C, H, W) order of its input
    ``chw``, with the columns reordered to (H, W, C): the same synapse for input that lies
    channels-last, read without a reordering copy (the integer sums are exact in any order,
    and Lava's dense weight processing is per weight with whole-matrix statistics)."""
    w = np.asarray(weight)
    c, h, wd = chw
    return w.reshape(w.shape[0], c, h, wd).transpose(0, 2, 3, 1).reshape(w.shape[0], -1)


def _layout(ly, a: torch.Tensor) -> _LayerLayout:
    """The layout of ``ly``'s neurons as its synapse's first output ``a`` holds them."""
    cl = isinstance(ly, ConvLayer) and a.ndim == 4 and a.is_contiguous(memory_format=torch.channels_last)  # fmt: skip
    return _LayerLayout(tuple(ly.shape), bool(cl))


def _sample_counts(group: NeuronGroup, steps: int) -> torch.Tensor:
    """Each sample's spike count (samples,) int64 on the CPU of a pass's counting ``group``
    (summed in int32 where that is exact)."""
    wide = group.counts.shape[1] * steps >= 2**31
    per = group.counts.sum(1, dtype=torch.int64 if wide else torch.int32)
    return per.to("cpu", torch.int64)


def _input_frames(x: torch.Tensor, t: int, k: int, graded: bool, dense: bool) -> torch.Tensor:
    """Steps ``t .. t + k`` of the input ``x`` (n, T, *input_shape) uint8 as frames ordered
    step by step (k * n, *input_shape) (bool for spikes): channels-last for a conv (one copy,
    in the layout its kernels read), flattened for a dense first layer."""
    part = x[:, t : t + k].transpose(0, 1)
    if not graded:  # uint8 0/1: the same bytes as bool
        part = part.view(torch.bool)
    if dense:
        return part.reshape(k * x.shape[0], -1)
    if part.ndim != 5:
        return part.reshape(k * x.shape[0], *x.shape[2:])
    frames = part.permute(0, 1, 3, 4, 2).reshape(k * x.shape[0], *x.shape[3:], x.shape[2])
    return frames.permute(0, 3, 1, 2)


def _whole_batch_trace(part: TimelineTrace, n: int) -> TimelineTrace:
    """An empty CPU trace of ``n`` samples shaped and typed as one pass's ``part``: the passes
    are copied into it as they come (no second copy of every trace for a concatenation)."""

    def empty(t: torch.Tensor) -> torch.Tensor:
        return torch.empty((n, *t.shape[1:]), dtype=t.dtype)

    states = {name: empty(t) for name, t in part.states.items()}
    return TimelineTrace(part.index, part.kind, part.neuron, empty(part.messages), states)


def _keep(traces: list, parts: tuple, t: int, lo: int, n: int, steps: int) -> None:
    """Copy each given part (k, n_pass, m) into its (T, N, m) CPU trace at steps ``t ..``,
    samples ``lo ..``; a trace is made at its first part."""
    for i, part in enumerate(parts):
        if part is not None:
            if traces[i] is None:
                traces[i] = torch.empty((steps, n, part.shape[2]), dtype=part.dtype)
            traces[i][t : t + part.shape[0], lo : lo + part.shape[1]] = part


def _summed_input(
    syn: IntegerSynapse, s: torch.Tensor, shortcuts: list[tuple[IntegerSynapse, torch.Tensor]]
) -> torch.Tensor:
    """A residual layer's synaptic input: its own synapse of ``s`` plus each shortcut synapse
    of its source's spike frames, summed in int64 as Lava sums the synapses into one
    ``a_in`` (each conv's output wrapped to 24 bits first, so no sum nears int32's range)."""
    a = syn(s).to(torch.int64)
    for sc, frames in shortcuts:
        a = a + sc(frames).to(torch.int64)
    return a


class Emulator:
    """Runs a NetX network exactly as Loihi/Lava's fixed-point simulator does.

    Args:
        net: a :class:`NetXNetwork` or a path to a ``.net`` file.
        device: torch device for the computation (``"cpu"``, ``"cuda"``).
        batch_size: samples processed at once (bounds memory): on a GPU, per chunk; on the
            CPU, at most this many samples per pass (:func:`pass_shape`,
            :func:`netx_pass_samples`; the passes write into the whole input's traces).
        compiled: on the CPU, run the neurons as fused kernels (:class:`NeuronGroup`
            ``compiled``): the same integers, several times faster once compiled (seconds,
            once per process and neuron kind). Traces of ``u``/``v`` still run uncompiled.
    """

    def __init__(
        self,
        net: NetXNetwork | str | Path,
        device: str | torch.device = "cpu",
        batch_size: int = 256,
        compiled: bool = False,
    ):
        self.net = net if isinstance(net, NetXNetwork) else read_network(net)
        self.device = torch_device(device)
        self.batch_size = batch_size
        self.compiled = compiled
        self._synapses: dict[bool, list[IntegerSynapse]] = {}
        self._shortcuts: dict[int, list[tuple[int, IntegerSynapse]]] | None = None
        self._hwc_synapses: dict[int, IntegerSynapse] = {}  # dense layer k after channels-last

    def _prepare(self, graded: bool) -> list[IntegerSynapse]:
        if graded not in self._synapses:
            syns = []
            in_shape = tuple(self.net.input_shape)
            for k, (_, ly) in enumerate(self.net.synaptic_layers):
                input_max = GRADED_INPUT_MAX if (k == 0 and graded) else 1
                geom = hw = None
                if isinstance(ly, ConvLayer):
                    geom = ConvGeometry(ly.stride, ly.padding, ly.dilation, ly.groups)
                    hw = in_shape[1:] if len(in_shape) == 3 else None
                syns.append(
                    IntegerSynapse(
                        ly.kind,
                        ly.weight,
                        input_max=input_max,
                        geometry=geom,
                        device=self.device,
                        input_hw=hw,
                    )
                )
                in_shape = tuple(ly.shape)
            self._synapses[graded] = syns
        return self._synapses[graded]

    def _prepare_shortcuts(self) -> dict[int, list[tuple[int, IntegerSynapse]]]:
        """Each residual layer's shortcut synapses by chain position: (source's position,
        synapse), made once. The validated delays align both paths, so in the per-sample
        convention a shortcut reads its source's spikes of the same step."""
        if self._shortcuts is None:
            position = {i: k for k, (i, _) in enumerate(self.net.synaptic_layers)}
            self._shortcuts = {}
            for k, (_, ly) in enumerate(self.net.synaptic_layers):
                for sc in getattr(ly, "shortcuts", ()):
                    source = self.net.layers[sc.source]
                    syn = IntegerSynapse(
                        "conv",
                        sc.weight,
                        input_max=1,
                        geometry=ConvGeometry(sc.stride, sc.padding, sc.dilation, sc.groups),
                        device=self.device,
                        input_hw=tuple(source.shape[1:]),
                    )
                    self._shortcuts.setdefault(k, []).append((position[sc.source], syn))
        return self._shortcuts

    def _dense_after(self, k: int, layout: _LayerLayout, graded: bool) -> IntegerSynapse:
        """The synapse of dense layer ``k`` (>= 1: it reads spikes) for input that lies as
        ``layout`` (layer k - 1's, a conv) holds it: where channels-last, :func:`dense_in_hwc`'s
        (made once, cached), else the one :meth:`_prepare` made for this input kind."""
        syn = self._prepare(graded)[k]
        if not layout.channels_last:
            return syn
        if k not in self._hwc_synapses:
            ly = self.net.synaptic_layers[k][1]
            w = dense_in_hwc(ly.weight, layout.shape)
            self._hwc_synapses[k] = IntegerSynapse("dense", w, input_max=1, device=self.device)
        return self._hwc_synapses[k]

    def run(
        self,
        x: np.ndarray | torch.Tensor,
        *,
        record_state: bool | str = False,
        spikes: str = "all",
    ) -> EmulatorResult:
        """Run a batch of samples; ``x`` is (N, T, *input_shape) (see :func:`check_input`).

        Returns every conv/dense layer's spikes (``spikes="output"``: the output layer's, and
        per-sample spike counts of the others: no trace of tens of MiB is allocated and
        page-faulted per batch), and ``u``/``v`` of every layer when ``record_state`` is True
        (``"last"``: of the output layer only).
        """
        if record_state not in (False, True, "last"):
            raise ValueError(f"record_state must be False, True or 'last', not {record_state!r}")
        if spikes not in ("all", "output"):
            raise ValueError(f"spikes must be 'all' or 'output', not {spikes!r}")
        if not self.net.plain:
            raise UnsupportedLayerError(
                "this network (input neuron, SDNN neurons, delays or recurrence) runs only on "
                "Lava's global clock: use run_netx (CLI: --reset-interval/--reset-offset)"
            )
        x, graded = check_input(x, self.net.input_shape)
        # the CPU goes through the samples in passes of a few (_run_chunk) that write into the
        # whole input's traces: one chunk, no second copy of every trace for a concatenation
        size = len(x) if self.device.type == "cpu" else self.batch_size
        chunks = [
            self._run_chunk(c, graded, record_state, spikes == "all") for c in torch.split(x, size)
        ]
        result = EmulatorResult()
        for k, (i, ly) in enumerate(self.net.synaptic_layers):

            def cat(name: str, k: int = k) -> torch.Tensor | None:
                parts = [getattr(c.layers[k], name) for c in chunks]
                if parts[0] is None or len(parts) == 1:
                    return parts[0]
                return torch.cat(parts)

            traced = (cat(name) for name in ("spikes", "u", "v", "counts"))
            result.layers.append(LayerTrace(i, ly.kind, *traced))
        return result

    @torch.no_grad()
    def run_netx(
        self,
        x: np.ndarray | torch.Tensor,
        *,
        drive: str,
        steps: int | None = None,
        timeline: Timeline | None = None,
        record: tuple[str, ...] = (),
    ) -> list[TimelineTrace]:
        """Run every sample as its own run on Lava's global clock, as netx builds the network
        (:mod:`snn2loihi.deploy.timeline`): any NetX network, input neurons, SDNN, delays,
        recurrence and netx's resets included.

        ``x``: (N, *input_shape) bias values for ``drive="bias"`` (run for ``steps`` steps),
        else (N, T, *input_shape). Returns one trace per layer built, in order.
        """
        xt, graded = check_timeline_input(self.net, x, drive)
        if drive == "bias":
            if steps is None or steps < 1:
                raise InputDataError("driving the input neuron's bias needs steps >= 1")
        else:
            steps = int(xt.shape[1])
        runner = TimelineRunner(self.net, self.device, timeline or Timeline())
        size = self.batch_size
        if self.device.type == "cpu":
            size = min(size, netx_pass_samples(self.net, steps))
        traces: list[TimelineTrace] = []
        lo = 0
        for c in torch.split(xt, size):  # each pass's traces go into the whole batch's (CPU)
            part = runner.run(c, drive, graded, steps, tuple(record))
            if not traces:
                traces = [_whole_batch_trace(p, len(xt)) for p in part]
            for whole, p in zip(traces, part, strict=True):
                whole.messages[lo : lo + len(c)] = p.messages
                for name, state in p.states.items():
                    whole.states[name][lo : lo + len(c)] = state
            lo += len(c)
        return traces

    @torch.no_grad()
    def _run_chunk(
        self, x: torch.Tensor, graded: bool, record_state: bool | str, all_spikes: bool = True
    ) -> EmulatorResult:
        """All layers for ``x`` (N, T, *input_shape). On the CPU the samples go through the
        network in passes, and each pass in time chunks (:func:`pass_shape`: a few samples,
        ``neuron.STEP_CHUNK`` steps or more): every layer's synapse runs on the chunk's frames (ordered
        step by step) and its neurons advance through those steps before the next layer, so
        each layer's synaptic input is consumed while it is in cache. On a GPU a pass is the
        whole chunk of samples and all T steps. Traces keep the neurons' memory layout
        (time-major; channels-last for convs on the CPU): same values.
        ``all_spikes`` False: hidden layers keep per-sample spike counts, not their spikes."""
        n, steps = x.shape[:2]
        layers = [ly for _, ly in self.net.synaptic_layers]
        last = len(layers) - 1
        synapses = list(self._prepare(graded))  # dense layers after a conv: see _dense_after
        shortcuts = self._prepare_shortcuts()
        sources = {src for reads in shortcuts.values() for src, _ in reads}
        cpu = self.device.type == "cpu"
        sub, chunk = pass_shape(layers, min(n, self.batch_size), steps) if cpu else (n, steps)
        recorded = [record_state is True or (record_state == "last" and k == last) for k in range(len(layers))]  # fmt: skip
        kept = [all_spikes or k == last for k in range(len(layers))]
        layouts: list[_LayerLayout | None] = [None] * len(layers)
        biases: list[torch.Tensor | None] = [None] * len(layers)  # per neuron, as laid out
        traces: list[list] = [[None, None, None] for _ in layers]  # spikes, u, v (T, N, m)
        counts = [None if kept[k] else torch.zeros(n, dtype=torch.int64) for k in range(len(layers))]  # fmt: skip
        for lo in range(0, n, sub):
            hi = min(n, lo + sub)
            xs = x[lo:hi].to(self.device)
            groups: list[NeuronGroup | None] = [None] * len(layers)
            for t in range(0, steps, chunk):
                k = min(chunk, steps - t)
                s = _input_frames(xs, t, k, graded, isinstance(layers[0], DenseLayer))
                frames: dict[int, torch.Tensor] = {}  # this chunk's spikes of shortcut sources
                for j, (syn, ly) in enumerate(zip(synapses, layers, strict=True)):
                    if j in shortcuts:
                        a = _summed_input(syn, s, [(sc, frames[src]) for src, sc in shortcuts[j]])
                    else:
                        a = self._synaptic_input(syn, s)
                    if layouts[j] is None:
                        layouts[j] = _layout(ly, a)
                        biases[j] = layouts[j].bias(ly, self.device)
                        if isinstance(ly, ConvLayer) and j < last and isinstance(layers[j + 1], DenseLayer):  # fmt: skip
                            synapses[j + 1] = self._dense_after(j + 1, layouts[j], graded)
                    layout = layouts[j]
                    if groups[j] is None:
                        groups[j] = self._neuron_group(
                            hi - lo, biases[j], ly, syn, steps, j in shortcuts, not kept[j]
                        )
                    spikes, u, v = groups[j].advance(layout.flat(a, k, hi - lo), recorded[j])
                    _keep(traces[j], (spikes if kept[j] else None, u, v), t, lo, n, steps)
                    if j in sources:
                        frames[j] = layout.frames(spikes, False)
                    if j < last:
                        s = layout.frames(spikes, isinstance(layers[j + 1], DenseLayer))
            for j, group in enumerate(groups):
                if counts[j] is not None:
                    counts[j][lo:hi] = _sample_counts(group, steps)
        return self._result(layouts, traces, counts)

    def _neuron_group(
        self,
        samples: int,
        bias: torch.Tensor,
        layer,
        syn: IntegerSynapse,
        steps: int,
        residual: bool,
        count: bool,
    ) -> NeuronGroup:
        """The neurons of ``layer`` for a pass of ``samples`` samples over ``steps`` steps;
        ``residual``: the input is summed with a shortcut's (int64, no int32 proof);
        ``count``: keep per-neuron spike counts instead of the spikes."""
        return NeuronGroup(
            samples,
            bias,
            layer.neuron,
            steps=steps,
            int32_safe=syn.int32_safe and not residual,
            input_bound=None if residual else syn.max_abs_output,
            compiled=self.compiled,
            count=count,
        )

    def _result(self, layouts: list, traces: list[list], counts: list) -> EmulatorResult:
        """The per-layer traces, out of the neurons' memory layout, as an EmulatorResult."""
        result = EmulatorResult()
        for (i, ly), layout, (spikes, u, v), c in zip(
            self.net.synaptic_layers, layouts, traces, counts, strict=True
        ):
            spikes = None if spikes is None else layout.trace(spikes).view(torch.bool)
            u, v = (None if t is None else layout.trace(t) for t in (u, v))
            result.layers.append(LayerTrace(i, ly.kind, spikes, u, v, c))
        return result

    @staticmethod
    def _synaptic_input(syn: IntegerSynapse, frames: torch.Tensor) -> torch.Tensor:
        """The synaptic input of ``frames`` (B, *in_shape): int32 where ``|a|`` is proven
        int32-safe (an exact float32 kernel result as it is: the neurons convert it while
        they read it), else int64."""
        a = syn(frames, exact_float=syn.int32_safe)
        return a if a.is_floating_point() else a.to(torch.int32 if syn.int32_safe else torch.int64)
