"""``snn2loihi demo``: the whole flow on the embedded digits data, with a report.

Train with SNN2ANN (integer SNN branch; best epoch selected on the validation split) -> export the
NetX ``.net`` -> evaluate the test split on the Lava simulator and on the emulator and check parity
spike for spike (:mod:`snn2loihi.deploy.evaluate`, one run per back end) -> ``report.md``/
``report.json`` with PNG figures. Predictions follow the network's rule (:mod:`snn2loihi.readout`:
argmax of the readout layer's ``v >> 6`` after the last step), the rule training evaluates with.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from pathlib import Path

import numpy as np

from snn2loihi.app import demo_report as rep
from snn2loihi.errors import InputDataError

log = logging.getLogger(__name__)


def _config(out: Path, steps: int, epochs: int, seed: int, progress: bool):
    """The demo's resolved training config (validated: bad options fail before any work)."""
    from snn2loihi.train.config import resolve

    overrides = [
        f"train.steps={steps}",
        f"train.epochs={epochs}",
        f"train.seed={seed}",
        f"output.dir={json.dumps(str(out / 'train'))}",
        f"output.progress={'true' if progress else 'false'}",
    ]
    return resolve(None, overrides)


def _check_out(out: Path, samples: int | None, force: bool) -> None:
    """Refuse, before anything is created, bad options and a folder holding another demo."""
    from snn2loihi.errors import OutputPathError
    from snn2loihi.outputs import check_outputs
    from snn2loihi.train.run_folder import check_run_folder

    if samples is not None and samples < 1:
        raise InputDataError(f"--samples {samples} must be >= 1")
    if out.exists() and not out.is_dir():
        raise OutputPathError(f"--out {out} is a file; give a folder")
    check_outputs({"--out": out / "report.json"}, force=True)  # writable
    if not force and (out / "report.json").exists():
        raise OutputPathError(f"--out {out} holds a demo run; use --force to replace it")
    check_run_folder(out / "train", force=force)


def _train(config, force: bool) -> tuple[dict, float]:
    from snn2loihi.train.trainer import train

    t0 = time.perf_counter()
    metrics = train(config, force=force)
    return metrics, time.perf_counter() - t0


