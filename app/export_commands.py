"""CLI subcommand of the export stage: ``snn2loihi export``."""

from __future__ import annotations

import argparse
import logging

from snn2loihi.app.arg_types import positive

log = logging.getLogger(__name__)


def cmd_export(args) -> int:
    from snn2loihi.errors import InputDataError
    from snn2loihi.export.exporter import export_checkpoint
    from snn2loihi.export.report import report_paths

    if args.out is None and args.onnx is None and args.nir is None:
        raise InputDataError(
            "nothing to write: give --out model.net, --onnx model.onnx and/or --nir model.nir"
        )
    report = export_checkpoint(
        args.checkpoint,
        args.out,
        onnx=args.onnx,
        nir=args.nir,
        force=args.force,
        split=args.data_split,
        samples=args.samples,
        data_file=args.data,
        accuracy=not args.no_accuracy,
    )
    if args.onnx:
        print(f"wrote {args.onnx} (ONNX, ANN branch)")
    if args.nir:
        print(f"wrote {args.nir} (NIR graph of the deployed integer network)")
    if args.out:
        json_path, md_path = report_paths(args.out)
        print(f"wrote {args.out}, {json_path}, {md_path}")
        for w in report["warnings"]:
            print(f"warning: {w}")
        acc = report["accuracy"]
        if acc is not None:
            print(
                f"{acc['split']} accuracy ({acc['samples']} samples): emulator "
                f"{acc['emulator_acc']:.4f}, integer SNN {acc['integer_snn_acc']:.4f}, "
                f"{acc['prediction_mismatches']} prediction mismatches"
            )
            if not acc["equal"]:
                return 1
    return 0


def _floats(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"'{text}' is not a comma-separated list of numbers"
        ) from None


def _is_nir(path: str) -> bool:
    """A NIR file: ``.nir`` suffix or an HDF5 signature (ONNX files are protobuf)."""
    if path.lower().endswith(".nir"):
        return True
    try:
        with open(path, "rb") as fh:
            return fh.read(8) == b"\x89HDF\r\n\x1a\n"
    except OSError:
        return False


def _print_written(out, report: dict) -> None:
    from snn2loihi.export.report import report_paths

    json_path, md_path = report_paths(out)
    print(f"wrote {out}, {json_path}, {md_path}")
    for w in report["warnings"]:
        print(f"warning: {w}")


def cmd_convert_nir(args) -> int:
    from snn2loihi.export.nir_convert import convert_nir

    report = convert_nir(
        args.onnx,
        args.out,
        calib=args.calib,
        steps=args.steps,
        weight_bits=args.weight_bits,
        dt=args.dt,
        dialect=args.dialect,
        input_scale=args.input_scale,
        readout=args.readout,
        spike_input=args.spike_input,
        force=args.force,
    )
    for c in report["changes"]:
        print(f"changed: {c}")
    _print_written(args.out, report)
    print(f"prediction: {_rule_words(report)}")
    clock = report["global_clock"]
    if clock is not None:
        print(
            f"recurrent: runs on Lava's global clock only; each image for {clock['steps']} "
            f"steps: parity {args.out} --clock global --reset-interval {clock['reset_interval']} "
            f"--reset-offset {clock['reset_offset']} --input x.npy (samples, {clock['steps']}, ...)"
        )
    acc = report["accuracy"]
    if acc is not None:
        a = acc["agreement"]
        print(
            f"calibration accuracy ({acc['samples']} samples, {acc['input']}): NIR float "
            f"reference {acc['nir_reference_acc']:.4f}, Loihi form (float) "
            f"{acc['loihi_form_float_acc']:.4f}, emulator {acc['emulator_acc']:.4f}; same "
            f"prediction: reference/Loihi form {a['nir_reference_vs_loihi_form']:.4f}, "
            f"reference/emulator {a['nir_reference_vs_emulator']:.4f}, Loihi form/emulator "
            f"{a['loihi_form_vs_emulator']:.4f}"
        )
    return 0


def _rule_words(report: dict) -> str:
    from snn2loihi.readout import DESCRIPTIONS

    rule = report["prediction"]
    return f"{DESCRIPTIONS[rule]} (rule '{rule}', first index on ties; inspect shows it)"


def cmd_convert(args) -> int:
    from snn2loihi.errors import InputDataError
    from snn2loihi.export.convert import convert_onnx

    if _is_nir(args.onnx):
        return cmd_convert_nir(args)
    if args.calib is None:
        raise InputDataError("converting ONNX needs --calib calib.npz (threshold balancing)")
    if args.spike_input:
        raise InputDataError("--spike-input is for NIR graphs; an ONNX network takes images")

    report = convert_onnx(
        args.onnx,
        args.calib,
        args.out,
        steps=args.steps or 16,
        percentile=args.percentile,
        weight_bits=args.weight_bits,
        mean=args.mean,
        std=args.std,
        force=args.force,
    )
    _print_written(args.out, report)
    acc = report["accuracy"]
    print(
        f"calibration accuracy ({acc['samples']} samples): ONNX ANN {acc['ann_acc']:.4f}, "
        f"emulator {acc['emulator_acc']:.4f}, integer SNN {acc['integer_snn_acc']:.4f}"
    )
    return 0 if acc["equal"] else 1


def add_commands(sub) -> None:
    """Register ``export`` and ``convert`` on the CLI's subparsers."""
    _add_export(sub)
    _add_convert(sub)


