"""CLI subcommand of the training stage: ``snn2loihi train``."""

from __future__ import annotations

import argparse
import json
import logging

from snn2loihi.app.arg_types import seed

log = logging.getLogger(__name__)


def cmd_train(args) -> int:
    from snn2loihi.errors import ConfigError
    from snn2loihi.train.checkpoint import load_checkpoint
    from snn2loihi.train.config import resolve
    from snn2loihi.train.trainer import train

    if args.init_from and args.resume:
        raise ConfigError(
            f"--init-from {args.init_from} with --resume {args.resume}: --resume continues a run "
            "(its optimizer and schedule), --init-from starts a new run from a checkpoint's "
            "model; give one of them"
        )
    overrides = list(args.set or [])
    for flag, key in (
        ("method", "train.method"),
        ("steps", "train.steps"),
        ("epochs", "train.epochs"),
        ("seed", "train.seed"),
        ("device", "train.device"),
        ("dataset", "data.dataset"),
        ("data_root", "data.root"),
        ("out", "output.dir"),
        ("init_from", "train.init_from"),
    ):
        value = getattr(args, flag)
        if value is not None:
            overrides.append(f"{key}={json.dumps(value)}")
    if args.float_snn:
        overrides.append("train.float_snn=true")
    if args.no_progress:
        overrides.append("output.progress=false")
    base = None
    if args.resume and args.config is None:
        base = load_checkpoint(args.resume)["config"]
    config = resolve(args.config, overrides, base=base)
    metrics = train(config, resume=args.resume, force=args.force)
    keys = ("epoch", "ann_acc", "snn_acc", "spikes_total", "best_epoch")
    keys += ("test_ann_acc", "test_snn_acc", "test_spikes_total")
    summary = {k: metrics[k] for k in keys if k in metrics}  # ann/snn_acc: validation split
    print(json.dumps(summary))
    return 0


def _add_start_options(p) -> None:
    """Where a run starts: --resume, --init-from, --force."""
    p.add_argument(
        "--resume",
        metavar="CKPT",
        help="continue from a checkpoint or its folder (its last.pt; RUN/pretrained.pt: the end "
        "of the run's ANN phase, to train the epochs after it with other settings)",
    )
    p.add_argument(
        "--init-from",
        metavar="CKPT",
        help="start a new run from the model of a checkpoint (or run folder: its last.pt) of the "
        "same network, e.g. a pre-trained ANN, with a fresh optimizer and schedule "
        "(train.init_from)",
    )
    p.add_argument(
        "--force", action="store_true", help="replace the run already in --out (its files go)"
    )


def add_commands(sub) -> None:
    p = sub.add_parser(
        "train",
        help="train an SNN with SNN2ANN (or BPTT) on Loihi's integer neuron",
        description="Train with SNN2ANN: a T-step integer Loihi SNN branch (exactly what export "
        "deploys) and one ANN pass with spike counts substituted. The best epoch (best.pt) is "
        "selected on a validation split carved from the training data (data.val_fraction); the "
        "test split is evaluated once, on that model, at the end (test.json; test_* in the "
        "printed summary). Config: TOML or YAML file, overridden by --set section.key=value and "
        "the explicit flags.\n\nexamples:\n"
        "  snn2loihi train --steps 4 --epochs 20 --out runs/digits\n"
        "  snn2loihi train -c cifar.toml --set train.lr=0.05 --set ata.granularity=channel\n"
        "  snn2loihi train --resume runs/digits --epochs 30\n"
        "  snn2loihi train --method bptt --init-from runs/ann/last.pt --out runs/bptt",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--config", "-c", help="config file (.toml, .yaml)")
    p.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="override a config key, e.g. --set train.lr=0.05 (repeatable)",
    )
    p.add_argument(
        "--method",
        choices=("snn2ann", "bptt", "noise"),
        help="snn2ann (default), bptt, or noise: T = 1 training with noise, deployed at --steps",
    )
    p.add_argument("--steps", "-T", type=int, help="time steps T")
    p.add_argument("--epochs", type=int)
    p.add_argument("--seed", type=seed, help="random seed, 0..2**63-1 (train.seed)")
    p.add_argument("--device", help="auto, cpu, cuda, cuda:N")
    p.add_argument("--dataset", help="digits, mnist, cifar10, cifar100, imagefolder, npz")
    p.add_argument(
        "--data",
        dest="data_root",
        metavar="DATA",
        help="dataset folder (torchvision layout or imagefolder)",
    )
    # the old spelling (eval and export name their data --data), kept out of --help
    p.add_argument(
        "--data-root", dest="data_root", default=argparse.SUPPRESS, help=argparse.SUPPRESS
    )
    p.add_argument("--out", help="output folder for checkpoints and logs")
    p.add_argument(
        "--float-snn", action="store_true", help="ablation: unquantized float SNN branch"
    )
    _add_start_options(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_train)
