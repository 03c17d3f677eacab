"""Training cost of one iteration: SNN2ANN (integer SNN branch, eager or with ``cuba_step``
compiled; float SNN branch) vs BPTT, and a plain ANN step (forward + backward of the same net).

Each (method, T) runs in its own subprocess on the VGG-11-class net (``--arch``) with
CIFAR-shaped random uint8 input: time per iteration (median after ``--warmup`` iterations) and
peak memory (CUDA: max allocated; CPU: peak RSS above the RSS before the first iteration, and,
with glibc, the peak of malloc's in-use bytes above theirs, sampled over two more iterations
after the timed ones: the live memory, without the heap's free holes that the RSS holds). On
CUDA one subprocess measures every ``--bf16`` x ``--channels-last`` variant of its (method, T)
in turn (peak statistics reset for each); on the CPU each variant has its own process (peak RSS
only grows). The result file is rewritten after every row; a failed (method, T) is recorded
with its error and the others still run (exit 1). Writes bench/results/train_cost.json.

``ratios`` holds SNN2ANN's time and memory against BPTT's and its time against the plain ANN
step's (and ``x_bptt_in_use_memory``, the in-use memory's ratio), and ``ratio_summary`` their
smallest, median and largest value and in how many rounds each meets issue #12's target
(:data:`TARGETS`: the memory target is read on the RSS). ``--rounds N`` measures every (T, method) N
times, round by round, so that each round's ratios come from the same minutes of a shared
machine.

    .venv/bin/python bench/train_cost.py --batch 16 --iters 3 --steps 4 8
    .venv/bin/python bench/train_cost.py --device cuda --batch 128 --iters 10 --warmup 3 \
        --methods snn2ann bptt ann --bf16 on off --channels-last on off \
        --out bench/results/train_cost_cuda.json
"""

from __future__ import annotations

import argparse
import json
import resource
import shlex
import statistics
import subprocess
import sys
from pathlib import Path

from harness import ALLOCATORS, InUseSampler, machine, setup_allocator, time_calls, write_result