def _add_export(sub) -> None:
    p = sub.add_parser(
        "export",
        help="export a trained checkpoint to a NetX .net (and/or ONNX) with a report",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Rebuild a trained checkpoint, write its integer SNN as a NetX HDF5 file "
        "(exactly training's quantization), check 24-bit headroom, and report per-layer figures "
        "and the emulator's accuracy of the written file next to the integer SNN branch's. "
        "Exit 1 if the two disagree on any prediction.\n\n"
        "example:\n  snn2loihi export runs/train/best.pt --out model.net --samples 500\n"
        "  snn2loihi export runs/train/best.pt --onnx model.onnx",
    )
    p.add_argument("checkpoint", help="checkpoint file (.pt) or run folder (uses last.pt)")
    p.add_argument("--out", "-o", help="NetX file to write (.net); reports go beside it")
    p.add_argument("--onnx", help="also write the ANN branch as ONNX (opset 17)")
    p.add_argument(
        "--nir", help="also write the deployed integer network as a NIR graph (docs/nir.md)"
    )
    p.add_argument("--force", "-f", action="store_true", help="overwrite existing outputs")
    p.add_argument(
        "--split",
        dest="data_split",
        choices=("val", "test", "train"),
        default="val",
        help="split for the accuracy check: training's validation, test or training split",
    )
    # the old spelling (eval names its split --split), kept out of --help
    p.add_argument(
        "--data-split",
        dest="data_split",
        choices=("val", "test", "train"),
        default=argparse.SUPPRESS,
        help=argparse.SUPPRESS,
    )
    p.add_argument("--samples", type=positive, default=None, help="use the first N samples")
    p.add_argument(
        "--data", help=".npz with x (uint8 NHWC/NHW) and y, instead of the config's data"
    )
    p.add_argument("--no-accuracy", action="store_true", help="skip the accuracy check")
    p.set_defaults(func=cmd_export)


def _add_convert(sub) -> None:
    p = sub.add_parser(
        "convert",
        help="convert an ONNX ReLU network or a NIR graph to a NetX .net",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Convert a plain ONNX conv/dense ReLU network (square Conv of any size and "
        "stride, symmetric pads; Gemm/MatMul, Relu, Clip, BatchNormalization, AveragePool and "
        "GlobalAveragePool folded into the next synapse, Flatten) to a rate-coded IF SNN: thresholds "
        "from activation percentiles on calibration images, quantized on training's grid. "
        "Unsupported ops are refused naming op and node.\n\n"
        "A NIR graph (.nir: snnTorch, Norse, ... or snn2loihi export --nir) is read as IF/LIF/"
        "CubaLIF neurons after Affine/Linear/Conv2d (Scale and Sum/AvgPool2d folded; I/LI/CubaLI "
        "readout), put on the same integer grid (a graph of Loihi integers is kept exactly) and "
        "reported with what was changed and, with --calib, the float NIR reference, the float "
        "Loihi form and the emulator side by side (accuracy and per-sample prediction "
        "agreement) on images or on streams: an .npz whose x is (N, T, *input_shape), spikes "
        "or integers 0..255, frame t at step t (docs/nir.md).\n\n"
        "example:\n  snn2loihi convert model.onnx --calib calib.npz --out model.net --steps 16\n"
        "  snn2loihi convert model.nir --calib calib.npz --out model.net --steps 16\n"
        "  snn2loihi convert events.nir --calib streams.npz --out model.net --input-scale 1",
    )
    p.add_argument(
        "onnx",
        metavar="model",
        help="ONNX model (input = normalized image NCHW) or NIR graph (.nir, input pixel/255)",
    )
    p.add_argument(
        "--calib",
        help=".npz with x (uint8 NHWC/NHW images, or NIR: streams (N, T, *input_shape)) and y "
        "labels (required for ONNX; NIR: accuracy)",
    )
    p.add_argument("--out", "-o", required=True, help="NetX file to write (.net)")
    p.add_argument(
        "--steps",
        "-T",
        type=positive,
        default=None,
        help="time steps T (default 16; NIR: the graph's snn2loihi_steps if written by export, "
        "else the T of --calib streams)",
    )
    p.add_argument("--percentile", type=float, default=99.9, help="activation percentile")
    p.add_argument("--weight-bits", type=int, default=8, choices=range(2, 10), metavar="2..9")
    p.add_argument("--mean", type=_floats, help="per-channel mean of pixel/255 the ONNX expects")
    p.add_argument("--std", type=_floats, help="per-channel std of pixel/255 the ONNX expects")
    _add_nir_options(p)
    p.add_argument("--force", "-f", action="store_true", help="overwrite an existing output")
    p.set_defaults(func=cmd_convert)


def _add_nir_options(p) -> None:
    """convert's options for a NIR graph: discretization, input scale, readout rule."""
    p.add_argument(
        "--dialect",
        choices=("euler", "norse"),
        default="euler",
        help="NIR: how neurons are discretized: forward Euler (snnTorch, Sinabs, snn2loihi) or "
        "Norse's current jump I += w_in x",
    )
    p.add_argument(
        "--dt",
        type=float,
        default=None,
        help="NIR: time step of the discretization (default 1e-4 (snnTorch); 1e-3 for norse)",
    )
    p.add_argument(
        "--input-scale",
        type=float,
        default=None,
        help="NIR: the graph's input is pixel * this (default 1/255)",
    )
    p.add_argument(
        "--readout",
        choices=("auto", "count", "v"),
        default="auto",
        help="NIR: how the network predicts. auto: a spiking last neuron node keeps spiking "
        "and predicts by its spike count over T steps, a non-spiking one (I, LI, CubaLI) by "
        "its v after the last step; count: insist on spike counts; v: read a spiking last "
        "layer by its v (threshold and reset dropped: for a network trained on its membrane)",
    )
    p.add_argument(
        "--spike-input",
        action="store_true",
        help="NIR: the network's inputs are spikes (0 or 1 per step), not graded values up to "
        "255: the first layer gets a finer grid (larger graded inputs could then wrap u)",
    )
