"""Spike-for-spike comparison of Lava and the emulator on the same ``.net`` and input."""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from snn2loihi.arrays import memory_budget
from snn2loihi.deploy.emulator import Emulator, check_input
from snn2loihi.deploy.lava_runner import run_lava
from snn2loihi.deploy.timeline import Timeline, check_timeline_input
from snn2loihi.errors import InputDataError, LavaRunError
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


def bytes_per_sample(net: NetXNetwork, steps: int) -> int:
    """Peak memory of one sample in a parity run: int64 input, and per neuron and step the
    emulator's spike, Lava's spike and Lava's float64 monitor record."""
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


def run_parity(
    path: str | Path,
    x: np.ndarray,
    *,
    device: str = "cpu",
    all_layers: bool = True,
    input_shape: tuple[int, ...] | None = None,
    timeout: float | None = None,
    chunk: int | None = None,
) -> ParityReport:
    """Run ``x`` (N, T, *input_shape) on Lava and on the emulator and compare every layer's
    spikes, and the output layer's ``u`` and ``v`` at every step (a readout that never spikes
    predicts by its ``v``).

    Samples go in chunks of ``chunk`` (default :func:`samples_per_chunk`), so memory stays
    bounded; ``timeout`` (seconds) bounds the whole comparison, both back ends.
    """
    net = read_network(path, input_shape=input_shape)
    if np.ndim(x) != 2 + len(net.input_shape):
        check_input(x, net.input_shape)  # raises the shape error
    steps = int(np.shape(x)[1])
    chunk = chunk or samples_per_chunk(net, steps, where=path)
    deadline = None if timeout is None else time.monotonic() + timeout
    emulator = Emulator(net, device=device)
    report = ParityReport(net=str(path), samples=len(x), steps=steps, graded_input=False)
    merged: dict[int, LayerParity] = {}
    for lo in range(0, len(x), chunk):
        xt, graded = check_input(x[lo : lo + chunk], net.input_shape)
        part = xt.numpy()
        emu = {t.index: t for t in emulator.run(part, record_state="last").layers}
        left = time_left(deadline, timeout, path)
        lava = run_lava(
            path, part, graded=graded, probe_all=all_layers, record_state="last",
            timeout=left, net=net,
        )  # fmt: skip
        report.graded_input |= graded
        for idx, spikes in zip(lava.layer_indices, lava.spikes, strict=True):
            found = compare_layer(idx, emu[idx].kind, spikes, emu[idx].spikes.numpy())
            merged[idx] = merge_layer(merged.get(idx), found, lo)
        out = lava.layer_indices[-1]  # the output layer: its u and v (the readout's logits)
        for name, theirs in (("u", lava.u[-1]), ("v", lava.v[-1])):
            ours = getattr(emu[out], name).numpy()
            merged[out].state_mismatches[name] = merged[out].state_mismatches.get(name, 0) + int(
                (np.asarray(theirs) != ours).sum()
            )
        time_left(deadline, timeout, path)
    report.layers = [merged[idx] for idx in sorted(merged)]
    return report


def run_global_parity(
    path: str | Path,
    x: np.ndarray,
    *,
    drive: str,
    steps: int,
    timeline: Timeline,
    device: str = "cpu",
    input_shape: tuple[int, ...] | None = None,
    timeout: float | None = None,
) -> ParityReport:
    """Parity on Lava's global clock (:mod:`snn2loihi.deploy.timeline`): every sample its own
    run of ``steps`` steps as netx builds the network; every layer's messages and every state
    that Lava's process has (``u``, ``v`` or ``sigma``, ``act``, ``residue``) compared.

    ``x``: (N, *input_shape) bias values for ``drive="bias"``, else (N, T, *input_shape).
    """
    net = read_network(path, input_shape=input_shape)
    deadline = None if timeout is None else time.monotonic() + timeout
    xt, graded = check_timeline_input(net, x, drive)
    record = ("u", "v", "sigma", "act", "residue")
    emu = Emulator(net, device=device).run_netx(
        xt.numpy(), drive=drive, steps=steps, timeline=timeline, record=record
    )
    clock = {
        "drive": drive,
        "steps": steps,
        "reset_interval": timeline.reset_interval,
        "reset_offset": timeline.reset_offset,
        "record": record,
    }
    lava = run_lava(
        path, xt.numpy(), graded=graded, net=net, clock=clock,
        timeout=time_left(deadline, timeout, path),
    )  # fmt: skip
    report = ParityReport(
        net=str(path),
        samples=len(xt),
        steps=steps,
        graded_input=graded,
        clock="global",
        drive=drive,
        reset_interval=timeline.reset_interval,
        reset_offset=timeline.reset_offset,
    )
    for tr in emu:
        graded_msgs = tr.neuron != "CUBA"
        found = compare_layer(
            tr.index, tr.kind, lava.records[f"s{tr.index}"], tr.messages.numpy(), graded=graded_msgs
        )
        for name, arr in tr.states.items():
            theirs = lava.records.get(f"{name}{tr.index}")
            if theirs is None:
                raise LavaRunError(f"{path}: Lava recorded no '{name}' for layer {tr.index}")
            found.state_mismatches[name] = int((theirs != arr.numpy()).sum())
        report.layers.append(found)
    return report


def time_left(deadline: float | None, timeout: float | None, path, what: str = "parity"):
    """Seconds left before ``deadline`` (None without one); :class:`LavaRunError` naming
    ``what`` once it has passed."""
    if deadline is None:
        return None
    left = deadline - time.monotonic()
    if left <= 0:
        raise LavaRunError(f"{path}: {what} exceeded the timeout of {timeout:g} s and was stopped")
    return left
