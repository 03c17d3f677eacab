"""Time-to-accuracy curves of recorded training runs (``bench/cifar_fast.py`` result files):
validation accuracy of the integer SNN after each epoch against the training minutes so far,
one line per run, test accuracy of the selected model as a marker at the run's end. Epochs of
an ANN phase whose SNN was not validated (since session 23) show the ANN branch's validation,
dashed.

    .venv/bin/python bench/time_to_accuracy.py bench/results/cifar10_t4_seed*.json \\
        --out bench/results/cifar10_time_to_accuracy.png
"""

from __future__ import annotations

import argparse
import json
import sys
from itertools import accumulate
from pathlib import Path


def curve(result: dict) -> tuple[list[float], list[float]]:
    """Minutes at the end of each epoch (validation included) and the integer SNN's validation
    accuracy there, for the epochs that measured it."""
    minutes = [s / 60 for s in accumulate(result["epoch_s"])]
    points = [(m, a) for m, a in zip(minutes, result["val_snn_acc"], strict=True) if a is not None]
    return [m for m, _ in points], [a for _, a in points]


def ann_phase_curve(result: dict) -> tuple[list[float], list[float]]:
    """Minutes and the ANN branch's validation accuracy of the epochs whose SNN was not
    validated (an ANN phase), up to the first SNN point; empty for older result files."""
    minutes = [s / 60 for s in accumulate(result["epoch_s"])]
    rows = zip(minutes, result["val_snn_acc"], result.get("val_ann_acc", []), strict=False)
    points = []
    for m, snn, ann in rows:
        points.append((m, ann))
        if snn is not None:
            break
    if len(points) < 2:
        return [], []
    return [m for m, _ in points], [a for _, a in points]


def plot(results: dict[str, dict], out: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for label, r in results.items():
        minutes, acc = curve(r)
        (line,) = ax.plot(minutes, [100 * a for a in acc], marker=".", label=label)
        ann_minutes, ann_acc = ann_phase_curve(r)
        ax.plot(ann_minutes, [100 * a for a in ann_acc], linestyle="--", color=line.get_color())
        test = r.get("emulator_test_acc")
        if test is not None:
            ax.plot([minutes[-1]], [100 * test], marker="*", markersize=12, linestyle="none",
                    color=line.get_color())  # fmt: skip
    ax.plot([], [], marker="*", markersize=12, linestyle="none", color="gray",
            label="test accuracy of the selected epoch (run's colour)")  # fmt: skip
    ax.plot([], [], linestyle="--", color="gray", label="ANN phase: the ANN branch's validation")
    ax.set_xlabel("training minutes (validation after each epoch included)")
    ax.set_ylabel("validation accuracy (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    tmp = out.with_name(out.name + ".tmp.png")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    tmp.replace(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("results", nargs="+", type=Path, help="result JSON files")
    p.add_argument("--out", type=Path, required=True, help="PNG to write")
    p.add_argument("--title", default="CIFAR-10, integer SNN (T = 4) on a 2-core CPU")
    args = p.parse_args(argv)
    runs = {}
    for path in args.results:
        r = json.loads(path.read_text())
        runs[f"{path.stem} ({r.get('arch', '?')}, T={r.get('steps', '?')})"] = r
    plot(runs, args.out, args.title)
    print(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
