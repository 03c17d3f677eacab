"""CLI subcommands of the deploy stage: ``parity``, ``run``, ``inspect``."""

from __future__ import annotations

import argparse
import json
import logging

from snn2loihi.app.arg_types import positive, seconds, shape
from snn2loihi.errors import InputDataError

log = logging.getLogger(__name__)


def _inputs(args, net, *, allow_random: bool, image_steps: int | None = None):
    """The input batch; ``image_steps``: T for images when ``--steps`` is not given."""
    from snn2loihi.deploy.inputs import load_input, random_spikes

    if args.input is not None:
        x = load_input(
            args.input, net.input_shape, args.steps, repeat=net.input_neuron is None,
            image_steps=image_steps,
        )  # fmt: skip
        if getattr(args, "samples", None) is not None:
            x = x[: args.samples]
        return x
    if not allow_random:
        raise InputDataError("--input is required")
    return random_spikes(args.samples or 4, args.steps or 16, net.input_shape, args.seed, args.rate)


def check_clock_options(args) -> None:
    """Refuse clock options that would be ignored: they change nothing, so a user would
    believe figures that were not made as asked."""
    record = getattr(args, "record", None)
    if args.reset_offset is not None and args.reset_interval is None:
        raise InputDataError(
            f"--reset-offset {args.reset_offset} needs --reset-interval N (without it no layer "
            "ever resets)"
        )
    if args.clock == "sample":
        for option, value in (("--reset-interval", args.reset_interval), ("--record", record)):
            if value is not None:
                raise InputDataError(
                    f"{option} needs the global clock; drop --clock sample (or use --clock global)"
                )
    out = getattr(args, "out", None)
    if record and out is not None and str(out).endswith(".npy"):
        raise InputDataError(
            f"--out {out}: --record writes an .npz archive (one array per record); give a name "
            "ending in .npz"
        )


def _clock(args, net, x):
    """The global clock (a GlobalClock) when the network or the options need it, else None:
    the per-sample convention of snn2loihi's own networks."""
    from snn2loihi.deploy.runner import choose_clock
    from snn2loihi.deploy.timeline import Timeline

    time_axis = x.ndim == 2 + len(net.input_shape)
    clock = choose_clock(
        net, time_axis, int(x.shape[1]) if time_axis else args.steps, choice=args.clock,
        timeline=Timeline(args.reset_interval, args.reset_offset or 0),
        record=tuple(getattr(args, "record", None) or ()), name=args.net, images=args.input,
    )  # fmt: skip
    if clock is not None:
        log.info("global clock: %s", clock.settings())
    return clock


def cmd_parity(args) -> int:
    """``parity``; ``--timeout`` bounds the whole command (inputs, emulator and Lava)."""
    from snn2loihi.app.signals import deadline

    with deadline(args.timeout, f"parity {args.net}:"):
        return _parity(args)


def _parity(args) -> int:
    import numpy as np

    from snn2loihi.atomic import atomic_path
    from snn2loihi.deploy.parity import run_parity
    from snn2loihi.deploy.runner import samples_per_chunk
    from snn2loihi.netx_io import read_network
    from snn2loihi.outputs import check_outputs

    check_clock_options(args)
    check_outputs({"--json": args.json}, {"net": args.net, "--input": args.input}, force=True)
    net = read_network(args.net, input_shape=args.input_shape)
    if args.input is None:  # one sample must fit before any random input is drawn
        samples_per_chunk(net, args.steps or 16, where=args.net)
    x = np.asarray(_inputs(args, net, allow_random=True))
    report = run_parity(
        args.net, x, clock=_clock(args, net, x), device=args.device,
        input_shape=args.input_shape, timeout=args.timeout,
    )  # fmt: skip
    print(report.table())
    if args.json:
        with atomic_path(args.json) as tmp:
            tmp.write_text(json.dumps(report.to_dict(), indent=2))
    return 0 if report.equal else 1


