"""Benchmark: samples/s of the bit-exact emulator versus the Lava CPU simulator and versus its
float floor.

Runs the small (2x8x8 -> conv4 -> dense10) and CIFAR-sized (3x32x32 -> conv16 -> conv32/s2 ->
conv64/s2 -> dense10) networks of the Loihi/NetX notes with random integer weights (-128..192,
and, as ``cifar-int8``, the CIFAR-sized network with int8 weights as the exporter writes them)
and random input spikes, checks that both back ends give identical output spikes, and writes
``bench/results/emulator_vs_lava.json`` and ``.md``. Lava always runs on the CPU (the
reference); the emulator on ``--device`` (auto: the CPU, and CUDA when present). The float
floor of each emulator row is T x one float32 forward (conv/linear + ReLU, TF32 off) of the
same network at the same batch on the same device: what a plain float network of that shape
costs, without the integer neuron state. Each emulator row says which neuron loop ran
(``compiled``: fused kernels through torch.compile, timed after a warm-up run that compiles;
``eager``) and which synapse kernel each layer chose. A Lava failure is recorded and the emulator rows are
still measured (exit 1, as for unequal outputs).

    .venv/bin/python bench/emulator_vs_lava.py [--steps 16] [--lava-samples 8] [--repeats 3]
    .venv/bin/python bench/emulator_vs_lava.py --device cuda --batches 64,1024 \
        --out bench/results/emulator_vs_lava_cuda.json
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from harness import ALLOCATORS, machine, setup_allocator, time_calls, write_result

from snn2loihi.deploy.emulator import Emulator
from snn2loihi.deploy.lava_runner import run_lava
from snn2loihi.netx_io import write_network
from snn2loihi.schema import ConvLayer
from snn2loihi.testing.netgen import CIFAR, SMALL, random_network

RESULTS = Path(__file__).parent / "results"


def time_emulator(
    emu: Emulator, x: np.ndarray, repeats: int, sync, spikes: str = "all"
) -> tuple[float, float]:
    """Median seconds for one run of the batch ``x`` after one warm-up run, and the warm-up's
    seconds (compiling included). ``spikes``: as :meth:`Emulator.run`."""
    return time_calls(lambda: emu.run(x, spikes=spikes), repeats, sync=sync)


def float_forward(net, device: str):
    """One float32 forward of ``net``'s synapses (conv/linear with bias, ReLU after each): the
    float network of the same shape. Returns ``f(x)`` for x (B, *input_shape) float32."""
    ops = []
    for _, ly in net.synaptic_layers:
        w = torch.as_tensor(np.asarray(ly.weight), dtype=torch.float32, device=device)
        b = None if ly.bias is None else torch.as_tensor(ly.bias, dtype=torch.float32).to(device)
        ops.append((ly, w, b))

    def forward(x: torch.Tensor) -> torch.Tensor:
        h = x
        for ly, w, b in ops:
            if isinstance(ly, ConvLayer):
                h = F.conv2d(h, w, b, ly.stride, ly.padding, ly.dilation, ly.groups)
            else:
                h = F.linear(h.flatten(1), w, b)
            h = torch.relu(h)
        return h

    return forward


@torch.no_grad()
def time_float_floor(net, x: np.ndarray, steps: int, device: str, repeats: int, sync) -> float:
    """``steps`` x the median seconds of one float32 forward of the batch (TF32 off)."""
    forward = float_forward(net, device)
    xf = torch.as_tensor(x[:, 0], dtype=torch.float32, device=device)
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        median, _ = time_calls(lambda: forward(xf), repeats, sync=sync)
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved
    return steps * median


def lava_reference(net, name: str, x_lava: np.ndarray) -> dict:
    """Lava's output spikes and timing for ``x_lava`` (N >= 2 samples), or its error."""
    n = len(x_lava)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            path = write_network(net, Path(tmp) / f"{name}.net")
            t0 = time.perf_counter()
            lava = run_lava(path, x_lava, graded=False)
            lava_total = time.perf_counter() - t0
            # Steady-state per-sample cost: difference between a long and a 1-sample run.
            t0 = time.perf_counter()
            run_lava(path, x_lava[:1], graded=False)
            lava_one = time.perf_counter() - t0
    except Exception as exc:  # noqa: BLE001 - recorded; the emulator rows still run
        return {"lava_error": f"{type(exc).__name__}: {exc}".splitlines()[0][:300]}
    emu_out = Emulator(net).run(x_lava).output.numpy().astype(np.uint8)
    per_sample = (lava_total - lava_one) / (n - 1)
    row = {
        "lava_total_s": round(lava_total, 3),
        "lava_one_sample_total_s": round(lava_one, 3),
        "lava_s_per_sample_steady": round(per_sample, 4) if per_sample > 0 else None,
        "lava_samples_per_s": round(1 / per_sample, 3) if per_sample > 0 else None,
        "outputs_equal": bool(np.array_equal(emu_out, lava.output)),
    }
    if per_sample <= 0:  # tiny runs: start-up noise hides the per-sample cost
        row["lava_note"] = f"the {n}-sample run was not slower than the 1-sample run"
    return row