def run_demo(
    out: str | Path,
    *,
    steps: int = 4,
    epochs: int = 20,
    seed: int = 0,
    samples: int | None = None,
    lava_chunk: int = 120,
    progress: bool = True,
    lava_timeout: float | None = 900.0,
    force: bool = False,
) -> dict:
    """Run the whole flow into ``out``; returns the figures written to ``report.json``.

    The test split runs as :func:`~snn2loihi.deploy.evaluate.evaluate_network` on both back
    ends, keeping every layer's spikes for the parity table; ``lava_timeout`` (seconds) is
    allowed per chunk of ``lava_chunk`` samples."""
    from snn2loihi.deploy.evaluate import evaluate_network
    from snn2loihi.export.exporter import export_checkpoint
    from snn2loihi.netx_io import read_network
    from snn2loihi.train.checkpoint import BEST
    from snn2loihi.train.config import dump_toml
    from snn2loihi.train.data import load_datasets

    out = Path(out)
    config = _config(out, steps, epochs, seed, progress)
    _check_out(out, samples, force)
    out.mkdir(parents=True, exist_ok=True)
    metrics, train_s = _train(config, force)
    rep.write_text(dump_toml(config), out / "config.toml")  # the resolved config of this run
    net_path = out / "model.net"
    export_checkpoint(
        out / "train" / BEST, net_path, force=True, accuracy=False
    )  # + model.report.*
    net = read_network(net_path)

    test = load_datasets(config.data).test
    x_img = test.x.numpy()[:samples]
    y = test.y.numpy()[: len(x_img)]
    chunks = -(-len(x_img) // lava_chunk)
    ev = evaluate_network(
        net, net_path, x_img, y, steps, "both", lava_chunk=lava_chunk, progress=progress,
        timeout=None if lava_timeout is None else lava_timeout * chunks, data="test split",
        traces=True,
    )  # fmt: skip
    layers = _DemoLayers(net, net_path, ev)
    figures = _figures(out, metrics, layers, ev, steps)
    data = _report(net_path, metrics, train_s, layers, ev, epochs, steps)
    data["files"].update({k: p.name for k, p in figures.items()})
    rep.write_json(data, out / "report.json")
    rep.write_text(_markdown(data["summary"], layers.parity, figures), out / "report.md")
    return data


class _DemoLayers:
    """The synaptic layers of ``net`` (the file ``net_path``) as the report names them, with the
    Lava run's spikes per sample and the parity of every layer (Lava against the emulator) of
    the evaluation ``ev`` on both back ends."""

    def __init__(self, net, net_path: Path, ev):
        from snn2loihi.deploy.parity import compare_records

        emulator, self.lava = ev.runs["emulator"], ev.runs["lava"]
        self.parity = compare_records(net, emulator, self.lava, net_path)
        self.indices = [i for i, _ in net.synaptic_layers]
        self.names = [f"{ly.kind}{i}" for i, ly in net.synaptic_layers]
        self.names[-1] += " (readout)"
        self.neurons = [int(np.prod(ly.shape)) for _, ly in net.synaptic_layers]
        self.vth_mant = [ly.neuron.vth_mant for _, ly in net.synaptic_layers]
        self.spikes_per_sample = [self.lava.layer_spikes[i] / ev.samples for i in self.indices]


def _figures(out: Path, metrics: dict, layers: _DemoLayers, ev, steps: int) -> dict[str, Path]:
    """The report's PNG figures, written into ``out``."""
    rates = [s / n / steps for s, n in zip(layers.spikes_per_sample, layers.neurons, strict=True)]
    confusion = np.asarray(ev.scores["lava"].confusion)
    first_sample = [layers.lava.records[f"s{i}"][0] for i in layers.indices]
    return {
        "training_curves": rep.training_curves(metrics["history"], out / "training_curves.png"),
        "spike_rates": rep.spike_rates(layers.names, rates, out / "spike_rates.png"),
        "raster": rep.raster(first_sample, layers.names, out / "raster.png"),
        "thresholds": rep.thresholds(layers.names, layers.vth_mant, out / "thresholds.png"),
        "confusion": rep.confusion(
            confusion, out / "confusion_lava.png", "confusion matrix (Lava run)"
        ),
    }


def _report(net_path: Path, metrics, train_s, layers: _DemoLayers, ev, epochs, steps) -> dict:
    """``report.json``'s content: the summary figures, parity per layer, the history."""
    from snn2loihi.train.checkpoint import BEST

    summary = {
        "samples": ev.samples,
        "steps": steps,
        "epochs": epochs,
        "split": "test",
        "best_epoch": metrics["best_epoch"] + 1,  # selected on the validation split
        "val_snn_acc": metrics["val_snn_acc"],
        "ann_acc": metrics["test_ann_acc"],  # whole test split, the selected model
        "integer_snn_acc": metrics["test_snn_acc"],
        "emulator_acc": ev.scores["emulator"].accuracy,
        "lava_acc": ev.scores["lava"].accuracy,
        "parity_spikes_equal": all(p.mismatches == 0 for p in layers.parity),
        "parity_readout_equal": ev.agreement["readout_v_equal"] is not False,
        "parity_samples_equal": ev.agreement["equal_predictions"],
        "spikes_per_sample": float(sum(layers.spikes_per_sample)),
        "spikes_per_sample_per_layer": dict(
            zip(layers.names, layers.spikes_per_sample, strict=True)
        ),
        "train_s": round(train_s, 1),
    }
    return {
        "summary": summary,
        "parity": [p.__dict__ for p in layers.parity],
        "confusion_lava": np.asarray(ev.scores["lava"].confusion).tolist(),
        "vth_mant": dict(zip(layers.names, layers.vth_mant, strict=True)),
        "history": [
            {k: v for k, v in h.items() if not isinstance(v, dict)} for h in metrics["history"]
        ],
        "files": {"net": net_path.name, "checkpoint": f"train/{BEST}"},
    }


def summary_rows(s: dict) -> list[list]:
    pct = lambda v: f"{100 * v:.2f}%"  # noqa: E731
    return [
        ["ANN-branch accuracy (test)", pct(s["ann_acc"])],
        ["integer-SNN accuracy (test)", pct(s["integer_snn_acc"])],
        ["emulator accuracy (test)", pct(s["emulator_acc"])],
        ["Lava accuracy (test)", pct(s["lava_acc"])],
        ["parity: every spike equal", "yes" if s["parity_spikes_equal"] else "NO"],
        ["parity: readout v equal", "yes" if s["parity_readout_equal"] else "NO"],
        ["parity: samples with equal prediction", f"{s['parity_samples_equal']}/{s['samples']}"],
        ["spikes per sample", f"{s['spikes_per_sample']:.1f}"],
        [
            "training time",
            f"{s['train_s']} s ({s['epochs']} epochs, best epoch {s['best_epoch']} "
            "(selected on validation))",
        ],
    ]


def _markdown(s: dict, parity, figures: dict) -> str:
    lines = [
        "# snn2loihi demo report",
        "",
        f"sklearn digits, test split ({s['samples']} samples run on Lava and the emulator), "
        f"T = {s['steps']} steps, SNN2ANN with the integer Loihi SNN branch; the best epoch is "
        "selected on the validation split, the test split is never seen in training.",
        "",
        rep.markdown_table(["figure", "value"], summary_rows(s)),
        "",
        "## Parity (Lava simulator vs emulator)",
        "",
        rep.markdown_table(
            [
                "layer",
                "type",
                "shape",
                "spikes Lava",
                "spikes emulator",
                "mismatches",
                "first mismatch",
            ],
            [
                [
                    p.layer,
                    p.kind,
                    "x".join(map(str, p.shape)),
                    p.lava_spikes,
                    p.emulator_spikes,
                    p.mismatches,
                    p.first_mismatch or "-",
                ]
                for p in parity
            ],
        ),
        "",
    ]
    for title, key in (
        ("Training curves", "training_curves"),
        ("Spike rate per layer", "spike_rates"),
        ("Spike raster of one sample", "raster"),
        ("Per-layer thresholds", "thresholds"),
        ("Confusion matrix (Lava)", "confusion"),
    ):
        lines += [f"## {title}", "", f"![{title}]({figures[key].name})", ""]
    return "\n".join(lines)


def _folders(out: Path) -> set[Path]:
    return ({out} | {p for p in out.rglob("*") if p.is_dir()}) if out.is_dir() else set()


def _remove_new_empty_folders(out: Path, existed: set[Path]) -> None:
    """Remove the folders under (and including) ``out`` that were not in ``existed`` and hold
    nothing; files are never removed."""
    for folder in sorted(_folders(out) - existed, key=lambda p: len(p.parts), reverse=True):
        with contextlib.suppress(OSError):
            folder.rmdir()


def cmd_demo(args) -> int:
    existed = _folders(Path(args.out))
    try:
        data = run_demo(
            args.out,
            steps=args.steps,
            epochs=args.epochs,
            seed=args.seed,
            samples=args.samples,
            progress=not args.no_progress,
            force=args.force,
        )
    except BaseException:  # a failed demo leaves no empty folder it created
        _remove_new_empty_folders(Path(args.out), existed)
        raise
    s = data["summary"]
    width = max(len(r[0]) for r in summary_rows(s))
    print(f"\nsnn2loihi demo: sklearn digits, T={s['steps']}, {s['samples']} test samples")
    for name, value in summary_rows(s):
        print(f"  {name.ljust(width)}  {value}")
    print(f"report: {Path(args.out) / 'report.md'}")
    return 0 if s["parity_spikes_equal"] and s["parity_readout_equal"] else 1


def add_commands(sub) -> None:
    """Register ``snn2loihi demo``."""
    import argparse

    from snn2loihi.app.arg_types import seed

    p = sub.add_parser(
        "demo",
        help="train on digits, export, run on Lava and the emulator, check parity, write a report",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="The whole flow in one command on the embedded sklearn digits data: SNN2ANN "
        "training (integer SNN branch, best epoch selected on validation), NetX export, the test "
        "split on the Lava simulator and the emulator, spike-for-spike parity, and report.md/report.json with figures. Exit 1 if "
        "parity fails.\n\nexample:\n  snn2loihi demo --out runs/demo --steps 4 --epochs 20",
    )
    p.add_argument("--out", default="runs/demo", help="output folder (default runs/demo)")
    p.add_argument("--steps", type=int, default=4, help="time steps T (default 4)")
    p.add_argument("--epochs", type=int, default=20, help="training epochs (default 20)")
    p.add_argument("--seed", type=seed, default=0, help="random seed, 0..2**63-1 (default 0)")
    p.add_argument("--samples", type=int, default=None, help="test samples to run (default all)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--force", action="store_true", help="replace a demo already in --out")
    p.set_defaults(func=cmd_demo)