def cmd_run(args) -> int:
    import numpy as np

    from snn2loihi.deploy.evaluate import accuracy
    from snn2loihi.deploy.inputs import load_labels
    from snn2loihi.deploy.runner import Deadline, Runner
    from snn2loihi.netx_io import read_network
    from snn2loihi.outputs import check_outputs
    from snn2loihi.readout import DESCRIPTIONS, READOUT_V, prediction_rule

    check_clock_options(args)
    outputs = {"--out": args.out, "--predictions": args.predictions, "--readout-v": args.readout_v}
    check_outputs(
        outputs,
        {"net": args.net, "--input": args.input, "--labels": args.labels},
        force=args.force,
    )
    net = read_network(args.net, input_shape=args.input_shape)
    rule = prediction_rule(net)
    if args.readout_v is not None and rule != READOUT_V:
        raise InputDataError(
            f"--readout-v {args.readout_v}: {args.net} predicts by {DESCRIPTIONS[rule]}, its "
            "output layer is no readout read by v (record every state with --record u,v on "
            "the global clock)"
        )
    x = _inputs(args, net, allow_random=False, image_steps=net.steps)
    labels = None
    if args.labels is not None:
        labels = load_labels(args.labels, len(x), int(np.prod(net.output_shape)))
    clock = _clock(args, net, np.asarray(x))
    deadline = Deadline(args.timeout, args.net, "run")
    runner = Runner(net, args.net, args.backend, clock=clock, device=args.device, deadline=deadline, every_layer=False)  # fmt: skip
    res = runner.run(x)
    _write_run_outputs(args, res)
    shown = res.predictions.tolist()
    more = f" ... ({len(shown)} in all)" if len(shown) > 20 else ""
    what = f"records {', '.join(res.records)}; " if args.record else ""
    how = "" if clock is None else f" [global clock, drive '{clock.drive}']"
    print(
        f"wrote {args.out}: {what}output {tuple(res.spikes.shape)} (samples, steps, *shape), "
        f"{int(np.count_nonzero(res.spikes))} spikes{how}; predicted classes "
        f"({DESCRIPTIONS[res.rule]}): {shown[:20]}{more}"
    )
    if args.predictions is not None:
        p = res.predictions
        print(f"wrote {args.predictions}: predicted classes {p.shape} {p.dtype}")
    if args.readout_v is not None:
        v = res.v_last
        print(f"wrote {args.readout_v}: readout v after the last step {v.shape} {v.dtype}")
    if labels is not None:
        correct, fraction = accuracy(res.predictions, labels)
        print(f"accuracy {fraction:.2%} ({correct}/{len(labels)})")
    return 0


def _write_run_outputs(args, res) -> None:
    """``run``'s files, each atomically: the spikes (or with ``--record`` the records as .npz)
    to ``--out``, and the predictions and readout ``v`` where asked for."""
    import numpy as np

    from snn2loihi.atomic import atomic_path

    with atomic_path(args.out, overwrite=args.force) as tmp:
        with open(tmp, "wb") as fh:
            if args.record:
                np.savez(fh, **res.records)
            else:
                np.save(fh, res.spikes)
    kept = {args.predictions: res.predictions, args.readout_v: res.v_last}
    for path, array in kept.items():
        if path is not None:
            with atomic_path(path, overwrite=args.force) as tmp, open(tmp, "wb") as fh:
                np.save(fh, array)


def _neuron_cells(n) -> list[str]:
    """(neuron, iDecay, vDecay, vThMant) cells of a layer's neuron."""
    from snn2loihi.schema import CubaNeuron

    if n is None:
        return ["-", "", "", ""]
    if isinstance(n, CubaNeuron):
        name = "CUBA (netx default)" if n.netx_default else n.type_name
        return [name, str(n.i_decay), str(n.v_decay), str(n.vth_mant)]
    return ["SDNN sigma" if n.sigma_output else "SDNN", "", "", str(n.vth_mant)]


