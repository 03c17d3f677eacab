"""The one back-end runner: a network's samples on the emulator or on Lava, in memory-bounded
chunks, predicted by the network's rule (:mod:`snn2loihi.readout`).

``run``, ``eval``, ``parity``, the demo and export's accuracy checks all run a back end through a
:class:`Runner`: per-sample clock (snn2loihi's convention, see ``deploy/emulator.py``) or Lava's
global clock (:class:`GlobalClock`, ``deploy/timeline.py``). The emulator is built once per
runner, so its synapses are prepared once for all chunks.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from snn2loihi.arrays import memory_budget
from snn2loihi.deploy.emulator import Emulator, check_input
from snn2loihi.deploy.lava_runner import run_lava
from snn2loihi.deploy.timeline import Timeline, check_timeline_input, drive_for
from snn2loihi.errors import InputDataError, LavaRunError
from snn2loihi.progress import progress as progress_bar
from snn2loihi.readout import READOUT_V, predict, prediction_rule
from snn2loihi.schema import NetXNetwork

BACKENDS = ("emulator", "lava", "loihi2")


@dataclass(frozen=True)
class GlobalClock:
    """A run on Lava's global clock: how the input drives the network, the steps of each
    sample's run, netx's resets and the states to record (see ``deploy/timeline.py``)."""

    drive: str
    steps: int
    timeline: Timeline = Timeline()
    record: tuple[str, ...] = ()

    def lava_request(self, record: tuple[str, ...] | None = None) -> dict:
        """The ``clock`` of :func:`~snn2loihi.deploy.lava_runner.run_lava` (``record``
        replaces this clock's)."""
        t = self.timeline
        return {
            "steps": self.steps,
            "reset_interval": t.reset_interval,
            "reset_offset": t.reset_offset,
            "drive": self.drive,
            "record": self.record if record is None else record,
        }

    def settings(self) -> dict:
        """What a report shows of this clock: steps, netx's resets and the drive."""
        return {k: v for k, v in self.lava_request().items() if k != "record"}


CLOCKS = ("auto", "sample", "global")


def choose_clock(
    net: NetXNetwork,
    time_axis: bool,
    steps: int | None,
    *,
    choice: str = "auto",
    timeline: Timeline | None = None,
    record: tuple[str, ...] = (),
    name: object = "network",
    images: object = "images",
) -> GlobalClock | None:
    """The clock of a run: None for the per-sample clock, else a :class:`GlobalClock`.

    ``time_axis``: the input is (N, T, *input_shape) (else images, which drive an input
    neuron's bias for ``steps`` steps, or are shown for them). ``choice``: ``auto`` takes the
    global clock where the network (input neuron, SDNN, delays, recurrence), images without
    a time axis, resets (``timeline``, default none) or records need it; ``sample`` refuses a
    network that needs it.
    ``name`` (the file) and ``images`` (the input's source) start the refusals."""
    timeline = timeline or Timeline()
    wanted = not net.plain or not time_axis or timeline.reset_interval is not None or record
    if choice == "sample" and not net.plain:
        raise InputDataError(
            f"{name}: --clock sample needs a network without input neuron, SDNN, delays or "
            "recurrence; this one runs on the global clock"
        )
    if choice == "sample" or (choice == "auto" and not wanted):
        return None
    drive = drive_for(net, time_axis)
    if drive == "bias" and steps is None:
        raise InputDataError(
            f"{images}: images drive the input neuron's bias; give --steps T (steps per run)"
        )
    return GlobalClock(drive, steps, timeline, tuple(record))


@dataclass
class Deadline:
    """A timeout (seconds, None: none) shared by several runs; once it has passed,
    :meth:`left` refuses with :class:`LavaRunError` naming ``name`` and ``what`` was done."""

    timeout: float | None
    name: object
    what: str = "parity"
    start: float = field(default_factory=time.monotonic)

    def left(self) -> float | None:
        """Seconds left (None without a timeout)."""
        if self.timeout is None:
            return None
        left = self.start + self.timeout - time.monotonic()
        if left <= 0:
            raise LavaRunError(
                f"{self.name}: {self.what} exceeded the timeout of {self.timeout:g} s and was "
                "stopped"
            )
        return left


@dataclass
class RunResult:
    """Samples ``[lo, lo + n)`` of a run on one back end (a chunk, or all chunks joined).

    ``rule``: the network's prediction rule; ``spikes``: the output layer's messages
    (n, T, *shape) (uint8 spikes, int32 SDNN messages); ``v_last``: its ``v`` (n, *shape) int32
    after the last step (rule ``readout_v``, else None); ``predictions`` (n,) int64 by the rule;
    ``layer_spikes``: non-zero messages per layer index (None where only the output layer was
    probed); ``records``: traces (n, T, *shape) named ``s3``, ``u3``, ... by layer index
    (per-sample clock with ``traces``: every layer's spikes, the output layer's ``u`` and ``v``;
    global clock: every built layer's messages and the clock's records); ``graded``: the input
    went as graded 8-bit messages."""

    rule: str
    spikes: np.ndarray
    v_last: np.ndarray | None
    predictions: np.ndarray
    layer_spikes: dict[int, int] | None
    records: dict[str, np.ndarray]
    graded: bool
    lo: int = 0


def bytes_per_sample(net: NetXNetwork, steps: int) -> int:
    """Peak memory of one sample in a run that keeps every trace (parity): int64 input, and
    per neuron and step the emulator's spike, Lava's spike and Lava's int32 step record (read
    back and reordered: 8 bytes)."""
    neurons = sum(math.prod(ly.shape) for _, ly in net.synaptic_layers)
    return steps * (8 * math.prod(net.input_shape) + 10 * neurons)


def samples_per_chunk(
    net: NetXNetwork, steps: int, budget: int | None = None, where: object | None = None
) -> int:
    """How many samples one chunk may hold so that a chunk takes at most a quarter of ``budget``
    (default :func:`snn2loihi.arrays.memory_budget`); ``where`` (the file) starts the refusal."""
    budget = memory_budget() if budget is None else budget
    need = bytes_per_sample(net, steps)
    if 4 * need > budget:
        hint = "use fewer steps" if steps > 1 else "the network is too large for this machine"
        raise InputDataError(
            f"{where or 'parity'}: one sample of {steps} steps needs about "
            f"{need / 2**30:.3g} GiB for parity, more than a quarter of the memory budget "
            f"({budget / 2**30:.3g} GiB); {hint}"
        )
    return max(1, budget // (4 * need))


class Runner:
    """One back end (``emulator``, ``lava`` or ``loihi2``) on ``net``, the file ``path``.

    ``path`` None: a network held only in memory (Lava gets it written into each run's own
    folder); ``name`` names it in errors. ``clock``: Lava's global clock (None: the per-sample
    clock). ``device``, ``batch_size``, ``compiled``: the emulator's
    (:class:`~snn2loihi.deploy.emulator.Emulator`). ``deadline`` bounds every Lava run.
    ``every_layer``: count every layer's spikes (Lava then probes every layer, the emulator
    always counts them); ``traces``: keep the traces of :attr:`RunResult.records` (per-sample
    clock: of every layer the emulator ran or Lava probed).
    """

    def __init__(
        self,
        net: NetXNetwork,
        path: str | Path | None,
        backend: str,
        *,
        clock: GlobalClock | None = None,
        device: str = "cpu",
        batch_size: int = 256,
        compiled: bool = False,
        deadline: Deadline | None = None,
        name: str | None = None,
        every_layer: bool = True,
        traces: bool = False,
    ):
        if backend not in BACKENDS:
            raise InputDataError(f"--backend {backend}: choose from {', '.join(BACKENDS)}")
        self.net, self.path, self.backend, self.clock = net, path, backend, clock
        self.name = name or str(path)
        self.deadline = deadline or Deadline(None, self.name)
        self.every_layer, self.traces = every_layer, traces
        self.rule = prediction_rule(net)
        self.emulator = None
        if backend == "emulator":
            self.emulator = Emulator(net, device=device, batch_size=batch_size, compiled=compiled)

    def chunks(
        self, x: np.ndarray, steps: int | None = None, chunk: int | None = None
    ) -> Iterator[RunResult]:
        """Run ``x`` chunk by chunk: (N, T, *input_shape), or images (N, *input_shape) shown as
        graded input at each of ``steps`` steps (the bias values of the global clock's
        ``bias`` drive, without ``steps``). ``chunk``: samples per chunk (default
        :func:`samples_per_chunk`)."""
        if chunk is None:
            t = steps or (self.clock.steps if self.clock else int(np.shape(x)[1]))
            chunk = samples_per_chunk(self.net, t, where=self.name)
        for lo in range(0, max(len(x), 1), chunk):  # no samples: the input check refuses
            part = x[lo : lo + chunk]
            if steps is not None:
                part = np.broadcast_to(part[:, None], (len(part), steps, *part.shape[1:]))
            if self.clock is None:
                yield self._sample_clock(lo, part)
            else:
                yield self._global_clock(lo, part)

    def run(
        self,
        x: np.ndarray,
        steps: int | None = None,
        *,
        chunk: int | None = None,
        progress: bool = False,
        desc: str | None = None,
    ) -> RunResult:
        """:meth:`chunks` joined; ``progress``: a bar (or a logged line) per chunk."""
        it = self.chunks(x, steps, chunk)
        if progress:
            total = -(-len(x) // chunk) if chunk else None
            it = progress_bar(it, desc=desc or self.backend, total=total, unit="chunk")
        return join(list(it))

    def _sample_clock(self, lo: int, part: np.ndarray) -> RunResult:
        xt, graded = check_input(part, self.net.input_shape)
        state = "last" if self.traces or self.rule == READOUT_V else False
        if self.emulator is not None:
            res = self.emulator.run(
                xt, record_state=state, spikes="all" if self.traces else "output"
            )
            out = res.output.numpy().astype(np.uint8)
            totals = {t.index: t.total_spikes() for t in res.layers}
            spikes = {t.index: t.spikes for t in res.layers} if self.traces else {}
            u, v = res.layers[-1].u, res.layers[-1].v
        else:
            res = run_lava(
                self.path, xt.numpy(), graded=graded, probe_all=self.every_layer,
                record_state=state, backend=self.backend, timeout=self.deadline.left(),
                net=self.net, name=self.name,
            )  # fmt: skip
            out = res.output
            spikes = dict(zip(res.layer_indices, res.spikes, strict=True))
            totals = {i: int(np.count_nonzero(a)) for i, a in spikes.items()}
            totals = totals if self.every_layer else None
            u, v = (res.u[-1], res.v[-1]) if state else (None, None)
        u, v = (None if a is None else np.asarray(a) for a in (u, v))
        records = {}
        if self.traces:
            i = self.net.synaptic_layers[-1][0]
            records = {f"s{k}": np.asarray(a) for k, a in spikes.items()} | {f"u{i}": u, f"v{i}": v}
        v_last = None if self.rule != READOUT_V else v[:, -1]
        pred = predict(self.rule, out, v_last)
        return RunResult(self.rule, out, v_last, pred, totals, records, graded, lo)

    def _global_clock(self, lo: int, part: np.ndarray) -> RunResult:
        clock = self.clock
        extra = ("v",) if self.rule == READOUT_V else ()
        record = tuple(dict.fromkeys((*clock.record, *extra)))
        xt, graded = check_timeline_input(self.net, part, clock.drive)
        if self.emulator is not None:
            traces = self.emulator.run_netx(
                xt.numpy(), drive=clock.drive, steps=clock.steps, timeline=clock.timeline,
                record=record,
            )  # fmt: skip
            records = {}
            for tr in traces:
                msgs = tr.messages.numpy()
                records[f"s{tr.index}"] = msgs.astype(np.uint8 if tr.neuron == "CUBA" else np.int32)
                records.update({f"{k}{tr.index}": a.numpy() for k, a in tr.states.items()})
        else:
            records = run_lava(
                self.path, xt.numpy(), graded=graded, backend=self.backend, net=self.net,
                timeout=self.deadline.left(), clock=clock.lava_request(record), name=self.name,
            ).records  # fmt: skip
        out_index = self.net.synaptic_layers[-1][0]
        spikes = records[f"s{out_index}"]
        v_last = records[f"v{out_index}"][:, -1] if self.rule == READOUT_V else None
        named = {k: record_name(k) for k in records}
        totals = {i: int(np.count_nonzero(records[k])) for k, (r, i) in named.items() if r == "s"}
        kept = ("s", *clock.record)
        records = {k: a for k, a in records.items() if named[k][0] in kept}
        pred = predict(self.rule, spikes, v_last)
        return RunResult(self.rule, spikes, v_last, pred, totals, records, graded, lo)


def record_name(key: str) -> tuple[str, int]:
    """``("sigma", 3)`` of the record key ``"sigma3"``: the record and the layer index."""
    name = key.rstrip("0123456789")
    return name, int(key[len(name) :])


def join(chunks: list[RunResult]) -> RunResult:
    """One :class:`RunResult` of the chunks of a run, in order."""
    if len(chunks) == 1:
        return chunks[0]

    def cat(arrays: list) -> np.ndarray | None:
        return None if arrays[0] is None else np.concatenate(arrays)

    totals = None
    if chunks[0].layer_spikes is not None:
        totals = {i: sum(c.layer_spikes[i] for c in chunks) for i in chunks[0].layer_spikes}
    return RunResult(
        rule=chunks[0].rule,
        spikes=cat([c.spikes for c in chunks]),
        v_last=cat([c.v_last for c in chunks]),
        predictions=cat([c.predictions for c in chunks]),
        layer_spikes=totals,
        records={k: cat([c.records[k] for c in chunks]) for k in chunks[0].records},
        graded=any(c.graded for c in chunks),
    )