def bench_network(name, spec, steps, lava_samples, batches, repeats, devices, neurons) -> dict:
    net = random_network(spec, seed=0)
    rng = np.random.default_rng(0)
    x_lava = (rng.random((lava_samples, steps, *spec.input_shape)) < 0.25).astype(np.uint8)
    row = {
        "network": name,
        "input_shape": list(spec.input_shape),
        "steps": steps,
        "lava_samples": lava_samples,
        "lava_device": "cpu",
        **lava_reference(net, name, x_lava),
        "emulator": [],
    }
    lava_per_sample = row.get("lava_s_per_sample_steady")
    runs = [(d, k) for d in devices for k in (neurons if d == "cpu" else ["eager"])]
    for device, neuron in runs:
        sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
        emu = Emulator(net, device=device, batch_size=max(batches), compiled=neuron == "compiled")
        for batch in batches:
            x = (rng.random((batch, steps, *spec.input_shape)) < 0.25).astype(np.uint8)
            sec, first = time_emulator(emu, x, repeats, sync)
            lean = time_emulator(emu, x, repeats, sync, spikes="output")[0]
            floor = time_float_floor(net, x, steps, device, repeats, sync)
            per_sample = sec / batch
            row["emulator"].append(
                {
                    "device": device,
                    "neuron": neuron,
                    "synapse_kernels": [syn.kernel for syn in emu._prepare(False)],
                    "batch": batch,
                    "first_run_s": round(first, 3),
                    "s_per_batch": round(sec, 5),
                    "samples_per_s": round(batch / sec, 1),
                    "samples_per_s_output_only": round(batch / lean, 1),
                    "speedup_vs_lava": None
                    if not lava_per_sample
                    else round(lava_per_sample / per_sample, 1),
                    "float_floor_s_per_batch": round(floor, 5),
                    "float_floor_samples_per_s": round(batch / floor, 1),
                    "x_float_floor": round(sec / floor, 2),
                }
            )
    return row


def markdown(report: dict) -> str:
    m = report["machine"]
    lines = [
        "# Emulator vs Lava simulator (samples/s)",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, torch {m['torch']} ({m['torch_threads']} threads), "
        f"GPU: {m['gpu'] or 'none'}. Date: {report['date']}. T = {report['steps']} steps per sample.",
        "Lava (on the CPU): `Loihi2SimCfg(select_tag='fixed_pt')`, all samples in one run "
        "(`reset_interval`), steady-state cost per sample (total of an N-sample run minus a "
        "1-sample run, over N-1). The emulator's output spikes equal Lava's in every row marked "
        "equal. Float floor: T x one float32 forward (conv/linear + ReLU, TF32 off) of the same "
        "network at the same batch on the same device; `x floor` is the emulator's time over it. "
        "Emulator samples/s keep every layer's spike trace; `output only` keeps the output "
        "layer's spikes and per-sample spike counts of the others (`run(..., spikes='output')`, "
        "what `snn2loihi eval` uses).",
        "",
        "| network | Lava samples/s | equal | device | neuron | synapse kernels | batch "
        "| emulator samples/s | speed-up | output only | float floor samples/s | x floor |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in report["networks"]:
        lava = row.get("lava_samples_per_s", "failed") or "-"
        for e in row["emulator"]:
            speedup = "-" if e["speedup_vs_lava"] is None else f"{e['speedup_vs_lava']}x"
            lines.append(
                f"| {row['network']} | {lava} | {row.get('outputs_equal', '-')} | "
                f"{e['device']} | {e['neuron']} | {', '.join(e['synapse_kernels'])} | "
                f"{e['batch']} | {e['samples_per_s']} | {speedup} | "
                f"{e['samples_per_s_output_only']} | "
                f"{e['float_floor_samples_per_s']} | {e['x_float_floor']} |"
            )
    for row in report["networks"]:
        if "lava_error" in row:
            lines.append(f"\nLava failed on {row['network']}: {row['lava_error']}")
    lines += ["", f"Command: `{report['command']}`", ""]
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--steps", type=int, default=16)
    p.add_argument("--lava-samples", type=int, default=6, help="at least 2")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--batches", default="1,64,256")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                   help="emulator device(s): auto = cpu, and cuda when present")  # fmt: skip
    p.add_argument("--networks", default="small,cifar,cifar-int8",
                   help="of: small, cifar, cifar-int8")  # fmt: skip
    p.add_argument("--neuron", choices=("compiled", "eager", "both"), default="both",
                   help="the emulator's neuron loop on the CPU (CUDA: eager)")  # fmt: skip
    p.add_argument("--allocator", choices=ALLOCATORS, default="keep",
                   help="keep freed memory as the CLI does (default), or glibc's defaults")  # fmt: skip
    p.add_argument("--out", type=Path, default=RESULTS / "emulator_vs_lava.json")
    args = p.parse_args()
    allocator = setup_allocator(args.allocator)
    if args.lava_samples < 2:
        p.error("--lava-samples must be at least 2 (steady state: N samples minus 1)")
    specs = {"small": SMALL, "cifar": CIFAR, "cifar-int8": replace(CIFAR, weight_range=(-128, 127))}
    names = args.networks.split(",")
    if any(n not in specs for n in names):
        p.error(f"--networks {args.networks}: choose from {', '.join(specs)}")
    if args.device == "auto":
        devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    else:
        devices = [args.device]
    batches = [int(b) for b in args.batches.split(",")]
    neurons = ["compiled", "eager"] if args.neuron == "both" else [args.neuron]
    report = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": machine(allocator),
        "steps": args.steps,
        "command": "python bench/emulator_vs_lava.py "
        + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if k != "out"),
        "networks": [
            bench_network(
                name,
                specs[name],
                args.steps,
                args.lava_samples,
                batches,
                args.repeats,
                devices,
                neurons,
            )  # fmt: skip
            for name in names
        ],
    }
    write_result(args.out, report)
    write_result(args.out.with_suffix(".md"), markdown(report))
    print(markdown(report))
    ok = all(row.get("outputs_equal") is True for row in report["networks"])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