def _inspect_row(entry) -> tuple[str, ...]:
    import numpy as np

    from snn2loihi.schema import ConvLayer, DenseLayer, InputLayer, RecurrentDenseLayer

    ly = entry.record
    if ly is None:
        shape = "?" if entry.shape is None else "x".join(map(str, entry.shape))
        return (str(entry.index), entry.kind, shape, "", "", "", "-", "", "", "", "",
                f"NOT RUNNABLE: {entry.refused}")  # fmt: skip
    row = [
        str(entry.index),
        ly.kind,
        "x".join(map(str, ly.shape)),
        "",
        "",
        "",
        "-",
        "",
        "",
        "",
        "",
        "",
    ]
    if isinstance(ly, InputLayer):
        row[6:10] = _neuron_cells(ly.neuron)
        if ly.neuron is not None:
            row[11] = (
                "input neuron: driven through its bias or skipped"
                if ly.neuron.kind == "CUBA"
                else "input neuron (Delta): skipped, input into layer 1"
            )
    if isinstance(ly, ConvLayer | DenseLayer):
        row[3] = "x".join(map(str, ly.weight.shape))
        row[4] = f"[{int(ly.weight.min())}, {int(ly.weight.max())}]"
        row[5] = "-" if ly.bias is None else f"[{int(np.min(ly.bias))}, {int(np.max(ly.bias))}]"
        row[6:10] = _neuron_cells(ly.neuron)
    if isinstance(ly, ConvLayer):
        row[10] = f"s{ly.stride} p{ly.padding} d{ly.dilation} g{ly.groups}"
        row[11] = "; ".join(
            f"shortcut from layer {sc.source}: {'x'.join(map(str, sc.weight.shape))} "
            f"[{int(sc.weight.min())}, {int(sc.weight.max())}] s{sc.stride} delay {sc.delay}"
            for sc in ly.shortcuts
        )
    if isinstance(ly, DenseLayer) and ly.delay is not None:
        d = ly.delay_matrix()
        row[10] = f"delay {int(d.min())}..{int(d.max())}"
    if isinstance(ly, RecurrentDenseLayer):
        row[11] = f"recurrent, weight_rec [{int(ly.weight_rec.min())}, {int(ly.weight_rec.max())}]"
    return tuple(row)


def cmd_inspect(args) -> int:
    """Every layer, runnable or not; the network summary when all layers can run."""
    from snn2loihi.netx_io import describe_layers, network_of, read_steps
    from snn2loihi.readout import DESCRIPTIONS, prediction_rule

    entries = describe_layers(args.net)
    head = ("layer", "type", "shape", "weight", "w range", "bias range", "neuron", "iDecay",
            "vDecay", "vThMant", "synapse", "note")  # fmt: skip
    rows = [head] + [_inspect_row(e) for e in entries]
    widths = [max(len(r[c]) for r in rows) for c in range(len(head))]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    refused = [e for e in entries if e.record is None]
    if refused:
        print(
            f"{len(refused)} of {len(entries)} layers cannot run on the emulator (marked); "
            "run and parity refuse this file"
        )
        return 0
    layers = [e.record for e in entries]
    del entries  # the records stay in layers: the file's arrays are read once
    net = network_of(args.net, layers, input_shape=args.input_shape, steps=read_steps(args.net))
    clock = "per-sample or global clock" if net.plain else "global clock only (--clock global)"
    if net.residual:
        clock = "per-sample clock only (residual: the superset of NetX, format 2)"
    rule = prediction_rule(net)
    steps = "not recorded" if net.steps is None else str(net.steps)
    print(
        f"input {'x'.join(map(str, net.input_shape))}, {net.num_synaptic_layers} synapse layers "
        f"(pipeline delay {net.num_synaptic_layers} steps), output "
        f"{'x'.join(map(str, net.output_shape))}; runs on the {clock}; T {steps}\n"
        f"prediction: {DESCRIPTIONS[rule]} (rule '{rule}', first index on ties), from the "
        "output layer's neuron"
    )
    return 0


