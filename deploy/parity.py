"""Spike-for-spike comparison of Lava and the emulator on the same ``.net`` and input."""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from snn2loihi.deploy.emulator import check_input
from snn2loihi.deploy.runner import (
    Deadline,
    GlobalClock,
    Runner,
    record_name,
)
from snn2loihi.deploy.timeline import RECORDABLE, Timeline
from snn2loihi.errors import LavaRunError
from snn2loihi.netx_io import read_network
from snn2loihi.schema import NetXNetwork

log = logging.getLogger(__name__)


@dataclass
class LayerParity:
    """Figures for one layer; ``first_mismatch`` is (sample, step, neuron index in CHW) or None."""

    layer: int
    kind: str
    shape: list[int]
    lava_spikes: int
    emulator_spikes: int
    mismatches: int
    first_mismatch: list | None = None
    # u, v, ...: every layer on the global clock, the output layer on the per-sample clock
    state_mismatches: dict[str, int] = field(default_factory=dict)


@dataclass
class ParityReport:
    """Parity of every compared layer; ``equal`` is True only when every spike matches."""

    net: str
    samples: int
    steps: int
    graded_input: bool
    layers: list[LayerParity] = field(default_factory=list)
    clock: str = "sample"  # or "global": how the run was laid out (see deploy/timeline.py)
    drive: str = "input"
    reset_interval: int | None = None
    reset_offset: int = 0

    @property
    def equal(self) -> bool:
        return all(
            ly.mismatches == 0 and not any(ly.state_mismatches.values()) for ly in self.layers
        )

    def to_dict(self) -> dict:
        return {**asdict(self), "equal": self.equal}

    def table(self) -> str:
        """A fixed-width text table, one row per layer."""
        head = (
            "layer",
            "type",
            "shape",
            "spikes lava",
            "spikes emulator",
            "mismatches",
            "first mismatch",
            "state mismatches",
        )
        rows = [head]
        for ly in self.layers:
            first = (
                "-"
                if ly.first_mismatch is None
                else f"sample {ly.first_mismatch[0]} step {ly.first_mismatch[1]} neuron {tuple(ly.first_mismatch[2])}"
            )
            rows.append(
                (
                    str(ly.layer),
                    ly.kind,
                    "x".join(map(str, ly.shape)),
                    str(ly.lava_spikes),
                    str(ly.emulator_spikes),
                    str(ly.mismatches),
                    first,
                    " ".join(f"{k}:{n}" for k, n in ly.state_mismatches.items()) or "-",
                )
            )
        widths = [max(len(r[c]) for r in rows) for c in range(len(head))]
        lines = [
            "  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip()
            for r in rows
        ]
        verdict = "PARITY OK" if self.equal else "PARITY FAILED"
        how = ""
        if self.clock == "global":
            reset = (
                "no reset"
                if self.reset_interval is None
                else f"reset interval {self.reset_interval} offset {self.reset_offset}"
            )
            how = f" (global clock, each sample its own run, input drive '{self.drive}', {reset})"
        lines.append(
            f"{verdict}: {self.samples} samples x {self.steps} steps, "
            f"{len(self.layers)} layers compared{how}"
        )
        return "\n".join(lines)


def compare_layer(
    index: int, kind: str, lava: np.ndarray, emu: np.ndarray, *, graded: bool = False
) -> LayerParity:
    """Compare (N, T, *shape) spike arrays element by element (``graded``: message values,
    spike counts then count non-zero messages)."""
    lava = np.asarray(lava).astype(np.int64 if graded else bool)
    emu = np.asarray(emu).astype(np.int64 if graded else bool)
    if lava.shape != emu.shape:
        raise ValueError(f"layer {index}: Lava shape {lava.shape} != emulator shape {emu.shape}")
    diff = lava != emu
    first = None
    if diff.any():
        pos = np.unravel_index(int(np.flatnonzero(diff)[0]), diff.shape)
        first = [int(pos[0]), int(pos[1]), [int(p) for p in pos[2:]]]
    return LayerParity(
        layer=index,
        kind=kind,
        shape=list(lava.shape[2:]),
        lava_spikes=int(np.count_nonzero(lava)),
        emulator_spikes=int(np.count_nonzero(emu)),
        mismatches=int(diff.sum()),
        first_mismatch=first,
    )


def merge_layer(done: LayerParity | None, part: LayerParity, offset: int) -> LayerParity:
    """Figures of samples ``[0, offset)`` (``done``) and of the chunk after them (``part``)."""
    if part.first_mismatch is not None:
        part.first_mismatch[0] += offset
    if done is None:
        return part
    done.lava_spikes += part.lava_spikes
    done.emulator_spikes += part.emulator_spikes
    done.mismatches += part.mismatches
    done.first_mismatch = done.first_mismatch or part.first_mismatch
    for k, n in part.state_mismatches.items():
        done.state_mismatches[k] = done.state_mismatches.get(k, 0) + n
    return done


