"""Benchmark: what a parity run costs on the Lava simulator, per sample.

Runs the Lava side of ``snn2loihi parity`` (the per-sample clock: every layer's spikes and the
readout's ``u`` and ``v`` recorded) on the first ``N`` images of an image file, shown for
``--steps`` steps as graded input, for each ``N`` of ``--samples``, and records the wall seconds
and the CPU seconds (user + sys of the Lava child and its worker processes) of each run. The
CPU seconds are the figure that matters on a busy machine; two sample counts split them into a
fixed part (imports, compiling, starting the processes) and a per-sample part.

    .venv/bin/python bench/lava_parity_speed.py NET.net IMAGES.npy [--samples 4,8] [--steps 4] \
        [--out bench/results/experiments/lava_parity_speed.json]
"""

from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

import numpy as np
from harness import machine, write_result

from snn2loihi.deploy.lava_runner import run_lava
from snn2loihi.netx_io import read_network

RESULTS = Path(__file__).parent / "results" / "experiments"


def children_cpu() -> float:
    """User + sys CPU seconds of this process's finished children (and theirs)."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def time_parity_run(path: Path, images: np.ndarray, steps: int) -> dict:
    """Wall and CPU seconds of one Lava parity run of ``images`` (N, C, H, W) shown for
    ``steps`` steps, and the spike count of every layer (to compare runs)."""
    net = read_network(path)
    x = np.broadcast_to(images[:, None], (len(images), steps, *images.shape[1:])).astype(np.int64)
    cpu0, t0 = children_cpu(), time.perf_counter()
    res = run_lava(path, x, graded=True, probe_all=True, record_state="last", net=net)
    wall, cpu = time.perf_counter() - t0, children_cpu() - cpu0
    return {
        "samples": len(images),
        "wall_s": round(wall, 2),
        "cpu_s": round(cpu, 2),
        "cpu_s_per_sample": round(cpu / len(images), 2),
        "layer_spikes": [int(np.count_nonzero(s)) for s in res.spikes],
        "readout_v_sum": int(res.v[-1].astype(np.int64).sum()),
    }


def split(runs: list[dict]) -> dict | None:
    """Fixed and per-sample CPU seconds from the first and last run (a line through both)."""
    if len(runs) < 2 or runs[0]["samples"] == runs[-1]["samples"]:
        return None
    a, b = runs[0], runs[-1]
    per = (b["cpu_s"] - a["cpu_s"]) / (b["samples"] - a["samples"])
    return {
        "cpu_s_per_sample": round(per, 2),
        "cpu_s_fixed": round(a["cpu_s"] - per * a["samples"], 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("net", type=Path)
    ap.add_argument("images", type=Path, help=".npy of uint8 images (N, C, H, W)")
    ap.add_argument("--samples", default="4,8", help="sample counts to run, comma-separated")
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--label", default="", help="what this run measures (kept in the result)")
    ap.add_argument("--out", type=Path, default=RESULTS / "lava_parity_speed.json")
    args = ap.parse_args()
    images = np.load(args.images)
    runs = []
    for n in (int(s) for s in args.samples.split(",")):
        reps = np.concatenate([images] * -(-n // len(images)))[:n]
        runs.append(time_parity_run(args.net, reps, args.steps))
        print(runs[-1])
    result = {
        "label": args.label,
        "net": str(args.net),
        "steps": args.steps,
        "machine": machine(),
        "runs": runs,
        "split": split(runs),
    }
    print(write_result(args.out, result))


if __name__ == "__main__":
    main()