def record_names(text: str) -> tuple[str, ...]:
    """``s,u,v``: the records of ``run --record`` (s, u, v, sigma, act, residue)."""
    from snn2loihi.deploy.timeline import RECORDABLE

    names = tuple(n.strip() for n in text.split(",") if n.strip())
    bad = [n for n in names if n not in RECORDABLE]
    if not names or bad:
        raise argparse.ArgumentTypeError(
            f"'{text}': choose from {', '.join(RECORDABLE)} (comma-separated)"
        )
    return names


def add_clock_options(p: argparse.ArgumentParser) -> None:
    from snn2loihi.app.arg_types import positive

    p.add_argument(
        "--clock",
        choices=("auto", "sample", "global"),
        default="auto",
        help="sample: every layer starts each sample from rest, pipelined (snn2loihi's own "
        "networks); global: each sample its own run on Lava's clock, as netx.hdf5.Network "
        "builds it (input neurons, SDNN, delays, recurrence, resets). auto: sample where it "
        "applies",
    )
    p.add_argument(
        "--reset-interval",
        type=positive,
        default=None,
        metavar="N",
        help="netx's reset_interval (global clock): reset u and v every N steps (default: none)",
    )
    p.add_argument(
        "--reset-offset",
        type=int,
        default=None,
        metavar="K",
        help="netx's reset_offset (with --reset-interval): layer j resets when step %% N == "
        "(K + 1 + j) %% N (default 0)",
    )


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
    _add_parity(sub)
    _add_run(sub)
    _add_inspect(sub)


def _add_parity(sub) -> None:
    p = sub.add_parser(
        "parity",
        help="compare Lava and the emulator spike for spike",
        formatter_class=argparse.RawDescriptionHelpFormatter,
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
    p.add_argument(
        "--timeout", type=seconds, default=None, help="seconds allowed for the whole command"
    )
    p.add_argument("--json", help="write the figures as JSON here")
    add_clock_options(p)
    p.set_defaults(func=cmd_parity)


def _add_run(sub) -> None:
    p = sub.add_parser(
        "run",
        help="run a .net on Lava or the emulator",
        formatter_class=argparse.RawDescriptionHelpFormatter,
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
        "pixels 0..255 shown for --steps steps (default: the T the .net records)",
    )
    p.add_argument(
        "--steps",
        type=positive,
        default=None,
        help="time steps: repeats images over T steps (default: the T the .net records), or "
        "keeps the first T steps of the input",
    )
    p.add_argument("--labels", help="class labels .npy (samples,): also print the accuracy")
    p.add_argument("--out", required=True, help="output .npy of spikes")
    p.add_argument(
        "--predictions",
        default=None,
        metavar="FILE.npy",
        help="also write every sample's predicted class (samples,) int64",
    )
    p.add_argument(
        "--readout-v",
        default=None,
        metavar="FILE.npy",
        help="also write the readout's v after each sample's last step (samples, *shape) "
        "int32 (networks read by v: snn2loihi's exports, convert's I/LI/CubaLI readouts)",
    )
    p.add_argument("--force", action="store_true", help="overwrite existing outputs")
    p.add_argument("--device", default="cpu", help="emulator device: cpu or cuda")
    p.add_argument("--timeout", type=seconds, default=None, help="seconds allowed for a Lava run")
    p.add_argument(
        "--record",
        type=record_names,
        default=None,
        metavar="s,u,v",
        help="write every layer's records to --out as .npz (global clock): keys s{i}, u{i}, "
        "v{i} (CUBA), sigma{i}, act{i}, residue{i} (SDNN) with i the layer's index in the file, "
        "arrays (samples, steps, *shape) in CHW order",
    )
    add_clock_options(p)
    p.set_defaults(func=cmd_run)


def _add_inspect(sub) -> None:
    p = sub.add_parser(
        "inspect",
        help="show layers, shapes, neuron parameters and weight ranges",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Validate a .net file and print its layers.\n\nexample:\n  snn2loihi inspect model.net",
    )
    _common(p)
    p.set_defaults(func=cmd_inspect)
