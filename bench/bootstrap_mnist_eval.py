"""lava-dl's ``bootstrap_mnist.net`` (its SLAYER bootstrap tutorial's MNIST network: an input
layer with a CUBA neuron, two CUBA dense layers and an ``Affine`` readout written without a
neuron group) evaluated with ``snn2loihi eval`` as a user would, on the 10,000 MNIST test images:

- the emulator on all images: each image's raw pixels (0-255) as the input neuron's bias for
  T = 16 steps (the file's ``simulation/tSample``), the class argmax of the readout's ``v`` after
  the last step (a current integrator never spikes, so its ``v`` is the score);
- Lava's simulator and the emulator on the first ``--lava-samples`` images (the global clock:
  one Lava run per image), every prediction, output spike and readout ``v`` compared.

    .venv/bin/python bench/bootstrap_mnist_eval.py --nets ../shared/data/lavadl-nets \\
        --mnist ../shared/data/mnist/mnist_test.npz

Writes bench/results/experiments/bootstrap_mnist_eval.json.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from harness import machine, write_result
from netx_mnist_eval import eval_run

RESULT = Path(__file__).parent / "results" / "experiments" / "bootstrap_mnist_eval.json"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--nets", type=Path, required=True, help="the lavadl-nets folder")
    p.add_argument("--mnist", type=Path, required=True, help="mnist_test.npz (x, y)")
    p.add_argument("--lava-samples", type=int, default=20)
    args = p.parse_args()
    base = [str(args.nets / "bootstrap_mnist.net"), "--data", str(args.mnist)]
    runs = {
        "emulator": base,
        "both": [*base, "--backend", "both", "--samples", str(args.lava_samples)],
    }
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, argv in runs.items():
            results[name] = eval_run(argv, Path(tmp) / f"{name}.json")
            print(name, json.dumps({k: results[name][k] for k in ("wall_s", "scores")}))
    write_result(RESULT, {"machine": machine(), "runs": results})
    print(f"wrote {RESULT}")


if __name__ == "__main__":
    main()
