"""Benchmark: samples/s of the bit-exact emulator versus the Lava CPU simulator.

Runs the small (2x8x8 -> conv4 -> dense10) and CIFAR-sized (3x32x32 -> conv16 -> conv32/s2 ->
conv64/s2 -> dense10) networks of the Loihi/NetX notes with random integer weights and random
input spikes, checks that both back ends give identical output spikes, and writes
``bench/results/emulator_vs_lava.json`` and ``.md``.

    .venv/bin/python bench/emulator_vs_lava.py [--steps 16] [--lava-samples 8] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from snn2loihi.atomic import atomic_path
from snn2loihi.deploy.emulator import Emulator
from snn2loihi.deploy.lava_runner import run_lava
from snn2loihi.netx_io import write_network
from snn2loihi.testing.netgen import CIFAR, SMALL, random_network

RESULTS = Path(__file__).parent / "results"


def machine() -> dict:
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    return info


def time_emulator(emu: Emulator, x: np.ndarray, repeats: int, sync) -> float:
    """Median seconds for one run of the batch ``x`` (after one warm-up run)."""
    emu.run(x)
    sync()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        emu.run(x)
        sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def bench_network(name, spec, steps, lava_samples, batches, repeats, devices) -> dict:
    net = random_network(spec, seed=0)
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        path = write_network(net, Path(tmp) / f"{name}.net")
        x_lava = (rng.random((lava_samples, steps, *spec.input_shape)) < 0.25).astype(np.uint8)
        t0 = time.perf_counter()
        lava = run_lava(path, x_lava, graded=False)
        lava_total = time.perf_counter() - t0
        # Steady-state per-sample cost: difference between a long and a 1-sample run.
        t0 = time.perf_counter()
        run_lava(path, x_lava[:1], graded=False)
        lava_one = time.perf_counter() - t0
    emu_out = Emulator(net).run(x_lava).output.numpy().astype(np.uint8)
    equal = bool(np.array_equal(emu_out, lava.output))
    lava_per_sample = (lava_total - lava_one) / (lava_samples - 1)
    row = {
        "network": name,
        "input_shape": list(spec.input_shape),
        "steps": steps,
        "lava_samples": lava_samples,
        "lava_total_s": round(lava_total, 3),
        "lava_one_sample_total_s": round(lava_one, 3),
        "lava_s_per_sample_steady": round(lava_per_sample, 4),
        "lava_samples_per_s": round(1 / lava_per_sample, 3),
        "outputs_equal": equal,
        "emulator": [],
    }
    for device in devices:
        sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
        emu = Emulator(net, device=device, batch_size=max(batches))
        for batch in batches:
            x = (rng.random((batch, steps, *spec.input_shape)) < 0.25).astype(np.uint8)
            sec = time_emulator(emu, x, repeats, sync)
            per_sample = sec / batch
            row["emulator"].append(
                {
                    "device": device,
                    "batch": batch,
                    "s_per_batch": round(sec, 5),
                    "samples_per_s": round(batch / sec, 1),
                    "speedup_vs_lava": round(lava_per_sample / per_sample, 1),
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
        "Lava: `Loihi2SimCfg(select_tag='fixed_pt')`, all samples in one run (`reset_interval`), "
        "steady-state cost per sample (total of an N-sample run minus a 1-sample run, over N-1). "
        "The emulator's output spikes equal Lava's in every row marked equal.",
        "",
        "| network | Lava samples/s | equal | device | batch | emulator samples/s | speed-up |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in report["networks"]:
        for e in row["emulator"]:
            lines.append(
                f"| {row['network']} | {row['lava_samples_per_s']} | {row['outputs_equal']} | "
                f"{e['device']} | {e['batch']} | {e['samples_per_s']} | {e['speedup_vs_lava']}x |"
            )
    lines += ["", f"Command: `{report['command']}`", ""]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--steps", type=int, default=16)
    p.add_argument("--lava-samples", type=int, default=6)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--batches", default="1,64,256")
    p.add_argument("--out", type=Path, default=RESULTS / "emulator_vs_lava.json")
    args = p.parse_args()
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    batches = [int(b) for b in args.batches.split(",")]
    report = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": machine(),
        "steps": args.steps,
        "command": "python bench/emulator_vs_lava.py "
        + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if k != "out"),
        "networks": [
            bench_network(name, spec, args.steps, args.lava_samples, batches, args.repeats, devices)
            for name, spec in (("small", SMALL), ("cifar", CIFAR))
        ],
    }
    with atomic_path(args.out) as tmp:
        tmp.write_text(json.dumps(report, indent=2))
    with atomic_path(args.out.with_suffix(".md")) as tmp:
        tmp.write_text(markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