METHODS = ("snn2ann", "snn2ann-compiled", "snn2ann-float", "bptt", "ann")
# issue #12: an SNN2ANN step at most 0.5x BPTT's time and peak memory, at most 2x the ANN step's
TARGETS = {"x_bptt_time": 0.5, "x_bptt_memory": 0.5, "x_ann_time": 2.0}
DEFAULT_METHODS = METHODS[:4]
IN_USE_ITERS = 2  # iterations sampled for the CPU's in-use memory (InUseSampler), after timing
NETS = {"vgg11": "vgg11 (8 convs 64-512, 4 avg pools folded into strided convs), 3x32x32 input"}


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _rss_mib() -> float:
    """Current resident set size of this process (Linux)."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * resource.getpagesize() / 2**20


def measure(
    method: str,
    steps: int,
    batch: int,
    iters: int,
    device: str,
    threads: int,
    *,
    arch: str = "vgg11",
    bf16: bool = True,
    channels_last: bool = False,
    warmup: int = 1,
) -> dict:
    """Time and memory of ``iters`` training iterations of one method (in this process)."""
    import gc

    import torch
    import torch.nn.functional as F

    from snn2loihi.train.config import resolve
    from snn2loihi.train.model import build_model
    from snn2loihi.train.step import StepParams, train_step

    torch.manual_seed(0)
    if threads:
        torch.set_num_threads(threads)
    dev = torch.device(device)
    bptt = method == "bptt"
    model = build_model(
        arch,
        (3, 32, 32),
        10,
        mean=(0.49, 0.48, 0.45),
        std=(0.25, 0.24, 0.26),
        steps=steps,
        step_divisor=1 if bptt else steps,
    ).to(dev)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.randint(0, 256, (batch, 3, 32, 32), dtype=torch.uint8, device=dev)
    y = torch.randint(0, 10, (batch,), device=dev)

    # The trainer's own step (bf16 autocast of the differentiable pass on CUDA, ATA after it).
    flag = {True: "true", False: "false"}
    config = resolve(
        None,
        [
            f"train.method='{'bptt' if bptt else 'snn2ann'}'",
            f"train.float_snn={flag[method == 'snn2ann-float']}",
            f"train.compile_neuron={flag[method == 'snn2ann-compiled']}",
            f"train.bf16={flag[bf16]}",
            f"model.channels_last={flag[channels_last]}",
        ],
    )
    params = StepParams.from_config(config)
    autocast = dev.type == "cuda" and bf16

    def ann_step() -> None:  # the same network as a plain ANN: one forward + backward
        xf = x.float()
        if channels_last:
            xf = xf.contiguous(memory_format=torch.channels_last)
        opt.zero_grad(set_to_none=True)  # as train_step: last step's gradients freed first
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast):
            logits, _ = model(xf)
        loss = F.cross_entropy(logits.float(), y)
        loss.backward()
        opt.step()

    def step() -> None:
        if method == "ann":
            ann_step()
        else:
            train_step(model, model, opt, x, y, params)

    def sync() -> None:
        if dev.type == "cuda":
            torch.cuda.synchronize()

    gc.collect()
    if dev.type == "cuda":
        torch.cuda.empty_cache()
    base_rss = _rss_mib()
    base_in_use = InUseSampler().in_use_mib()
    for _ in range(max(1, warmup)):  # warm-up (and, for snn2ann-compiled, the compilation)
        step()
    sync()
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    median, _ = time_calls(step, iters, sync=sync, warmup=False)
    row = {
        "method": method,
        "steps": steps,
        "batch": batch,
        "iters": iters,
        "ms_per_iter": 1000 * median,
    }
    if dev.type == "cuda":
        row["cuda_max_allocated_mib"] = torch.cuda.max_memory_allocated() / 2**20
    else:
        row["cpu_peak_rss_growth_mib"] = _peak_rss_mib() - base_rss
        if base_in_use is not None:  # after the timed iterations: the sampler takes the GIL
            with InUseSampler() as sampler:
                for _ in range(IN_USE_ITERS):
                    step()
            row["cpu_peak_in_use_growth_mib"] = sampler.peak_mib - base_in_use
    row.update(arch=arch, bf16=autocast, channels_last=channels_last)
    return row


def _variants(args) -> list[tuple[bool, bool]]:
    """(bf16, channels_last) pairs asked for."""
    return [(b == "on", c == "on") for b in args.bf16 for c in args.channels_last]


def _memory_key(row: dict) -> str:
    return (
        "cuda_max_allocated_mib" if "cuda_max_allocated_mib" in row else "cpu_peak_rss_growth_mib"
    )


def ratios(rows: list[dict]) -> list[dict]:
    """Per round, T, batch and (bf16, channels_last) variant, each SNN2ANN method's time and
    memory over BPTT's and its time over the plain ANN step's (None where that row is missing
    or failed). Rows without a ``round`` are round 0."""
    ok = [r for r in rows if "error" not in r]

    def key(r: dict) -> tuple:
        return r.get("round", 0), r["steps"], r["batch"], r["bf16"], r["channels_last"]

    by = {(key(r), r["method"]): r for r in ok}
    out = []
    for r in ok:
        if not r["method"].startswith("snn2ann"):
            continue
        bptt, ann = by.get((key(r), "bptt")), by.get((key(r), "ann"))
        mem = _memory_key(r)
        round_, steps, batch, bf16, channels_last = key(r)
        out.append(
            {
                "round": round_,
                "steps": steps,
                "batch": batch,
                "bf16": bf16,
                "channels_last": channels_last,
                "method": r["method"],
                "x_bptt_time": r["ms_per_iter"] / bptt["ms_per_iter"] if bptt else None,
                "x_bptt_memory": r[mem] / bptt[mem] if bptt else None,
                "x_ann_time": r["ms_per_iter"] / ann["ms_per_iter"] if ann else None,
            }
        )
        live = "cpu_peak_in_use_growth_mib"
        if bptt and live in r and live in bptt:  # malloc's in-use bytes: no free holes
            out[-1]["x_bptt_in_use_memory"] = r[live] / bptt[live]
    return out


def ratio_summary(per_round: list[dict]) -> list[dict]:
    """:func:`ratios` over the rounds: per (T, batch, variant, method) and ratio, the smallest,
    median and largest value and how many rounds meet its :data:`TARGETS` bound."""
    groups: dict[tuple, list[dict]] = {}
    for r in per_round:
        key = (r["steps"], r["batch"], r["bf16"], r["channels_last"], r["method"])
        groups.setdefault(key, []).append(r)
    out = []
    for (steps, batch, bf16, channels_last, method), rs in groups.items():
        entry = {"steps": steps, "batch": batch, "bf16": bf16, "channels_last": channels_last}
        entry.update(method=method, rounds=len(rs))
        for name, bound in [*TARGETS.items(), ("x_bptt_in_use_memory", None)]:
            values = [r[name] for r in rs if r.get(name) is not None]
            if values:
                entry[name] = {
                    "min": min(values),
                    "median": statistics.median(values),
                    "max": max(values),
                }
                if bound is not None:
                    entry[name].update(target=bound, rounds_met=sum(v <= bound for v in values))
        out.append(entry)
    return out


def _one_process(args, method: str, steps: int, variants) -> tuple[list[dict], str | None]:
    """Rows of ``method`` at ``steps`` for ``variants``, measured in a subprocess; the error's
    last line if it failed (rows measured before the failure are kept)."""
    cmd = [sys.executable, __file__, "--one", method, str(steps)]
    cmd += ["--batch", str(args.batch), "--iters", str(args.iters), "--warmup", str(args.warmup)]
    cmd += ["--device", args.device, "--threads", str(args.threads), "--arch", args.arch]
    cmd += ["--allocator", args.allocator]
    cmd += ["--bf16", *sorted({"on" if b else "off" for b, _ in variants})]
    cmd += ["--channels-last", *sorted({"on" if c else "off" for _, c in variants})]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    rows = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0:
        lines = (proc.stderr or proc.stdout).strip().splitlines() or [f"exit {proc.returncode}"]
        return rows, lines[-1]
    return rows, None


def main() -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--steps", type=int, nargs="+", default=[4, 8])
    p.add_argument("--methods", nargs="+", default=list(DEFAULT_METHODS), choices=METHODS)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--iters", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1, help="untimed iterations first")
    p.add_argument("--rounds", type=int, default=1,
                   help="measure every (T, method) this many times, round by round")  # fmt: skip
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    p.add_argument("--arch", default="vgg11", help="model.arch preset (default vgg11)")
    p.add_argument("--bf16", nargs="+", choices=("on", "off"), default=["on"],
                   help="bf16 autocast of the differentiable pass (CUDA only)")  # fmt: skip
    p.add_argument("--channels-last", nargs="+", choices=("on", "off"), default=["off"])
    p.add_argument("--allocator", choices=ALLOCATORS, default="keep",
                   help="keep freed memory as the CLI does (default), or glibc's defaults")  # fmt: skip
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "train_cost.json"))
    p.add_argument("--one", nargs=2, metavar=("METHOD", "T"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.one:
        allocator = setup_allocator(args.allocator)
        for bf16, channels_last in _variants(args):
            res = measure(
                args.one[0],
                int(args.one[1]),
                args.batch,
                args.iters,
                args.device,
                args.threads,
                arch=args.arch,
                bf16=bf16,
                channels_last=channels_last,
                warmup=args.warmup,
            )
            print(json.dumps({**res, "allocator": allocator}), flush=True)
        return 0
    import torch

    result = {
        "net": NETS.get(args.arch, f"{args.arch} (model.arch preset), 3x32x32 input"),
        "device": args.device,
        "gpu": torch.cuda.get_device_name(0) if args.device.startswith("cuda") else None,
        "machine": machine(),
        "threads": args.threads or torch.get_num_threads(),
        "command": shlex.join(["python", "bench/train_cost.py", *sys.argv[1:]]),
        "rows": [],
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    groups = [[v] for v in _variants(args)] if args.device == "cpu" else [_variants(args)]
    failed = 0
    for round_ in range(args.rounds):
        for steps in args.steps:
            for method in args.methods:
                for variants in groups:
                    rows, error = _one_process(args, method, steps, variants)
                    if error is not None:
                        failed += 1
                        rows.append({"method": method, "steps": steps, "error": error})
                    for row in rows:
                        if args.rounds > 1:
                            row["round"] = round_
                        result["rows"].append(row)
                        print(json.dumps(row), flush=True)
                    result["ratios"] = ratios(result["rows"])
                    result["ratio_summary"] = ratio_summary(result["ratios"])
                    write_result(out, result)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
