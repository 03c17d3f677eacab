"""Benchmark: nanoseconds per neuron-step of Loihi's integer neuron (:func:`snn2loihi.neuron_loop.integrate`).

The neuron loop is the emulator's and the integer SNN branch's floor once the synapse runs on int8:
this measures it alone, for IF (iDecay 4096, vDecay 0: what SNN2ANN exports) and CUBA
(iDecay 1024, vDecay 128) neurons, on int32 (the proven-safe path) and int64 (every Lava wrap)
state, 64 samples x 16 steps of a 16x32x32 layer, eager and compiled (``integrate(...,
compiled=True)``: fused kernels through torch.compile, timed after a warm-up call that
compiles). Writes ``bench/results/neuron_step.json``.

    .venv/bin/python bench/neuron_step.py [--threads 2] [--repeats 3]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from harness import ALLOCATORS, machine, setup_allocator, time_calls, write_result

from snn2loihi.neuron_loop import integrate
from snn2loihi.schema import CubaNeuron

RESULTS = Path(__file__).parent / "results"
NEURONS = {"IF": CubaNeuron(4096, 0, 80), "CUBA": CubaNeuron(1024, 128, 80)}


def per_neuron_step_ns(a, bias, neuron, safe: bool, repeats: int, compiled: bool) -> float:
    """Median nanoseconds per neuron and step after a warm-up run (which compiles)."""
    median, _ = time_calls(
        lambda: integrate(a, bias, neuron, int32_safe=safe, compiled=compiled), repeats
    )
    return median / a.numel() * 1e9


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--allocator", choices=ALLOCATORS, default="keep",
                   help="keep freed memory as the CLI does (default), or glibc's defaults")  # fmt: skip
    p.add_argument("--out", type=Path, default=RESULTS / "neuron_step.json")
    args = p.parse_args(argv)
    allocator = setup_allocator(args.allocator)
    torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(0)
    a32 = torch.randint(-3000, 3000, (64, 16, 16, 32, 32), generator=g, dtype=torch.int32)
    bias = torch.randint(-50, 50, (16, 1, 1), generator=g, dtype=torch.int32)
    rows = []
    for loop in ("eager", "compiled"):
        for name, neuron in NEURONS.items():
            for dtype, safe in ((torch.int32, True), (torch.int64, False)):
                a = a32 if safe else a32[:16].to(dtype)
                b = bias.to(dtype)
                ns = per_neuron_step_ns(a, b, neuron, safe, args.repeats, loop == "compiled")
                state = str(dtype).removeprefix("torch.")
                rows.append(
                    {
                        "loop": loop,
                        "neuron": name,
                        "state": state,
                        "ns_per_neuron_step": round(ns, 2),
                    }
                )
                print(f"{loop:8s} {name:5s} {state:6s} {ns:6.2f} ns per neuron-step")
    result = {
        "command": "python bench/neuron_step.py "
        + f"--threads {args.threads} --repeats {args.repeats} --allocator {args.allocator}",
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "machine": machine(allocator),
        "layer": "64 samples x 16 steps x (16, 32, 32) neurons (int64: 16 samples)",
        "rows": rows,
    }
    write_result(args.out, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
