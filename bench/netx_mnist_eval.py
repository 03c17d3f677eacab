"""lava-dl's netx_mnist.net on MNIST with its tutorial's rate coding, through ``snn2loihi eval``.

The network of lava-dl's NetX MNIST tutorial (tutorials/lava/lib/dl/netx/mnist, 784-128-64-10,
leaky CUBA, spike-count readout), fed as the tutorial feeds it: 20 steps per image, the
tutorial's integrate-and-fire encoder (``--encoding rate``, deploy/encoding.py). Runs, each one
``snn2loihi eval`` command as a user types it (wall time of the process):

- the emulator on the 10,000 test images, per-sample clock (netx's ``reset_interval=20,
  reset_offset=1`` on one stream of images: the tutorial's own run) and global clock (each
  image a fresh 20-step run, the tutorial's resets inside it);
- Lava's CPU simulator and the emulator (``--backend both``) on the first ``--lava-samples``
  images (per-sample clock) and ``--lava-global-samples`` images (global clock: one Lava run
  per image).

eval counts each image's output spikes over its own 20 steps after the pipeline's 3-step delay.
The tutorial's ``OutSpkToCls`` counts the 20 Lava steps aligned with the input instead, so its
count of image k holds the last 3 output steps of image k - 1; that figure is derived here from
the per-sample clock's output stream (emulator; its spikes equal Lava's) shifted by the delay.

    .venv/bin/python bench/netx_mnist_eval.py --nets ../shared/data/lavadl-nets \\
        --mnist ../shared/data/mnist/mnist_test.npz
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from harness import machine, write_result

RESULT = Path(__file__).parent / "results" / "experiments" / "netx_mnist_eval.json"
STEPS = 20


def eval_run(argv: list[str], json_path: Path) -> dict:
    """Run ``snn2loihi eval`` with ``argv``; its JSON, command line and wall seconds."""
    cmd = ["snn2loihi", "eval", *argv, "--no-progress", "--json", str(json_path)]
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "snn2loihi", *cmd[1:]], check=True)
    wall = time.perf_counter() - t0
    out = json.loads(json_path.read_text())
    for score in out["scores"].values():
        score.pop("predictions", None)
    return {"command": shlex.join(cmd[:-2]), "wall_s": round(wall, 1), **out}


def tutorial_window_accuracy(net_path: Path, mnist: Path) -> dict:
    """Accuracy with the tutorial's aligned counting window, from the per-sample clock's
    output stream on the emulator (see the module docstring)."""
    from snn2loihi.deploy.encoding import RateEncoded
    from snn2loihi.deploy.runner import Runner
    from snn2loihi.netx_io import read_network
    from snn2loihi.readout import input_window_predictions

    data = np.load(mnist)
    images, labels = data["x"].reshape(len(data["x"]), 784), data["y"].astype(np.int64)
    net = read_network(net_path)
    res = Runner(net, net_path, "emulator").run(RateEncoded(images, STEPS), None, chunk=1000)
    predictions = input_window_predictions(res.spikes, net.num_synaptic_layers)
    same = float((predictions == res.predictions).mean())
    return {
        "samples": len(images),
        "accuracy": float((predictions == labels).mean()),
        "same_prediction_as_eval": same,
        "eval_accuracy": float((res.predictions == labels).mean()),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--nets", type=Path, required=True, help="the lavadl-nets folder")
    p.add_argument("--mnist", type=Path, required=True, help="mnist_test.npz (x, y)")
    p.add_argument("--lava-samples", type=int, default=200)
    p.add_argument("--lava-global-samples", type=int, default=10)
    p.add_argument("--skip-lava", action="store_true")
    args = p.parse_args()
    net = args.nets / "netx_mnist.net"
    base = [str(net), "--data", str(args.mnist), "--steps", str(STEPS), "--encoding", "rate"]
    tutorial_resets = ["--clock", "global", "--reset-interval", "20", "--reset-offset", "1"]
    runs = {
        "emulator_per_sample_clock": base,
        "emulator_global_clock": [*base, *tutorial_resets],
    }
    if not args.skip_lava:
        both = ["--backend", "both"]
        runs["both_per_sample_clock"] = [*base, *both, "--samples", str(args.lava_samples)]
        runs["both_global_clock"] = [
            *base, *both, *tutorial_resets, "--samples", str(args.lava_global_samples),
        ]  # fmt: skip
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, argv in runs.items():
            results[name] = eval_run(argv, Path(tmp) / f"{name}.json")
            print(name, json.dumps({k: results[name][k] for k in ("wall_s", "scores")}))
    results["tutorial_counting_window"] = tutorial_window_accuracy(net, args.mnist)
    write_result(RESULT, {"machine": machine(), "steps": STEPS, "runs": results})
    print(f"wrote {RESULT}")


if __name__ == "__main__":
    main()
