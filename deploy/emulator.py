"""Bit-exact PyTorch emulator of a NetX network on Loihi (CPU or GPU).

Time convention (the one the Lava runner uses with ``reset_interval=T, reset_offset=1``):
every layer starts each sample from ``u = v = 0`` when the sample's first input reaches it and
processes exactly that sample's T steps. Lava's one-step synapse delay then only shifts layer k
by k steps, so the emulator runs layer by layer without delay: the synapse of a whole layer is
one batched GEMM over all (sample, step) pairs, and only the neuron loops over time.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from snn2loihi.deploy.timeline import (
    Timeline,
    TimelineRunner,
    TimelineTrace,
    check_timeline_input,
)
from snn2loihi.devices import torch_device
from snn2loihi.errors import InputDataError, UnsupportedLayerError
from snn2loihi.loihi import GRADED_INPUT_MAX, INT32_SAFE_INPUT
from snn2loihi.netx_io import read_network
from snn2loihi.neuron import channels_last_order, integrate
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


PASS_BYTES = 2**23  # CPU: the int32 synaptic input of the largest layer held per pass


def pass_samples(layers, steps: int) -> int:
    """Samples per pass through the network on the CPU: the largest layer's int32 synaptic
    input over ``steps`` steps within about :data:`PASS_BYTES` (at least one sample)."""
    largest = max(math.prod(ly.shape) for ly in layers)
    return max(1, PASS_BYTES // (4 * steps * largest))


def _empty_in_layout(part: torch.Tensor, n: int) -> torch.Tensor:
    """An empty CPU tensor of ``n`` rows shaped and laid out in memory like ``part``'s rows."""
    if channels_last_order(part):
        nt, c, h, w = part.shape[1:]
        return torch.empty((n, nt, h, w, c), dtype=part.dtype).permute(0, 1, 4, 2, 3)
    return torch.empty((n, *part.shape[1:]), dtype=part.dtype)


def _spikes_per_sample(spikes: torch.Tensor) -> torch.Tensor:
    """Spikes per sample (N,) int64 of ``spikes`` (N, T, *shape) bool, summed in memory order
    (a channels-last trace is summed as it lies) and in int32 where that is exact (about twice
    as fast as an int64 sum)."""
    u8 = spikes.view(torch.uint8)
    if channels_last_order(u8):
        u8 = u8.permute(0, 1, 3, 4, 2)
    flat = u8.reshape(u8.shape[0], -1)
    wide = flat.shape[1] >= 2**31
    return flat.sum(1, dtype=torch.int64 if wide else torch.int32).to("cpu", torch.int64)


def _copy_rows(dst: torch.Tensor, lo: int, part: torch.Tensor) -> None:
    """``dst[lo : lo + len(part)] = part`` (bool as uint8: PyTorch's bool copies are slow)."""
    rows = dst[lo : lo + part.shape[0]]
    if part.dtype == torch.bool:
        rows, part = rows.view(torch.uint8), part.view(torch.uint8)
    rows.copy_(part)


class Emulator:
    """Runs a NetX network exactly as Loihi/Lava's fixed-point simulator does.

    Args:
        net: a :class:`NetXNetwork` or a path to a ``.net`` file.
        device: torch device for the computation (``"cpu"``, ``"cuda"``).
        batch_size: samples processed at once (bounds memory).
        compiled: on the CPU, run the neurons as fused kernels (:func:`snn2loihi.neuron.integrate`
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
        chunks = [
            self._run_chunk(c, graded, record_state, spikes == "all")
            for c in torch.split(x, self.batch_size)
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
        chunks = [
            runner.run(c, drive, graded, steps, tuple(record))
            for c in torch.split(xt, self.batch_size)
        ]
        traces = []
        for k, first in enumerate(chunks[0]):
            parts = [c[k] for c in chunks]
            traces.append(
                TimelineTrace(
                    first.index,
                    first.kind,
                    first.neuron,
                    torch.cat([p.messages.cpu() for p in parts]),
                    {r: torch.cat([p.states[r] for p in parts]) for r in first.states},
                )
            )
        return traces

    @torch.no_grad()
    def _run_chunk(
        self, x: torch.Tensor, graded: bool, record_state: bool | str, all_spikes: bool = True
    ) -> EmulatorResult:
        """All layers for ``x`` (N, T, *input_shape). On the CPU the samples go through the
        whole network in passes of :func:`pass_samples`, so each layer's synaptic input stays
        cache-sized instead of being allocated (and page-faulted) for the whole chunk. Traces
        keep the neurons' memory layout (channels-last for convs on the CPU): same values.
        ``all_spikes`` False: hidden layers keep per-sample spike counts, not their spikes."""
        n = x.shape[0]
        layers = [ly for _, ly in self.net.synaptic_layers]
        last = len(layers) - 1
        traces: list[list] = [[None, None, None] for _ in layers]  # spikes, u, v per layer
        counts = [None if all_spikes or k == last else torch.zeros(n, dtype=torch.int64)
                  for k in range(len(layers))]  # fmt: skip
        synapses = self._prepare(graded)
        sub = n if self.device.type != "cpu" else pass_samples(layers, x.shape[1])
        for lo in range(0, n, sub):
            hi = min(n, lo + sub)
            s = x[lo:hi].to(self.device)
            if not graded:  # uint8 0/1: the same bytes as bool
                s = s.view(torch.bool)
            for k, (syn, ly) in enumerate(zip(synapses, layers, strict=True)):
                keep = record_state is True or (record_state == "last" and k == last)
                s, u, v = self._layer(syn, ly, s, keep)
                if counts[k] is not None:  # per sample, while the pass is in cache
                    counts[k][lo:hi] = _spikes_per_sample(s)
                for j, part in enumerate((None if counts[k] is not None else s, u, v)):
                    if part is not None:
                        if traces[k][j] is None:
                            traces[k][j] = _empty_in_layout(part, n)
                        _copy_rows(traces[k][j], lo, part)
        result = EmulatorResult()
        for (i, ly), (spikes, u, v), c in zip(
            self.net.synaptic_layers, traces, counts, strict=True
        ):
            result.layers.append(LayerTrace(i, ly.kind, spikes, u, v, c))
        return result

    def _layer(self, syn: IntegerSynapse, ly, s: torch.Tensor, record: bool):
        """One layer's (spikes, u, v) (N, T, *shape) for its input ``s`` (N, T, *in_shape)."""
        n, steps = s.shape[:2]
        flat = s.reshape(n * steps, *s.shape[2:])
        if isinstance(ly, DenseLayer):
            flat = flat.reshape(n * steps, -1)
        int32_safe = syn.max_abs_output <= INT32_SAFE_INPUT
        a = syn(flat).to(torch.int32 if int32_safe else torch.int64).reshape(n, steps, *ly.shape)
        bias = self.layer_bias(ly, a)
        return integrate(
            a,
            bias,
            ly.neuron,
            int32_safe=int32_safe,
            record_state=record,
            compiled=self.compiled,
            input_bound=syn.max_abs_output,
        )

    @staticmethod
    def layer_bias(ly: ConvLayer | DenseLayer, a: torch.Tensor) -> torch.Tensor | int:
        """The layer's bias mantissa broadcastable to (N, *shape) of ``a`` (N, T, *shape)."""
        if ly.bias is None:
            return 0
        shape = a.shape[2:]
        bias = torch.as_tensor(ly.bias, dtype=a.dtype, device=a.device)
        return bias.view(-1, *([1] * (len(shape) - 1))) if len(shape) > 1 else bias.view(-1)
