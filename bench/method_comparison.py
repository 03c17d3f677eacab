"""The training routes side by side (issue #34): SNN2ANN, SNN2ANN from a pre-trained ANN, the
noise route (T = 1 -> N) and BPTT, at T in {1, 2, 4}, on the same data and epoch budget.

Every run is the real CLI in a subprocess: ``snn2loihi train`` (wall time, and the peak RSS of
that process from ``os.wait4``), then ``snn2loihi export <run>/best.pt --split test`` (the file,
with the check that the emulator equals the integer SNN on the test split) and ``snn2loihi eval
<file> --backend emulator`` (test accuracy and spikes per sample of the exported network on the
emulator). The best epoch is selected on the validation split only; the test split is read once,
by the exported network. The commands are recorded with the figures in
``bench/results/method_comparison_<suite>.json``.

"SNN2ANN from a pre-trained ANN" is two runs: one ANN run per suite (``train.pretrain_epochs =
E_ann`` of ``E_ann + 1`` epochs; the one SNN2ANN epoch the config needs after pre-training is
part of its cost), shared by every T, then ``train --init-from`` that run for the remaining
epochs; its minutes are the sum of both, its peak memory the larger.

    .venv/bin/python bench/method_comparison.py digits
    .venv/bin/python bench/method_comparison.py mnist --data ../shared/data   # about 4 min/epoch
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from harness import machine, write_result
from train_accuracy import mnist_npz_args

log = logging.getLogger("method_comparison")

RESULTS = Path(__file__).parent / "results"
METHODS = ("snn2ann", "snn2ann_from_ann", "noise", "bptt")
STEPS = (1, 2, 4)


def suite_settings(suite: str, data: Path, epochs: int | None) -> tuple[list[str], int, int]:
    """``(common train arguments, epochs per route, ANN epochs of the pre-trained route)``."""
    threads = ["--set", "train.num_threads=1"]
    if suite == "digits":
        total = epochs or 20
        return threads, total, ann_share(total)
    if suite == "mnist":
        common = [*mnist_npz_args(data), *threads]
        total = epochs or 8
        return common, total, ann_share(total)
    raise SystemExit(f"unknown suite {suite!r}: digits or mnist")


def ann_share(total: int) -> int:
    """ANN epochs of the pre-trained route: three quarters of the budget, leaving at least one
    epoch for the run from it after the ANN run's own SNN2ANN epoch."""
    if total < 3:
        raise SystemExit(f"--epochs {total}: the pre-trained route needs at least 3")
    return max(1, min(total * 3 // 4, total - 2))


def eval_data_args(suite: str, data: Path) -> list[str]:
    """How ``eval`` reads the test split for a ``.net`` of ``suite``."""
    if suite == "digits":
        return ["--dataset", "digits"]
    return ["--data", str(data / "mnist" / "mnist_test.npz")]


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "snn2loihi", *args]


def shown(cmd: list[str]) -> str:
    """The command as a user types it (``python -m snn2loihi ...``)."""
    return shlex.join(["python", *cmd[1:]])


def timed(cmd: list[str], quiet: bool = False) -> tuple[float, float, float]:
    """Run ``cmd`` (``quiet``: its stdout dropped); ``(wall seconds, peak RSS MiB, CPU seconds
    (user + system) of that process)``. Raises on failure."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL if quiet else None)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise subprocess.CalledProcessError(proc.returncode, cmd)
    cpu = usage.ru_utime + usage.ru_stime
    return time.perf_counter() - t0, usage.ru_maxrss / 1024, cpu  # Linux: ru_maxrss in KiB


def train_run(args: list[str], out: Path) -> dict:
    cmd = cli("train", *args, "--out", str(out), "--no-progress", "--force")
    wall, peak, cpu = timed(cmd)
    test = json.loads((out / "test.json").read_text())
    return {
        "command": shown(cmd),
        "train_s": wall,
        "train_cpu_s": cpu,  # less moved by other jobs than the wall time
        "peak_rss_mib": peak,
        "best_epoch": test["best_epoch"],
        "best_val_snn_acc": test["val_snn_acc"],
        "test_integer_snn_acc": test["test_snn_acc"],
    }


def deployed_figures(out: Path, suite: str, data: Path) -> dict:
    """Export the selected checkpoint and evaluate the file on the emulator (test split)."""
    net = out / "model.net"
    export = cli("export", str(out / "best.pt"), "--out", str(net), "--split", "test", "--force")
    subprocess.run(export, check=True)
    report = json.loads(net.with_suffix(".report.json").read_text())["accuracy"]
    ev = out / "eval.json"
    evaluate = cli("eval", str(net), *eval_data_args(suite, data), "--backend", "emulator")
    evaluate += ["--json", str(ev), "--no-progress"]
    subprocess.run(evaluate, check=True, stdout=subprocess.DEVNULL)
    score = json.loads(ev.read_text())["scores"]["emulator"]
    return {
        "export_command": shown(export),
        "eval_command": shown(evaluate),
        "test_emulator_acc": score["accuracy"],
        "spikes_per_sample": score["spikes_per_sample"],
        "export_emulator_equals_integer_snn": bool(report["equal"]),
        "test_samples": report["samples"],
    }


def route_args(method: str, steps: int, epochs: int, ann_dir: Path | None) -> list[str]:
    base = ["--steps", str(steps), "--epochs", str(epochs)]
    if method == "snn2ann_from_ann":
        return ["--method", "snn2ann", "--init-from", str(ann_dir), *base]
    return ["--method", method, *base]


def one_route(method, steps, common, budget, work: Path, ann: dict | None, args) -> dict:
    """Train, export and evaluate one route at ``steps``; ``budget``: (epochs, ANN epochs)."""
    epochs, ann_epochs = budget
    own = epochs - ann_epochs - 1 if method == "snn2ann_from_ann" else epochs
    out = work / f"{method}_T{steps}"
    run = {"method": method, "steps": steps, "epochs": own}
    run.update(train_run([*common, *route_args(method, steps, own, work / "ann")], out))
    run.update(deployed_figures(out, args.suite, args.data))
    if method == "snn2ann_from_ann" and ann is not None:
        run["ann_train_s"] = ann["train_s"]
        run["total_train_s"] = ann["train_s"] + run["train_s"]
        run["total_train_cpu_s"] = ann["train_cpu_s"] + run["train_cpu_s"]
        run["peak_rss_mib"] = max(run["peak_rss_mib"], ann["peak_rss_mib"])
    else:
        run["total_train_s"] = run["train_s"]
        run["total_train_cpu_s"] = run["train_cpu_s"]
    run["train_minutes"] = run["total_train_s"] / 60
    log.info("%s", json.dumps(run))
    return run


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("suite", choices=("digits", "mnist"))
    p.add_argument("--data", type=Path, default=Path("../shared/data"))
    p.add_argument("--epochs", type=int, default=None, help="epochs per route (default: suite's)")
    p.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    p.add_argument("--steps", nargs="+", type=int, default=list(STEPS))
    p.add_argument("--seeds", nargs="+", type=int, default=[0], help="train.seed of each round")
    p.add_argument("--note", default="", help="machine note recorded with the results")
    p.add_argument("--results", type=Path, default=None)
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    common, epochs, ann_epochs = suite_settings(args.suite, args.data, args.epochs)
    runs: list[dict] = []
    anns: list[dict] = []
    t_start = time.time()
    # what the interpreter and the CLI's imports alone hold
    _, idle_peak, _ = timed(cli("train", "--help"), quiet=True)
    with tempfile.TemporaryDirectory(prefix="method-comparison-") as tmp:
        for seed in args.seeds:
            work = Path(tmp) / f"seed{seed}"
            seeded = [*common, "--seed", str(seed)]
            ann = None
            if "snn2ann_from_ann" in args.methods:
                pre = ["--set", f"train.pretrain_epochs={ann_epochs}"]
                ann = train_run([*seeded, "--steps", "4", *pre, "--epochs", str(ann_epochs + 1)],
                                work / "ann")  # fmt: skip
                anns.append({"seed": seed, **ann})
                log.info("ANN pre-training, seed %d: %.1f s", seed, ann["train_s"])
            for method in args.methods:
                for steps in args.steps:
                    run = one_route(method, steps, seeded, (epochs, ann_epochs), work, ann, args)
                    runs.append({"seed": seed, **run})
    result = {
        "suite": args.suite,
        "issue": 34,
        "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t_start)),
        "command": shlex.join(["python", "bench/method_comparison.py", *sys.argv[1:]]),
        "metric": "test_emulator_acc: the exported .net on the emulator, test split, model "
        "selected on the validation split (best_val_snn_acc, best_epoch 0-based); "
        "train_minutes: wall time of training (for snn2ann_from_ann: the ANN run plus the "
        "run from it); peak_rss_mib: peak RSS of the training process (the larger of the two "
        "for snn2ann_from_ann; cli_import_peak_rss_mib is what `train --help` alone holds); "
        "spikes_per_sample: all spiking layers, emulator, test split",
        "epochs_per_route": epochs,
        "ann_pretraining": anns,
        "cli_import_peak_rss_mib": idle_peak,
        "machine": {**machine(), "note": args.note},
        "runs": runs,
    }
    out_file = args.results or RESULTS / f"method_comparison_{args.suite}.json"
    write_result(out_file, result)
    log.info("%s", table(result))
    return 0


def table(result: dict) -> str:
    """The markdown table of docs/training.md: per route and T, the mean over the seeds (and
    the lowest and highest test accuracy), the mean minutes, the highest peak."""
    rows = [
        "| method | T | test acc. (emulator), mean [min, max] | train min | peak MiB | "
        "spikes/sample |",
        "|---|---|---|---|---|---|",
    ]
    groups: dict[tuple[str, int], list[dict]] = {}
    for r in result["runs"]:
        groups.setdefault((r["method"], r["steps"]), []).append(r)
    for (method, steps), rs in groups.items():
        acc = [100 * r["test_emulator_acc"] for r in rs]
        rows.append(
            f"| {method} | {steps} | {sum(acc) / len(acc):.2f}% [{min(acc):.2f}, {max(acc):.2f}]"
            f" | {sum(r['train_minutes'] for r in rs) / len(rs):.2f}"
            f" | {max(r['peak_rss_mib'] for r in rs):.0f}"
            f" | {sum(r['spikes_per_sample'] for r in rs) / len(rs):.0f} |"
        )
    return "\n".join(rows)


if __name__ == "__main__":
    sys.exit(main())
