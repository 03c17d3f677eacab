"""CLI subcommands of the deploy stage: ``parity``, ``run``, ``inspect``."""

from __future__ import annotations

import argparse
import json
import logging

from snn2loihi.app.arg_types import positive, shape
from snn2loihi.errors import InputDataError

log = logging.getLogger(__name__)


def _inputs(args, net, *, allow_random: bool):
    from snn2loihi.deploy.inputs import load_input, random_spikes

    if args.input is not None:
        x = load_input(args.input, net.input_shape, args.steps)
        if getattr(args, "samples", None) is not None:
            x = x[: args.samples]
        return x
    if not allow_random:
        raise InputDataError("--input is required")
    return random_spikes(args.samples or 4, args.steps or 16, net.input_shape, args.seed, args.rate)


def cmd_parity(args) -> int:
    import numpy as np

    from snn2loihi.atomic import atomic_path
    from snn2loihi.deploy.parity import run_parity
    from snn2loihi.netx_io import read_network
    from snn2loihi.outputs import check_outputs

    check_outputs({"--json": args.json}, {"net": args.net, "--input": args.input}, force=True)
    net = read_network(args.net, input_shape=args.input_shape)
    x = _inputs(args, net, allow_random=True)
    report = run_parity(
        args.net,
        np.asarray(x),
        device=args.device,
        input_shape=args.input_shape,
        timeout=args.timeout,
    )
    print(report.table())
    if args.json:
        with atomic_path(args.json) as tmp:
            tmp.write_text(json.dumps(report.to_dict(), indent=2))
    return 0 if report.equal else 1


def cmd_run(args) -> int:
    import numpy as np

    from snn2loihi.atomic import atomic_path
    from snn2loihi.deploy.backends import run_backend
    from snn2loihi.deploy.inputs import load_labels
    from snn2loihi.netx_io import read_network
    from snn2loihi.outputs import check_outputs

    check_outputs(
        {"--out": args.out},
        {"net": args.net, "--input": args.input, "--labels": args.labels},
        force=args.force,
    )
    net = read_network(args.net, input_shape=args.input_shape)
    x = _inputs(args, net, allow_random=False)
    labels = None
    if args.labels is not None:
        labels = load_labels(args.labels, len(x), int(np.prod(net.output_shape)))
    res = run_backend(net, args.net, x, args.backend, device=args.device, timeout=args.timeout)
    with atomic_path(args.out, overwrite=args.force) as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, res.spikes)
    rule = "argmax of the readout's v >> 6" if res.rule == "readout_v" else "max spike count"
    shown = res.predictions.tolist()
    more = f" ... ({len(shown)} in all)" if len(shown) > 20 else ""
    print(
        f"wrote {args.out}: output spikes {tuple(res.spikes.shape)} (samples, steps, *shape), "
        f"{int(res.spikes.sum())} spikes; predicted classes ({rule}): {shown[:20]}{more}"
    )
    if labels is not None:
        correct = int((res.predictions == labels).sum())
        print(f"accuracy {correct / len(labels):.2%} ({correct}/{len(labels)})")
    return 0


def cmd_inspect(args) -> int:
    import numpy as np

    from snn2loihi.netx_io import read_network
    from snn2loihi.schema import ConvLayer, DenseLayer

    net = read_network(args.net, input_shape=args.input_shape)
    rows = [
        (
            "layer",
            "type",
            "shape",
            "weight",
            "w range",
            "bias range",
            "iDecay",
            "vDecay",
            "vThMant",
            "conv",
        )
    ]
    for i, ly in enumerate(net.layers):
        row = [str(i), ly.kind, "x".join(map(str, ly.shape)), "", "", "", "", "", "", ""]
        if isinstance(ly, ConvLayer | DenseLayer):
            row[3] = "x".join(map(str, ly.weight.shape))
            row[4] = f"[{int(ly.weight.min())}, {int(ly.weight.max())}]"
            row[5] = "-" if ly.bias is None else f"[{int(np.min(ly.bias))}, {int(np.max(ly.bias))}]"
            row[6:9] = [str(ly.neuron.i_decay), str(ly.neuron.v_decay), str(ly.neuron.vth_mant)]
        if isinstance(ly, ConvLayer):
            row[9] = f"s{ly.stride} p{ly.padding} d{ly.dilation} g{ly.groups}"
        rows.append(tuple(row))
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    print(
        f"input {'x'.join(map(str, net.input_shape))}, {net.num_synaptic_layers} synapse layers "
        f"(pipeline delay {net.num_synaptic_layers} steps), output {'x'.join(map(str, net.output_shape))}"
    )
    return 0


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("net", help="NetX HDF5 file (.net)")
    p.add_argument(
        "--input-shape",
        type=shape,
        default=None,
        metavar="C,H,W",
        help="input shape for files without an input layer (slayer exports)",
    )


