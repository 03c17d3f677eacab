"""Training cost of one iteration: SNN2ANN (integer SNN branch, eager or with ``cuba_step``
compiled; float SNN branch) vs BPTT.

Each (method, T) runs in its own subprocess on the VGG-11-class net with CIFAR-shaped random
uint8 input: time per iteration (median after one warm-up) and peak memory (CUDA: max allocated;
CPU: peak RSS above the RSS before the first iteration). Writes bench/results/train_cost.json.

    .venv/bin/python bench/train_cost.py --batch 16 --iters 3 --steps 4 8
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

METHODS = ("snn2ann", "snn2ann-compiled", "snn2ann-float", "bptt")


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _rss_mib() -> float:
    """Current resident set size of this process (Linux)."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * resource.getpagesize() / 2**20


def measure(method: str, steps: int, batch: int, iters: int, device: str, threads: int) -> dict:
    """Time and memory of ``iters`` training iterations of one method (in this process)."""
    import torch

    from snn2loihi.train.config import resolve
    from snn2loihi.train.model import build_model
    from snn2loihi.train.step import StepParams, train_step

    torch.manual_seed(0)
    if threads:
        torch.set_num_threads(threads)
    dev = torch.device(device)
    bptt = method == "bptt"
    model = build_model(
        "vgg11",
        (3, 32, 32),
        10,
        mean=(0.49, 0.48, 0.45),
        std=(0.25, 0.24, 0.26),
        steps=steps,
        step_divisor=1 if bptt else steps,
    ).to(dev)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.randint(0, 256, (batch, 3, 32, 32), dtype=torch.uint8, device=dev)
    y = torch.randint(0, 10, (batch,), device=dev)

    # The trainer's own step (bf16 autocast of the differentiable pass on CUDA, ATA after it).
    config = resolve(
        None,
        [
            f"train.method='{'bptt' if bptt else 'snn2ann'}'",
            f"train.float_snn={'true' if method == 'snn2ann-float' else 'false'}",
            f"train.compile_neuron={'true' if method == 'snn2ann-compiled' else 'false'}",
        ],
    )
    params = StepParams.from_config(config)

    def step() -> None:
        train_step(model, model, opt, x, y, params)

    def sync() -> None:
        if dev.type == "cuda":
            torch.cuda.synchronize()

    base_rss = _rss_mib()
    step()  # warm-up (and, for snn2ann-compiled, the one-off compilation)
    sync()
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - t0)
    if dev.type == "cuda":
        peak = torch.cuda.max_memory_allocated() / 2**20
        kind = "cuda_max_allocated_mib"
    else:
        peak = _peak_rss_mib() - base_rss
        kind = "cpu_peak_rss_growth_mib"
    return {
        "method": method,
        "steps": steps,
        "batch": batch,
        "iters": iters,
        "ms_per_iter": 1000 * statistics.median(times),
        kind: peak,
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, nargs="+", default=[4, 8])
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--iters", type=int, default=3)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "train_cost.json"))
    p.add_argument("--one", nargs=2, metavar=("METHOD", "T"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.one:
        res = measure(
            args.one[0], int(args.one[1]), args.batch, args.iters, args.device, args.threads
        )
        print(json.dumps(res))
        return 0
    rows = []
    for steps in args.steps:
        for method in args.methods:
            cmd = [sys.executable, __file__, "--one", method, str(steps)]
            cmd += ["--batch", str(args.batch), "--iters", str(args.iters)]
            cmd += ["--device", args.device, "--threads", str(args.threads)]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
            rows.append(json.loads(out.strip().splitlines()[-1]))
            print(json.dumps(rows[-1]), flush=True)
    import torch

    result = {
        "net": "vgg11 (8 convs 64-512, 4 avg pools folded into strided convs), 3x32x32 input",
        "device": args.device,
        "torch": torch.__version__,
        "cpu": platform.processor() or platform.machine(),
        "threads": args.threads or torch.get_num_threads(),
        "rows": rows,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
