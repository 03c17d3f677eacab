"""Ablations of the CIFAR-10 recipe: one training run per variant on the same budget, never
touching the CIFAR-10 test set.

Every run trains with ``snn2loihi train -c CONFIG`` plus the variant's ``--set`` overrides on a
seeded subset of the *training* file (``--train``, default 10,000 images; its validation split
is carved by the config's ``data.val_fraction``); the run's own "test" split is a disjoint
held-out part of the training file (``--holdout``, default 2,000 images), so the real test set
stays unseen until the recipe is final. Records per variant the validation curve, the best
validation accuracy (the selection the recipe makes), the held-out accuracy of the selected
epoch, spikes per sample and minutes, as JSON and a markdown table.

    .venv/bin/python bench/cifar_ablation.py --epochs 8 --threads 2 \\
        --variant base --variant bf16_off:train.bf16_cpu=false \\
        --variant flips_random:data.flip_mode='"random"' --variant bn04:model.bn_momentum=0.4 \\
        --out bench/results/cifar10_ablation.json
"""

from __future__ import annotations

import argparse
import csv
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from cifar_data import SOURCE, cached_cifar, find_data
from harness import log_figure, machine, write_result

ROOT = Path(__file__).resolve().parents[1]


def holdout_files(full_train: Path, cache: Path, n_train: int, n_holdout: int, seed: int):
    """``(train, holdout)`` npz files: disjoint seeded subsets of the training file."""
    train = cache / f"ablation_train_{n_train}_seed{seed}.npz"
    holdout = cache / f"ablation_holdout_{n_holdout}_seed{seed}.npz"
    if not (train.is_file() and holdout.is_file()):
        with np.load(full_train) as f:
            x, y = f["x"], f["y"]
            order = np.random.default_rng(seed).permutation(len(y))
            for path, idx in (
                (train, np.sort(order[:n_train])),
                (holdout, np.sort(order[n_train : n_train + n_holdout])),
            ):
                tmp = path.with_name(path.name + ".tmp.npz")
                np.savez(tmp, x=x[idx], y=y[idx])
                tmp.replace(path)
    return train, holdout


def parse_variant(text: str) -> tuple[str, list[str]]:
    """``name[:key=value[,key=value...]]`` -> (name, overrides)."""
    name, _, rest = text.partition(":")
    return name, [s for s in rest.split(",") if s]


def run_variant(name, sets, args, train, holdout) -> dict:
    out = args.runs / name
    cmd = [sys.executable, "-m", "snn2loihi", "train", "-c", str(args.config)]
    base = [f"data.train={json.dumps(str(train))}", f"data.test={json.dumps(str(holdout))}"]
    if args.threads:
        base.append(f"train.num_threads={args.threads}")
    for s in base + args.set + sets:
        cmd += ["--set", s]
    cmd += ["--epochs", str(args.epochs), "--out", str(out), "--force", "--no-progress"]
    shown = shlex.join(["python", *cmd[1:]]).replace(f"{ROOT}/", "")
    print("+", shown, flush=True)
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=ROOT)
    wall = time.perf_counter() - t0
    with open(out / "log.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    held = json.loads((out / "test.json").read_text())
    val = [log_figure(r["snn_acc"]) for r in rows]  # None: ANN phase
    return {
        "variant": name,
        "overrides": sets,
        "command": shown,
        "wall_s": round(wall, 1),
        "epoch_s": [round(float(r["epoch_s"]), 1) for r in rows],
        "val_snn_acc": val,
        "best_val": max(v for v in val if v is not None),
        "best_epoch": held["best_epoch"],
        "holdout_snn_acc": held["test_snn_acc"],
        "holdout_samples": held["samples"],
        "spikes_per_sample": held.get("test_spikes_total"),
    }


def table(rows: list[dict]) -> str:
    head = "| variant | overrides | best validation | held-out (selected epoch) | minutes |"
    lines = [head, "|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['variant']} | {' '.join(r['overrides']) or '(recipe)'} | {r['best_val']:.2%} "
            f"| {r['holdout_snn_acc']:.2%} | {r['wall_s'] / 60:.1f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--config", type=Path, default=ROOT / "configs" / "cifar10_cpu.toml")
    p.add_argument("--variant", action="append", required=True, help="name[:key=value,...]")
    p.add_argument("--set", action="append", default=[], help="overrides for every variant")
    p.add_argument("--epochs", type=int, required=True)
    p.add_argument("--threads", type=int)
    p.add_argument("--train", type=int, default=10_000, help="training images (validation carved)")
    p.add_argument("--holdout", type=int, default=2_000, help="held-out images from the train file")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data", type=Path, help="folder with cifar10-jpeg/")
    p.add_argument("--cache", type=Path, default=ROOT / "runs" / "cache" / "cifar10")
    p.add_argument("--runs", type=Path, default=ROOT / "runs" / "ablation")
    p.add_argument("--out", type=Path, required=True, help="result JSON (a .md table beside it)")
    args = p.parse_args(argv)
    data = args.data or find_data(ROOT / "shared" / "data", ROOT.parent / "shared" / "data")
    if not (data / SOURCE).is_file():
        p.error(f"{data / SOURCE}: no JPEG CIFAR-10 copy (give --data)")
    full_train, _ = cached_cifar(data / SOURCE, args.cache)
    train, holdout = holdout_files(full_train, args.cache, args.train, args.holdout, args.seed)
    result = {
        "config": str(
            args.config.relative_to(ROOT) if args.config.is_relative_to(ROOT) else args.config
        ),
        "command": shlex.join(["python", "bench/cifar_ablation.py", *(argv or sys.argv[1:])]),
        "machine": machine(),
        "threads": args.threads,
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "train_images": args.train,
        "holdout_images": args.holdout,
        "epochs": args.epochs,
        "rows": [],
    }
    for text in args.variant:
        name, sets = parse_variant(text)
        result["rows"].append(run_variant(name, sets, args, train, holdout))
        write_result(args.out, result)
        write_result(args.out.with_suffix(".md"), table(result["rows"]) + "\n")
    print(table(result["rows"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
