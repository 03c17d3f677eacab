"""Grid choices for a converted NIR network whose hidden layer lands on a coarse threshold grid
(issue #32): the recurrent CubaLIF network with a leaky spiking output
(:func:`snn2loihi.testing.nirgen.leaky_output_graph`, seeds 0-2), T = 256, 200 random spike
streams, converted with ``--input-scale 1`` and each of ``--weight-bits 8/9`` x graded /
``--spike-input``. Figure: the share of streams on which the emulator predicts (by output spike
count) what the float reference of the graph as written predicts, and each layer's vThMant.

    .venv/bin/python bench/nir_grid_choices.py

Writes bench/results/experiments/nir_grid_choices.json.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import nir
from harness import machine, write_result

from snn2loihi.export.nir_convert import convert_nir, emulator_result
from snn2loihi.export.nir_lower import lower
from snn2loihi.export.nir_read import read_nir
from snn2loihi.export.nir_reference import reference_predictions
from snn2loihi.netx_io import read_network
from snn2loihi.testing.nirgen import DT, leaky_output_graph, spike_streams

RESULT = Path(__file__).parent / "results" / "experiments" / "nir_grid_choices.json"
CHOICES = ((8, False), (9, False), (8, True), (9, True))  # (weight bits, spike input)


def one_seed(seed: int, steps: int, samples: int, tmp: Path) -> list[dict]:
    """Every grid choice's agreement with the float graph for the graph of ``seed``."""
    path = tmp / f"g{seed}.nir"
    nir.write(path, leaky_output_graph(seed))
    x = spike_streams(samples, steps, 12, seed)
    graph = lower(read_nir(path), input_scale=1.0, dt=DT).reference
    ref = reference_predictions(graph, x, steps, "count", stream=True).numpy()
    rows = []
    for bits, spikes in CHOICES:
        out = tmp / f"g{seed}_{bits}_{spikes}.net"
        t0 = time.perf_counter()
        report = convert_nir(
            path, out, steps=steps, input_scale=1.0, weight_bits=bits, spike_input=spikes
        )
        res = emulator_result(out, x, steps, stream=True)[0]
        rows.append(
            {
                "seed": seed,
                "weight_bits": bits,
                "spike_input": spikes,
                "agreement": float((res.predictions == ref).mean()),
                "vth_mant": [ly.neuron.vth_mant for _, ly in read_network(out).synaptic_layers],
                "coarse_layers": [c["layer"] for c in report["coarse_grid"]],
                "headroom_warnings": report["warnings"],
                "wall_s": round(time.perf_counter() - t0, 1),
            }
        )
        print({k: rows[-1][k] for k in ("seed", "weight_bits", "spike_input", "agreement")})
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=256)
    p.add_argument("--samples", type=int, default=200)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        rows = [r for s in args.seeds for r in one_seed(s, args.steps, args.samples, Path(tmp))]
    write_result(
        RESULT,
        {"machine": machine(), "steps": args.steps, "samples": args.samples, "runs": rows},
    )
    print(f"wrote {RESULT}")


if __name__ == "__main__":
    main()
