"""Fast CIFAR-10 recipe: train configs/cifar_fast.toml with the real CLI, then evaluate the
exported network on the emulator; writes the figures as JSON.

1. the shared JPEG copy is decoded once into uint8 ``.npz`` files (``--cache``; seeded subsets
   with ``--train-subset`` / ``--test-subset``), see bench/cifar_data.py;
2. ``snn2loihi train -c configs/cifar_fast.toml`` with those files (SNN2ANN, integer branch at
   T = 4, one-cycle SGD, label smoothing; images kept and augmented on the training device);
3. ``snn2loihi eval <run>/best.pt --data <test.npz>``: the exported network on the emulator.

    .venv/bin/python bench/cifar_fast.py --epochs 30                   # one GPU
    .venv/bin/python bench/cifar_fast.py --device cpu --train-subset 10000 --epochs 2 --threads 2
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

from cifar_data import SOURCE, cached_cifar, find_data
from harness import log_figure, machine, write_result

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "cifar_fast.toml"
TARGETS = {  # issues #16 (one GPU) and #29 (this project's 2-core CPU)
    "cuda": ">= 0.90 emulator test accuracy after <= 300 s of training on one H100",
    "cpu": ">= 0.90 emulator test accuracy at T = 4 after <= 90 min of training on 2 CPU cores",
}


def machine_record(device: str) -> dict:
    """bench/harness.py's machine record, with the training device."""
    return {"device": device, **machine()}


def resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def run(cmd: list[str], threads: int | None = None) -> float:
    """Run ``cmd`` (output to the terminal) and return its wall time; raise if it fails.
    ``threads``: torch's CPU threads in it (OMP_NUM_THREADS)."""
    print("+", shlex.join(cmd), flush=True)
    env = dict(os.environ, **({"OMP_NUM_THREADS": str(threads)} if threads else {}))
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=ROOT, env=env)
    return time.perf_counter() - t0


def shown(cmd: list[str]) -> str:
    """``cmd`` as recorded: ``python`` for the interpreter, paths relative to the repository."""
    return shlex.join(["python", *cmd[1:]]).replace(f"{ROOT}/", "")