def add_commands(sub) -> None:
    """Register ``parity``, ``run`` and ``inspect`` on the CLI's subparsers."""
    fmt = argparse.RawDescriptionHelpFormatter
    p = sub.add_parser(
        "parity",
        help="compare Lava and the emulator spike for spike",
        formatter_class=fmt,
        description="Run the same input through the Lava simulator and the bit-exact emulator and "
        "compare every layer's spikes. Exit 0 only if all are equal, 1 on any mismatch.\n\n"
        "example:\n  snn2loihi parity model.net --samples 8 --steps 16 --seed 0 --json parity.json",
    )
    _common(p)
    p.add_argument(
        "--input", help="input .npy (samples, steps, *input_shape), 0/1 spikes or 0..255"
    )
    p.add_argument(
        "--samples", type=positive, default=None, help="samples (default 4 for random input)"
    )
    p.add_argument(
        "--steps", type=positive, default=None, help="time steps per sample (default 16)"
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the random input spikes")
    p.add_argument("--rate", type=float, default=0.25, help="spike probability of the random input")
    p.add_argument("--device", default="cpu", help="emulator device: cpu or cuda")
    p.add_argument("--timeout", type=float, default=None, help="seconds allowed for the Lava run")
    p.add_argument("--json", help="write the figures as JSON here")
    p.set_defaults(func=cmd_parity)

    p = sub.add_parser(
        "run",
        help="run a .net on Lava or the emulator",
        formatter_class=fmt,
        description="Run input through one back end, save the output spikes (samples, steps, "
        "*shape) and print the predicted classes by the network's rule: argmax of the readout's "
        "v >> 6 after the last step when the output layer never spikes (snn2loihi's exports), "
        "else the most output spikes (lava-dl's networks).\n\n"
        "examples:\n  snn2loihi run model.net --backend emulator --input x.npy --steps 8 --out spikes.npy\n"
        "  snn2loihi run model.net --input images.npy --labels labels.npy --steps 4 --out s.npy",
    )
    _common(p)
    p.add_argument("--backend", choices=("lava", "loihi2", "emulator"), default="emulator")
    p.add_argument(
        "--input",
        required=True,
        help="input .npy: (samples, steps, *input_shape), or images (samples, *input_shape) of "
        "pixels 0..255 shown for --steps steps",
    )
    p.add_argument(
        "--steps",
        type=positive,
        default=None,
        help="time steps: repeats images over T steps, or keeps the first T steps of the input",
    )
    p.add_argument("--labels", help="class labels .npy (samples,): also print the accuracy")
    p.add_argument("--out", required=True, help="output .npy of spikes")
    p.add_argument("--force", action="store_true", help="overwrite an existing --out")
    p.add_argument("--device", default="cpu", help="emulator device: cpu or cuda")
    p.add_argument("--timeout", type=float, default=None, help="seconds allowed for a Lava run")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser(
        "inspect",
        help="show layers, shapes, neuron parameters and weight ranges",
        formatter_class=fmt,
        description="Validate a .net file and print its layers.\n\nexample:\n  snn2loihi inspect model.net",
    )
    _common(p)
    p.set_defaults(func=cmd_inspect)
