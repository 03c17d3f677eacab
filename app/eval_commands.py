"""``snn2loihi eval``: the accuracy of a ``.net`` (or of a checkpoint, exported in memory first)
on labelled images, on the emulator, on Lava or both, with their parity."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
from pathlib import Path

import numpy as np

from snn2loihi.app.arg_types import positive, seconds, shape
from snn2loihi.errors import InputDataError

log = logging.getLogger(__name__)

SPLITS = ("test", "val", "train")
FOLDER_DATASETS = ("mnist", "cifar10", "cifar100", "imagefolder")  # read from --data as root
INPUT_WORDS = {
    "graded": "pixels as graded input at every step",
    "rate": "rate coded (lava-dl NetX MNIST tutorial's IF encoder, threshold 1 on pixel/255)",
    "stream": "the file's streams, frame t at step t",
}


def deployed(source: Path, input_shape=None) -> tuple:
    """``(net, path, steps, data config)`` of a ``.net`` file, or of a checkpoint exported in
    memory: its path is None (Lava gets the network written into each run's own folder, which
    the Lava child removes even if the command is killed, so no temporary file outlives it)."""
    from snn2loihi.netx_io import read_network

    if source.suffix == ".net":
        net = read_network(source, input_shape=input_shape)
        return net, source, net.steps, None
    from snn2loihi.export.loader import load_model
    from snn2loihi.export.pipeline import deployable_network
    from snn2loihi.train.checkpoint import checkpoint_config

    model, state = load_model(source)
    config = checkpoint_config(state, f"checkpoint '{source}'")
    net = deployable_network(model, config.train.weight_bits, str(source))
    return net, None, model.steps, config.data


def load_images(args, data_cfg) -> tuple[np.ndarray, np.ndarray, str]:
    """``(images (N, C, H, W) uint8, labels (N,), description)`` as ``train`` reads them."""
    from snn2loihi.train.config import Config
    from snn2loihi.train.data import load_datasets, load_npz_images

    check_data_option(args.data, args.dataset, None if data_cfg is None else data_cfg.dataset)
    if args.data is not None and str(args.data).endswith(".npz") and args.dataset is None:
        data = load_npz_images(str(args.data), "--data")
        what = f"{args.data} (all images)"
    else:
        if args.data is None and args.dataset is None and data_cfg is None:
            raise InputDataError("a .net file needs --data (a .npz, or a folder with --dataset)")
        values = {} if data_cfg is None else dataclasses.asdict(data_cfg)
        if args.dataset is not None:
            values.update(dataset=args.dataset)
        if args.data is not None:
            key = "train" if values.get("dataset") == "npz" else "root"
            values.update({key: str(args.data)})
        cfg = Config.from_dict({"data": values}, "eval data").data
        data = getattr(load_datasets(cfg), args.split)
        what = f"{args.split} split of {cfg.dataset}"
    x, y = data.x.numpy(), data.y.numpy()
    if args.samples is not None:
        x, y = x[: args.samples], y[: args.samples]
    if len(x) == 0:
        raise InputDataError(f"{what}: holds no images")
    return x, y.astype(np.int64), what


def check_data_option(data: str | None, dataset: str | None, configured: str | None) -> None:
    """Refuse an explicit ``--data`` that the data set it would be read as cannot read, so
    that it is never silently replaced by a default (the checkpoint's or the built-in digits).

    ``dataset``: ``--dataset``; ``configured``: the checkpoint's ``data.dataset`` (None for a
    ``.net``)."""
    if data is None:
        return
    path = Path(data)
    name = dataset or configured
    if name == "npz" or (dataset is None and path.suffix == ".npz"):
        if not path.is_file():
            raise InputDataError(f"--data {data}: no such .npz file")
        return
    if name in FOLDER_DATASETS:
        if not path.is_dir():
            raise InputDataError(f"--data {data}: not a folder, and {name} is read from a folder")
        return
    why = "a .net does not name a data set" if name is None else f"{name} reads no --data"
    raise InputDataError(
        f"--data {data}: cannot be read ({why}); give a .npz (x, y), or a folder with --dataset "
        f"{'/'.join(FOLDER_DATASETS)}"
    )


def check_npz_fits(args, net) -> None:
    """Refuse ``--data x.npz`` images the network cannot take from the array's header, before
    they are decompressed (the same check runs on the loaded images)."""
    import math

    from snn2loihi.train.data import npz_image_shape

    if args.data is None or args.dataset is not None or not str(args.data).endswith(".npz"):
        return
    header, shape = npz_image_shape(args.data), tuple(net.input_shape)
    flat_ok = header is not None and len(shape) == 1 and math.prod(header) == shape[0]
    if header is not None and header != shape and not flat_ok:
        raise InputDataError(
            f"{args.data} (all images): images have shape {header}, the network takes {shape}"
        )


def cmd_eval(args) -> int:
    """``eval``; ``--timeout`` bounds the whole command (export, data, emulator and Lava)."""
    from snn2loihi.app.signals import deadline

    with deadline(args.timeout, f"eval {args.network}:"):
        return _eval(args)


def _eval(args) -> int:
    from snn2loihi.app.deploy_commands import check_clock_options
    from snn2loihi.deploy.evaluate import evaluate_network
    from snn2loihi.outputs import check_outputs
    from snn2loihi.train.checkpoint import checkpoint_input, data_inputs

    source = Path(args.network)
    check_clock_options(args)
    check_outputs(
        {"--json": args.json, "--plot": args.plot},
        {**checkpoint_input(source, "network"), "--data": args.data},
        force=True,
    )
    net, path, steps, data_cfg = deployed(source, args.input_shape)
    if args.data is None:  # the checkpoint's own data files are read
        outputs = {"--json": args.json, "--plot": args.plot}
        check_outputs(outputs, data_inputs(data_cfg, "network"), force=True)
    x, labels, what, steps = eval_inputs(args, net, data_cfg, args.steps or steps)
    clock = eval_clock(args, net, x, steps, what)
    ev = evaluate_network(
        net,
        path,
        x,
        labels,
        steps,
        args.backend,
        clock=clock,
        device=args.device,
        batch_size=args.batch_size,
        timeout=args.timeout,
        progress=not args.no_progress,
        data=what,
        compiled=args.compile,
        name=str(source),
        count_window=args.count_window,
    )
    print(summary(ev, what))
    if args.json:
        from snn2loihi.atomic import atomic_path

        with atomic_path(args.json) as tmp:
            tmp.write_text(json.dumps({"data": what, **ev.to_dict(True)}, indent=2) + "\n")
    if args.plot:
        from snn2loihi.app.demo_report import confusion

        name = next(iter(ev.scores))
        matrix = np.asarray(ev.scores[name].confusion)
        confusion(matrix, Path(args.plot), f"confusion matrix ({name}, {what})")
    return 1 if ev.agreement is not None and not ev.agreement["equal"] else 0


def eval_inputs(args, net, data_cfg, steps: int | None):
    """``(x, labels, description, T)``: the streams of a ``--data`` npz whose ``x`` has a time
    axis (T: theirs, or the first ``--steps``), else the images (T: ``steps``) shown as graded
    input or rate coded (``--encoding``)."""
    from snn2loihi.deploy.encoding import RateEncoded, load_stream, stream_header
    from snn2loihi.deploy.inputs import as_network_images

    shape = tuple(net.input_shape)
    npz = args.data is not None and args.dataset is None and str(args.data).endswith(".npz")
    if npz and stream_header(args.data, shape) is not None:
        if args.encoding is not None:
            raise InputDataError(
                f"--encoding {args.encoding}: {args.data} holds streams (samples, steps, "
                f"{', '.join(map(str, shape))}), which are fed as they are; drop --encoding"
            )
        classes = int(np.prod(net.output_shape))
        stream = load_stream(args.data, shape, classes, args.steps, args.samples)
        return stream.x, stream.y, f"{args.data} (streams)", stream.steps
    if steps is None:
        raise InputDataError(
            f"{args.network}: give --steps T (the file does not record the T it was trained for)"
        )
    check_npz_fits(args, net)
    images, labels, what = load_images(args, data_cfg)
    if args.encoding == "rate":
        return RateEncoded(as_network_images(images, shape), steps), labels, what, steps
    return images, labels, what, steps


def eval_clock(args, net, x, steps: int, what: str):
    """The clock of ``eval`` (None: per-sample; see :func:`~snn2loihi.deploy.runner.
    choose_clock`): images drive a CUBA input neuron's bias; anything else goes to the first
    synapse layer with a time axis (images shown for T steps)."""
    from snn2loihi.deploy.runner import choose_clock
    from snn2loihi.deploy.timeline import Timeline
    from snn2loihi.schema import CubaNeuron

    time_axis = x.ndim == 2 + len(net.input_shape) or not isinstance(net.input_neuron, CubaNeuron)
    return choose_clock(
        net, time_axis, steps, choice=args.clock,
        timeline=Timeline(args.reset_interval, args.reset_offset or 0),
        name=args.network, images=what,
    )  # fmt: skip


def summary(ev, what: str) -> str:
    """The printed result: accuracy per back end, parity, and the confusion matrix."""
    from snn2loihi.readout import DESCRIPTIONS

    rule = DESCRIPTIONS[ev.rule]
    clock = "per-sample clock"
    if ev.clock is not None:
        c = ev.clock
        resets = (
            "no resets"
            if c["reset_interval"] is None
            else (f"reset interval {c['reset_interval']}, offset {c['reset_offset']}")
        )
        clock = f"global clock (drive '{c['drive']}', {c['steps']} steps per run, {resets})"
    if ev.count_window == "input":
        rule += " over the T steps aligned with each input in one stream"
    lines = [
        f"eval {ev.net}: {ev.samples} samples ({what}), T={ev.steps}, input: "
        f"{INPUT_WORDS[ev.encoding]}, {clock}, prediction: {rule}"
    ]
    for s in ev.scores.values():
        lines.append(
            f"  {s.backend:<9} accuracy {s.accuracy:.2%} ({s.correct}/{ev.samples}), "
            f"{s.spikes_per_sample:.1f} spikes per sample"
        )
    if ev.agreement is not None:
        a = ev.agreement
        v = {True: "yes", False: "NO", None: "-"}
        lines.append(
            f"  parity    predictions equal {a['equal_predictions']}/{a['samples']}, output "
            f"spikes equal {v[a['output_spikes_equal']]}, readout v equal {v[a['readout_v_equal']]}"
        )
    name = next(iter(ev.scores))
    matrix = np.asarray(ev.scores[name].confusion)
    width = max(3, len(str(matrix.max(initial=0))))
    lines.append(f"confusion matrix ({name}; rows: label, columns: prediction)")
    lines.append("     " + "".join(f"{j:>{width + 1}}" for j in range(len(matrix))))
    for i, row in enumerate(matrix):
        lines.append(f"  {i:>3}" + "".join(f"{v:>{width + 1}}" for v in row))
    return "\n".join(lines)


def add_commands(sub) -> None:
    """Register ``snn2loihi eval``."""
    from snn2loihi.app.deploy_commands import add_clock_options

    p = sub.add_parser(
        "eval",
        help="accuracy of a .net or checkpoint on labelled images or streams (emulator, Lava "
        "or both)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Evaluate a deployed network on labelled data: images shown for T steps "
        "(graded input, as training encodes them, or --encoding rate), or the streams of an "
        ".npz whose x is (N, T, *input_shape); predictions by the network's rule. Any network "
        "runs: networks with an input neuron, SDNN, delays or recurrence on Lava's global "
        "clock (each sample its own run; images drive a CUBA input neuron's bias). A "
        "checkpoint is exported in memory first, so the figure is the deployed network's. "
        "--backend both also checks that Lava and the emulator agree (exit 1 if not).\n\n"
        "examples:\n  snn2loihi eval runs/demo/train/best.pt --backend both\n"
        "  snn2loihi eval model.net --data test.npz --steps 4 --json eval.json --plot cm.png\n"
        "  snn2loihi eval model.net --dataset mnist --data ../data/mnist --steps 4 --samples 500\n"
        "  snn2loihi eval netx_mnist.net --data mnist_test.npz --steps 20 --encoding rate\n"
        "  snn2loihi eval model.net --data events.npz   # x (N, T, C, H, W), y (N,)",
    )
    _add_input_options(p)
    add_clock_options(p)
    _add_run_options(p)
    p.set_defaults(func=cmd_eval)


def _add_input_options(p) -> None:
    """``eval``'s network and data options: what runs, on which samples, read how."""
    from snn2loihi.deploy.encoding import ENCODINGS
    from snn2loihi.readout import COUNT_WINDOWS

    p.add_argument("network", help=".net file, checkpoint (.pt) or run folder")
    p.add_argument("--data", help=".npz (x, y), or a dataset folder (with --dataset)")
    p.add_argument("--dataset", help="digits, mnist, cifar10, cifar100, imagefolder, npz")
    p.add_argument("--split", choices=SPLITS, default="test", help="default: test")
    p.add_argument("--backend", choices=("emulator", "lava", "both"), default="emulator")
    p.add_argument(
        "--steps",
        type=positive,
        help="time steps T (default: the T the checkpoint or .net records)",
    )
    p.add_argument("--samples", type=positive, help="the first N samples of the split")
    p.add_argument(
        "--count-window",
        choices=COUNT_WINDOWS,
        default="sample",
        help="spike-count networks, per-sample clock: sample (default: each sample's own T "
        "output steps, after the pipeline delay) or input (the T steps aligned with its input "
        "in one continuous stream, as lava-dl's NetX MNIST tutorial counts: the previous "
        "sample's last output steps included)",
    )
    p.add_argument(
        "--encoding",
        choices=ENCODINGS,
        help="images: graded (default: each pixel the graded input of every step, as training "
        "encodes them) or rate (lava-dl's NetX MNIST tutorial: an integrate-and-fire encoder "
        "per pixel, v += pixel/255 from the second step, a spike and v = 0 where v > 1). An "
        ".npz whose x is (N, T, *input_shape) holds streams, fed as they are",
    )


def _add_run_options(p) -> None:
    """``eval``'s run options (emulator device and batch, time limit, a slayer file's input
    shape) and its output files."""
    p.add_argument("--device", default="cpu", help="emulator device: cpu or cuda")
    p.add_argument("--batch-size", type=positive, default=256, help="emulator batch")
    p.add_argument(
        "--compile",
        action="store_true",
        help="CPU emulator: fused neuron kernels via torch.compile (same integers; pays off "
        "from a few thousand samples: compiling takes seconds once per process)",
    )
    p.add_argument("--timeout", type=seconds, help="seconds allowed for the whole evaluation")
    p.add_argument("--input-shape", type=shape, metavar="C,H,W", help="for slayer files")
    p.add_argument("--json", help="write the figures (and predictions) as JSON here")
    p.add_argument("--plot", help="write the confusion matrix as a PNG here")
    p.add_argument("--no-progress", action="store_true", help="no progress output")
