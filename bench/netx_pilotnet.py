"""lava-dl's PilotNet (LIF and SDNN) on the emulator and on Lava's CPU simulator, per sample.

Both networks run on the global clock as lava-dl drives them: PilotNet LIF with its image as the
input neuron's bias (``reset_interval=16``, 15 steps), PilotNet SDNN with its input layer skipped
and graded frames into the first conv (15 steps). Lava: one sample, timed in three parts (build,
compile + first step, the remaining steps); its per-sample figure is the run without compiling
(``steps x`` the steady per-step time), which favours Lava. Emulator: batches of 1 and 64 samples
(best of ``--repeats``), with the allocator setting of the CLI (``--allocator keep``: freed
memory kept for reuse, as ``snn2loihi run`` does; ``default``: glibc's defaults, under which a
batch's arrays are page-faulted in afresh on every run). Results:
``bench/results/netx_pilotnet.json`` and ``.md``.

    .venv/bin/python bench/netx_pilotnet.py --data ../shared/data/lavadl-nets
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch
from harness import ALLOCATORS, machine, setup_allocator, time_calls, write_result

RESULTS = Path(__file__).parent / "results"
STEPS = 15


def _inputs(name: str, data: Path, batch: int) -> tuple[np.ndarray, str, int | None]:
    """(x, drive, reset interval) for ``batch`` samples of network ``name``."""
    rng = np.random.default_rng(0)
    if name == "pilotnet_lif":
        image = np.load(data / "pilotnet_image.npy").astype(np.int64)
        noise = rng.integers(-2, 3, (batch, *image.shape))
        return np.clip(image[None] + noise, 0, 255), "bias", 16
    frames = rng.integers(-3000, 3000, (batch, STEPS, 3, 33, 100))
    return frames, "skip", None


def time_emulator(name: str, data: Path, batch: int, repeats: int) -> float:
    """Seconds per sample (best of ``repeats``) for a batch of ``batch`` samples."""
    from snn2loihi.deploy.emulator import Emulator
    from snn2loihi.deploy.timeline import Timeline

    x, drive, interval = _inputs(name, data, batch)
    emu = Emulator(data / f"{name}.net", batch_size=batch)
    best, _ = time_calls(
        lambda: emu.run_netx(x, drive=drive, steps=STEPS, timeline=Timeline(interval)),
        repeats,
        statistic="min",
        warmup=False,
    )
    return best / batch


def time_lava(name: str, data: Path) -> dict:
    """One sample on Lava: build, compile + first step, and the other steps (seconds)."""
    from snn2loihi.deploy.lava_compat import import_netx
    from snn2loihi.deploy.lava_drivers import to_lava_layout, xyz

    netx = import_netx()
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg
    from lava.proc import io

    x, drive, interval = _inputs(name, data, 1)
    t0 = time.perf_counter()
    net = netx.hdf5.Network(
        net_config=str(data / f"{name}.net"),
        skip_layers=1 if drive == "skip" else 0,
        reset_interval=interval,
    )
    if drive == "bias":
        net.in_layer.neuron.bias_mant.init = xyz(x[0]).astype(np.int32)
    else:
        src = io.source.RingBuffer(data=to_lava_layout(x.astype(np.int64), 0))
        src.s_out.connect(net.inp)
    t1 = time.perf_counter()
    cfg = Loihi2SimCfg(select_tag="fixed_pt")
    net.run(condition=RunSteps(num_steps=1), run_cfg=cfg)
    t2 = time.perf_counter()
    net.run(condition=RunSteps(num_steps=STEPS - 1), run_cfg=cfg)
    t3 = time.perf_counter()
    net.stop()
    per_step = (t3 - t2) / (STEPS - 1)
    return {
        "build_s": t1 - t0,
        "compile_and_first_step_s": t2 - t1,
        "per_step_s": per_step,
        "per_sample_s": per_step * STEPS,
        "per_sample_with_compile_s": t3 - t0,
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=Path("../shared/data/lavadl-nets"))
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--note", default="", help="machine note recorded with the results")
    p.add_argument("--allocator", choices=ALLOCATORS, default="keep",
                   help="keep freed memory as the CLI does (default), or glibc's defaults")  # fmt: skip
    args = p.parse_args()
    allocator = setup_allocator(args.allocator)
    torch.set_num_threads(args.threads)
    rows = []
    for name in ("pilotnet_lif", "pilotnet_sdnn"):
        lava = time_lava(name, args.data)
        emu = {b: time_emulator(name, args.data, b, args.repeats) for b in (1, 64)}
        row = {
            "network": name,
            "steps": STEPS,
            "lava": lava,
            "emulator_per_sample_s": {str(b): s for b, s in emu.items()},
            "speedup_per_sample": {str(b): lava["per_sample_s"] / s for b, s in emu.items()},
        }
        print(json.dumps(row), flush=True)
        rows.append(row)
    result = {
        "benchmark": "lava-dl PilotNet on the global clock: emulator vs Lava CPU simulator",
        "command": shlex.join(["python", "bench/netx_pilotnet.py", *sys.argv[1:]]),
        "machine": {**machine(allocator), **({"note": args.note} if args.note else {})},
        "date": time.strftime("%Y-%m-%d"),
        "target": "emulator >= 50x Lava per sample at batch 64 (2 CPU cores)",
        "runs": rows,
    }
    write_result(RESULTS / "netx_pilotnet.json", result)
    lines = [
        "| network | Lava per sample (run, no compile) | Lava incl. build + compile | "
        "emulator batch 1 | emulator batch 64 | speed-up b1 | speed-up b64 |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        e, s = r["emulator_per_sample_s"], r["speedup_per_sample"]
        lines.append(
            f"| {r['network']} | {r['lava']['per_sample_s']:.2f} s | "
            f"{r['lava']['per_sample_with_compile_s']:.1f} s | {e['1'] * 1e3:.1f} ms | "
            f"{e['64'] * 1e3:.1f} ms | {s['1']:.0f}x | {s['64']:.0f}x |"
        )
    m = result["machine"]
    where = f"{m['cpu']}, {m['torch_threads']} torch threads, torch {m['torch']}, {allocator}"
    write_result(
        RESULTS / "netx_pilotnet.md",
        f"{result['benchmark']} ({result['date']}, {where}, {STEPS} steps)\n\n"
        + "\n".join(lines)
        + f"\n\n`{result['command']}`\n",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
