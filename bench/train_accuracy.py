"""Accuracy of the deployed (integer) network after training: named suites of `snn2loihi train` runs.

Each run is the real CLI in a subprocess; its final and best epochs (validation split) are read
back from the run's ``log.csv``, the test figures of the selected (best-on-validation) model from
its ``test.json``, and recorded with the exact command, wall time and machine in
``bench/results/train_<suite>.json`` (runs of the same name are replaced, others kept).

    .venv/bin/python bench/train_accuracy.py digits
    .venv/bin/python bench/train_accuracy.py mnist --data ../shared/data --jobs 2
    .venv/bin/python bench/train_accuracy.py cifar10 --data ../shared/data   # GPU

``cifar10`` decodes the shared JPEG copy of CIFAR-10 (one header + per-image payloads) once into
the generic ``.npz`` format (x uint8 NHWC, y) the trainer loads, cached in runs/cache/cifar10
(bench/cifar_data.py).
"""

from __future__ import annotations

import argparse
import csv
import json
import shlex
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from cifar_data import SOURCE, cached_cifar
from harness import machine, write_result

RESULTS = Path(__file__).parent / "results"
CACHE = Path(__file__).resolve().parents[1] / "runs" / "cache" / "cifar10"


def mnist_npz_args(data: Path) -> list[str]:
    """``train`` overrides for the shared MNIST npz files under ``data`` and the mnist preset."""
    mnist = data / "mnist"
    return [
        "--set", "data.dataset='npz'",
        "--set", f"data.train='{mnist / 'mnist_train.npz'}'",
        "--set", f"data.test='{mnist / 'mnist_test.npz'}'",
        "--set", "model.arch='mnist'",
    ]  # fmt: skip


def suite_runs(suite: str, data: Path, epochs: int | None, work: Path) -> list[dict]:
    """``[{name, args}]``: the CLI arguments of every run of ``suite``."""
    if suite == "digits":
        e = ["--epochs", str(epochs or 20), "--set", "train.num_threads=1"]
        return [
            {"name": "snn2ann T=4", "args": ["--method", "snn2ann", "--steps", "4", *e]},
            {"name": "snn2ann T=2", "args": ["--method", "snn2ann", "--steps", "2", *e]},
            {"name": "snn2ann T=1", "args": ["--method", "snn2ann", "--steps", "1", *e]},
            {"name": "snn2ann T=4 float-snn", "args": ["--steps", "4", "--float-snn", *e]},
            {"name": "bptt T=4", "args": ["--method", "bptt", "--steps", "4", *e]},
        ]
    if suite == "mnist":
        common = [
            *mnist_npz_args(data),
            "--set", "model.threshold=0.5",
            "--set", "train.optimizer='adam'",
            "--set", "train.lr=0.001",
            "--set", "train.weight_decay=0.0",
            "--set", "train.num_threads=1",
            "--epochs", str(epochs or 12),
        ]  # fmt: skip
        shifts = ["--set", "data.augment='on'", "--set", "data.crop_padding=2",
                  "--set", "data.flip=false"]  # fmt: skip
        snn2ann = ["--method", "snn2ann", "--steps", "4", *common]
        t2 = ["--method", "snn2ann", "--steps", "2", *common]
        return [
            {"name": "snn2ann T=4 adam threshold 0.5", "args": snn2ann},
            {"name": "snn2ann T=4 adam threshold 0.5 shifts", "args": [*snn2ann, *shifts]},
            {"name": "snn2ann T=2 adam threshold 0.5 shifts", "args": [*t2, *shifts]},
        ]
    if suite == "cifar10":
        train, test = cached_cifar(data / SOURCE, CACHE)
        common = [
            "--set", "data.dataset='npz'",
            "--set", f"data.train='{train}'",
            "--set", f"data.test='{test}'",
            "--set", "data.augment='on'",
            "--set", "model.arch='vgg11'",
            "--set", "train.batch_size=128",
            "--set", "train.optimizer='sgd'",
            "--set", "train.lr=0.1",
            "--set", "train.weight_decay=0.0005",
            "--set", "model.channels_last=true",
            "--epochs", str(epochs or 100),
        ]  # fmt: skip
        return [{"name": "snn2ann T=4", "args": ["--method", "snn2ann", "--steps", "4", *common]}]
    raise SystemExit(f"unknown suite {suite!r}: digits, mnist or cifar10")


def run_one(name: str, args: list[str], out: Path) -> dict:
    """Train with the CLI into ``out``; the run's command, wall time, final and best epoch
    (validation) and the test figures of the best epoch's model."""
    cmd = [sys.executable, "-m", "snn2loihi", "train", *args, "--out", str(out), "--no-progress"]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True)
    wall = time.perf_counter() - t0
    with open(out / "log.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    keep = ("epoch", "ann_acc", "snn_acc", "spikes_total", "epoch_s")
    final = {k: float(rows[-1][k]) for k in keep}
    measured = [r for r in rows if r["snn_acc"]]  # "": an ANN-phase epoch, SNN not validated
    best = max(measured, key=lambda r: float(r["snn_acc"]))
    test = json.loads((out / "test.json").read_text())
    return {
        "name": name,
        "command": " ".join(["python", "-m", "snn2loihi", "train", *args]),
        "wall_s": wall,
        "epochs": len(rows),
        "final": final,
        "best_val_snn_acc": float(best["snn_acc"]),
        "best_epoch": int(best["epoch"]),
        "test_samples": test["samples"],
        "test_ann_acc": test["test_ann_acc"],
        "test_snn_acc": test["test_snn_acc"],
        "test_spikes_total": test["test_spikes_total"],
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("suite", choices=("digits", "mnist", "cifar10"))
    p.add_argument("--data", type=Path, default=Path("../shared/data"))
    p.add_argument("--epochs", type=int, default=None, help="override the suite's epochs")
    p.add_argument("--only", nargs="+", help="names of the runs to do (default: all)")
    p.add_argument("--jobs", type=int, default=1, help="runs trained at the same time")
    p.add_argument("--note", default="", help="machine note recorded with the results")
    args = p.parse_args()

    out_file = RESULTS / f"train_{args.suite}.json"
    runs: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        todo = [
            r
            for r in suite_runs(args.suite, args.data, args.epochs, Path(tmp))
            if not args.only or r["name"] in args.only
        ]

        def one(run: dict) -> dict:
            slug = run["name"].replace(" ", "_").replace("=", "")
            result = run_one(run["name"], run["args"], Path(tmp) / slug)
            print(json.dumps(result), flush=True)
            return result

        with ThreadPoolExecutor(max_workers=args.jobs) as pool:
            for result in pool.map(one, todo):
                runs[result["name"]] = result
    # Merge with the file as it is now (another invocation may have written it meanwhile).
    old = json.loads(out_file.read_text()) if out_file.exists() else {}
    # runs of older formats (no test split, selected on the held-out set) are dropped
    kept = {r["name"]: r for r in old.get("runs", []) if "test_snn_acc" in r}
    runs = {**kept, **runs}
    result = {
        "suite": args.suite,
        "metric": "accuracy of the integer Loihi network (the one export writes and the emulator "
        "and Lava reproduce); float-snn runs report the float SNN. final.* and best_val_snn_acc: "
        "validation split (carved from the training data), which selects the best epoch; "
        "test_*: the test split, evaluated once on the selected model",
        "command": shlex.join(["python", "bench/train_accuracy.py", *sys.argv[1:]]),
        "machine": {**machine(), **({"note": args.note} if args.note else {})},
        "runs": list(runs.values()),
    }
    write_result(out_file, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