def read_log(run_dir: Path) -> list[dict]:
    with open(run_dir / "log.csv", newline="") as f:
        return list(csv.DictReader(f))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--epochs", type=int, help="default: the config's (train.epochs)")
    p.add_argument("--device", default="auto", help="auto (cuda if present), cuda, cpu")
    p.add_argument("--data", type=Path, help="folder with cifar10-jpeg/ (default: shared/data "
                   "or ../shared/data)")  # fmt: skip
    p.add_argument("--cache", type=Path, default=ROOT / "runs" / "cache" / "cifar10")
    p.add_argument("--train-subset", type=int, help="seeded random subset of the training set")
    p.add_argument("--test-subset", type=int, help="seeded random subset of the test set")
    p.add_argument("--batch-size", type=int, help="train.batch_size (the config's: 512)")
    p.add_argument("--threads", type=int, help="torch CPU threads of the train and eval runs")
    p.add_argument("--eval-batch", type=int, default=1024, help="emulator batch of the eval")
    p.add_argument("--config", type=Path, default=CONFIG)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="more config overrides (repeatable)")  # fmt: skip
    p.add_argument("--out", type=Path, default=ROOT / "runs" / "cifar_fast", help="run folder")
    p.add_argument("--results", type=Path, help="default: bench/results/cifar_fast_<device>.json")
    p.add_argument("--resume", type=Path, metavar="CKPT",
                   help="continue a run from CKPT (e.g. its pretrained.pt, the end of its ANN "
                   "phase, with another train.steps); the results count CKPT's run's epochs up "
                   "to it")  # fmt: skip
    args = p.parse_args(argv)

    device = resolve_device(args.device)
    data = args.data or find_data(ROOT / "shared" / "data", ROOT.parent / "shared" / "data")
    src = data / SOURCE
    if not src.is_file():
        p.error(f"{src}: no JPEG CIFAR-10 copy (give --data)")
    results = args.results or ROOT / "bench" / "results" / f"cifar_fast_{device.split(':')[0]}.json"

    t0 = time.perf_counter()
    train_npz, test_npz = cached_cifar(
        src, args.cache, train_subset=args.train_subset, test_subset=args.test_subset
    )
    decode_s = time.perf_counter() - t0
    print(f"data: {train_npz.name}, {test_npz.name} ({decode_s:.1f} s)", flush=True)

    from snn2loihi.train.checkpoint import checkpoint_file
    from snn2loihi.train.config import resolve

    sets = [f"data.train={json.dumps(str(train_npz))}", f"data.test={json.dumps(str(test_npz))}"]
    if args.batch_size:
        sets.append(f"train.batch_size={args.batch_size}")
    if args.threads:
        sets.append(f"train.num_threads={args.threads}")
    sets += args.set
    train_cmd = [sys.executable, "-m", "snn2loihi", "train", "-c", str(args.config)]
    for s in sets:
        train_cmd += ["--set", s]
    if args.epochs:
        train_cmd += ["--epochs", str(args.epochs)]
    if args.resume:
        train_cmd += ["--resume", str(args.resume)]
    train_cmd += ["--device", device, "--out", str(args.out), "--force", "--no-progress"]
    train_s = run(train_cmd, args.threads)
    # the largest resident set of the children waited for so far: the training process's peak
    train_rss_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024

    rows = read_log(args.out)
    if args.resume:  # the epochs before the checkpoint: its run's log rows
        first = int(rows[0]["epoch"])
        resumed_run = checkpoint_file(args.resume).parent  # CKPT, or a run folder's last.pt
        before = [r for r in read_log(resumed_run) if int(r["epoch"]) < first]
        train_s += sum(float(r["epoch_s"]) for r in before)
        rows = before + rows
    test = json.loads((args.out / "test.json").read_text())
    eval_json = args.out / "eval_emulator.json"
    eval_cmd = [sys.executable, "-m", "snn2loihi", "eval", str(args.out / "best.pt")]
    eval_cmd += ["--data", str(test_npz), "--backend", "emulator", "--device", device]
    eval_cmd += ["--batch-size", str(args.eval_batch), "--json", str(eval_json), "--no-progress"]
    eval_s = run(eval_cmd, args.threads)
    ev = json.loads(eval_json.read_text())
    emulator = ev["scores"]["emulator"]

    resolved = resolve(args.out / "config.toml")
    epoch_s = [float(r["epoch_s"]) for r in rows]
    result = {
        "recipe": str(
            args.config.relative_to(ROOT) if args.config.is_relative_to(ROOT) else args.config
        ),
        "command": shlex.join(["python", "bench/cifar_fast.py", *(argv or sys.argv[1:])]),
        "train_command": shown(train_cmd),
        # with --resume: train_wall_s and epoch_s include the resumed run's epochs before CKPT
        "resumed_from": str(args.resume).replace(f"{ROOT}/", "") if args.resume else None,
        "eval_command": shown(eval_cmd),
        "machine": machine_record(device),
        "threads": args.threads,
        "seed": resolved.train.seed,
        "val_fraction": resolved.data.val_fraction,
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "arch": resolved.model.arch,
        "steps": resolved.train.steps,
        "batch_size": resolved.train.batch_size,
        "lr": resolved.train.lr,
        "epochs": len(rows),
        "pretrain_epochs": resolved.train.pretrain_epochs,  # the first of them: the ReLU ANN alone
        "train_file_samples": None,  # filled below (train + validation)
        "test_samples": test["samples"],
        "decode_s": round(decode_s, 2),
        "train_wall_s": round(train_s, 2),
        "train_peak_rss_mib": round(train_rss_mib, 1),  # the training process (Linux: KiB / 1024)
        "epoch_s": [round(s, 3) for s in epoch_s],
        "train_s_sum_epochs": round(sum(epoch_s), 2),
        "epochs_in_5_min": int(300 // statistics.mean(epoch_s[1:] or epoch_s)),
        "val_snn_acc": [log_figure(r["snn_acc"]) for r in rows],  # None: ANN phase
        "val_ann_acc": [float(r["ann_acc"]) for r in rows],  # the ReLU ANN branch
        "best_epoch": test["best_epoch"],
        "test_ann_acc": test["test_ann_acc"],
        "test_snn_acc": test["test_snn_acc"],
        "emulator_test_acc": emulator["accuracy"],
        "emulator_equals_integer_snn": emulator["accuracy"] == test["test_snn_acc"],
        "spikes_per_sample": emulator["spikes_per_sample"],
        "eval_wall_s": round(eval_s, 2),
        "target": TARGETS["cuda" if device.startswith("cuda") else "cpu"],
    }
    import numpy as np

    with np.load(train_npz) as f:
        result["train_file_samples"] = int(len(f["y"]))
    write_result(results, result)
    print(
        f"cifar_fast: {result['epochs']} epochs in {result['train_s_sum_epochs']:.0f} s "
        f"(wall {train_s:.0f} s), emulator test accuracy {emulator['accuracy']:.2%} on "
        f"{test['samples']} images (integer SNN {test['test_snn_acc']:.2%}) -> {results}",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