def compare_records(net: NetXNetwork, ours, theirs, name: object) -> list[LayerParity]:
    """Every layer whose messages Lava recorded (``theirs.records``, a chunk or a whole run),
    compared with the emulator's (``ours.records``): messages, and each state both recorded;
    ``name`` (the network) starts the refusal of a state Lava did not record."""
    layers = []
    for idx in sorted(i for name, i in map(record_name, theirs.records) if name == "s"):
        ly = net.layers[idx]
        sdnn = ly.neuron is not None and ly.neuron.kind != "CUBA"
        key = f"s{idx}"
        found = compare_layer(idx, ly.kind, theirs.records[key], ours.records[key], graded=sdnn)
        for state in RECORDABLE[1:]:
            mine = ours.records.get(f"{state}{idx}")
            if mine is None:
                continue
            if f"{state}{idx}" not in theirs.records:
                raise LavaRunError(f"{name}: Lava recorded no '{state}' for layer {idx}")
            found.state_mismatches[state] = int((theirs.records[f"{state}{idx}"] != mine).sum())
        layers.append(found)
    return layers


def compare_runs(
    net: NetXNetwork, emulator: Runner, lava: Runner, x: np.ndarray, chunk: int | None = None
) -> tuple[list[LayerParity], bool]:
    """``(layers, graded)``: :func:`compare_records` chunk by chunk of ``x`` (memory stays that
    of one chunk), merged; ``graded``: some input went as graded messages. Both runners keep
    traces."""
    merged: dict[int, LayerParity] = {}
    graded = False
    pairs = zip(emulator.chunks(x, chunk=chunk), lava.chunks(x, chunk=chunk), strict=True)
    for ours, theirs in pairs:
        graded |= theirs.graded
        for found in compare_records(net, ours, theirs, lava.name):
            merged[found.layer] = merge_layer(merged.get(found.layer), found, ours.lo)
        lava.deadline.left()
    return [merged[idx] for idx in sorted(merged)], graded


def run_parity(
    path: str | Path,
    x: np.ndarray,
    *,
    clock: GlobalClock | None = None,
    device: str = "cpu",
    all_layers: bool = True,
    input_shape: tuple[int, ...] | None = None,
    timeout: float | None = None,
    chunk: int | None = None,
) -> ParityReport:
    """Run ``x`` on Lava and on the emulator and compare every layer's messages and states.

    Per-sample clock (``clock`` None): ``x`` (N, T, *input_shape); every layer's spikes, and the
    output layer's ``u`` and ``v`` at every step (a readout that never spikes predicts by its
    ``v``). Global clock (:mod:`snn2loihi.deploy.timeline`): every sample its own run of
    ``clock.steps`` steps as netx builds the network (``x`` (N, *input_shape) bias values for
    the ``bias`` drive, else (N, T, *input_shape)); every state that Lava's process has (``u``,
    ``v`` or ``sigma``, ``act``, ``residue``) compared too.

    Samples go in chunks of ``chunk`` (default :func:`~snn2loihi.deploy.runner.samples_per_chunk`),
    so memory stays bounded; ``timeout`` (seconds) bounds the whole comparison, both back ends.
    """
    net = read_network(path, input_shape=input_shape)
    how = {}
    if clock is None:
        if np.ndim(x) != 2 + len(net.input_shape):
            check_input(x, net.input_shape)  # raises the shape error
        steps = int(np.shape(x)[1])
    else:
        steps, t = clock.steps, clock.timeline
        clock = dataclasses.replace(clock, record=RECORDABLE[1:])  # every state
        how = {"clock": "global", "drive": clock.drive, "reset_interval": t.reset_interval}
        how["reset_offset"] = t.reset_offset
    options = dict(clock=clock, deadline=Deadline(timeout, path), traces=True)
    emulator = Runner(net, path, "emulator", device=device, **options)
    lava = Runner(net, path, "lava", every_layer=all_layers, **options)
    layers, graded = compare_runs(net, emulator, lava, x, chunk)
    return ParityReport(str(path), len(x), steps, graded, layers, **how)


def run_global_parity(
    path: str | Path, x: np.ndarray, *, drive: str, steps: int, timeline: Timeline, **options
) -> ParityReport:
    """:func:`run_parity` on Lava's global clock: ``drive``, ``steps`` per sample's run and
    netx's resets (``timeline``); ``options`` as there."""
    return run_parity(path, x, clock=GlobalClock(drive, steps, timeline), **options)
