"""Spike-for-spike comparison of Lava and the emulator on the same ``.net`` and input."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from snn2loihi.deploy.emulator import Emulator, check_input
from snn2loihi.deploy.lava_runner import run_lava
from snn2loihi.netx_io import read_network

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


@dataclass
class ParityReport:
    """Parity of every compared layer; ``equal`` is True only when every spike matches."""

    net: str
    samples: int
    steps: int
    graded_input: bool
    layers: list[LayerParity] = field(default_factory=list)

    @property
    def equal(self) -> bool:
        return all(ly.mismatches == 0 for ly in self.layers)

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
                )
            )
        widths = [max(len(r[c]) for r in rows) for c in range(len(head))]
        lines = [
            "  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip()
            for r in rows
        ]
        verdict = "PARITY OK" if self.equal else "PARITY FAILED"
        lines.append(
            f"{verdict}: {self.samples} samples x {self.steps} steps, {len(self.layers)} layers compared"
        )
        return "\n".join(lines)


def compare_layer(index: int, kind: str, lava: np.ndarray, emu: np.ndarray) -> LayerParity:
    """Compare (N, T, *shape) spike arrays element by element."""
    lava = np.asarray(lava).astype(bool)
    emu = np.asarray(emu).astype(bool)
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
        lava_spikes=int(lava.sum()),
        emulator_spikes=int(emu.sum()),
        mismatches=int(diff.sum()),
        first_mismatch=first,
    )


def run_parity(
    path: str | Path,
    x: np.ndarray,
    *,
    device: str = "cpu",
    all_layers: bool = True,
    input_shape: tuple[int, ...] | None = None,
    timeout: float | None = None,
) -> ParityReport:
    """Run ``x`` (N, T, *input_shape) on Lava and on the emulator and compare every layer."""
    net = read_network(path, input_shape=input_shape)
    xt, graded = check_input(x, net.input_shape)
    x_np = xt.numpy()
    emu = Emulator(net, device=device).run(x_np)
    lava = run_lava(path, x_np, graded=graded, probe_all=all_layers, timeout=timeout, net=net)
    report = ParityReport(
        net=str(path), samples=x_np.shape[0], steps=x_np.shape[1], graded_input=graded
    )
    by_index = {t.index: t for t in emu.layers}
    for idx, spikes in zip(lava.layer_indices, lava.spikes, strict=True):
        trace = by_index[idx]
        report.layers.append(compare_layer(idx, trace.kind, spikes, trace.spikes.numpy()))
    return report
