"""Ship a trained run as a ready model folder (``models/<name>/``), through the real CLI.

From a run folder (``best.pt``, selected on validation) and its recorded training figures
(the JSON of ``bench/cifar_fast.py``), writes into ``--out``:

- ``model.net`` with ``model.report.json`` / ``model.report.md`` (``snn2loihi export``);
- ``checkpoint.pt``: the selected checkpoint without optimizer and scheduler states, when it is
  at most ``--max-checkpoint-mb`` (20 MB);
- ``eval_emulator.json`` and ``predictions.npy`` (uint8, one class per test image): the exported
  network on the emulator over the whole test file (``snn2loihi eval --backend emulator``);
- ``parity.json``: the first ``--lava-samples`` test images on Lava's simulator against the
  emulator, every layer's spikes and the readout's ``u`` and ``v`` (``snn2loihi parity``);
- ``card.json`` and ``README.md``: the model card (data, recipe, commands, training minutes and
  machine, accuracy, parity, spikes per sample, how to reproduce).

    .venv/bin/python bench/ship_model.py --run runs/cifar10_t4 --results bench/results/cifar10_t4.json \\
        --test runs/cache/cifar10/cifar10_test.npz --out models/cifar10-t4
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
from harness import write_result

ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "snn2loihi"]


def run(cmd: list[str]) -> float:
    """Run ``cmd`` in the repository (output to the terminal); its wall time; raise on failure."""
    print("+", shown(cmd), flush=True)
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=ROOT)
    return time.perf_counter() - t0


def shown(cmd: list[str]) -> str:
    """``cmd`` as a user types it: ``snn2loihi`` for the CLI, paths relative to the repository."""
    words = ["snn2loihi", *cmd[3:]] if cmd[:3] == CLI else cmd
    return shlex.join(words).replace(f"{ROOT}/", "")


def rel(path: Path) -> str:
    path = path.resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def slim_checkpoint(src: Path, dst: Path, limit_mb: float) -> bool:
    """``src`` without optimizer and scheduler states at ``dst`` if it fits ``limit_mb``; else
    no ``dst`` (an earlier model's checkpoint there is removed: it would not match)."""
    import torch

    state = torch.load(src, map_location="cpu", weights_only=True)
    state["optimizer"], state["scheduler"] = {}, None
    with tempfile.NamedTemporaryFile(dir=dst.parent, suffix=".pt.tmp", delete=False) as f:
        tmp = Path(f.name)
    try:
        torch.save(state, tmp)
        if tmp.stat().st_size > limit_mb * 2**20:
            dst.unlink(missing_ok=True)
            return False
        tmp.chmod(0o644)  # NamedTemporaryFile makes 0600
        tmp.replace(dst)
        return True
    finally:
        tmp.unlink(missing_ok=True)


def machine_text(m: dict, threads: int | None) -> str:
    """One line for a result file's machine record."""
    cpu = m.get("cpu") or "CPU"
    cores = m.get("cores") or m.get("cpu_cores")
    text = f"{cpu}, {cores} cores" if m.get("gpu") is None else m["gpu"]
    return text + (f", {threads} torch thread(s)" if threads else "")


def network_text(config_file: Path, report: dict) -> str:
    """The conv and dense stack of the run's config, and the deployed layer count."""
    from snn2loihi.train.config import resolve
    from snn2loihi.train.model import ARCHITECTURES

    m = resolve(config_file).model
    convs, dense = ARCHITECTURES.get(m.arch, ((), ()))
    convs, dense = list(m.convs) or list(convs), list(m.dense) or list(dense)
    stack = ", ".join(map(str, convs)) + " -> dense " + ", ".join(map(str, dense))
    n = len(report["layers"])
    return f"convs {stack} -> readout ({n} NetX layers; `p2`: 2x2 average pool folded in)"


def card_markdown(card: dict) -> str:
    """The model card's README.md from its figures."""
    t, e, p = card["training"], card["emulator"], card["lava_parity"]
    lines = [
        f"# {card['name']}: {card['summary']}",
        "",
        f"Emulator accuracy on the {e['samples']:,} test images: **{e['accuracy']:.2%}** "
        f"(T = {card['steps']}, prediction: {card['rule']}).",
        "",
        "| | |",
        "|---|---|",
        f"| data | {card['data']} |",
        f"| network | `{card['arch']}`: {card['network']} |",
        f"| recipe | [{card['recipe']}](../../{card['recipe']}) |",
        f"| training | {t['epochs']} epochs in {t['minutes']:.1f} min on {t['machine']} "
        f"(best epoch {t['best_epoch'] + 1}, selected on {t['val_samples']} validation images"
        + (f"; {t['load']}" if t.get("load") else "")
        + ") |",
        f"| emulator, {e['samples']:,} test images | {e['accuracy']:.2%} |",
        f"| integer SNN in training, same images | {t['test_snn_acc']:.2%} |",
        f"| Lava (Loihi2SimCfg fixed_pt), first {p['samples']} test images | "
        f"every spike equal: {'yes' if p['spikes_equal'] else 'NO'}, readout u and v equal at "
        f"every step: {'yes' if p['v_equal'] else 'NO'}"
        + (f", accuracy {p['accuracy']:.2%}" if p["accuracy"] is not None else "")
        + " |",
        f"| spikes per sample (emulator) | {e['spikes_per_sample']:,.0f} |",
        f"| files | `model.net` ({card['files']['model.net']}), "
        + (
            "`checkpoint.pt` (weights, thresholds, config; no optimizer state)"
            if card["files"].get("checkpoint.pt")
            else "no checkpoint (over the size limit)"
        )
        + ", `predictions.npy` (emulator's class per test image), `model.report.md` |",
        "",
        "## Use it",
        "",
        "```bash",
        "python bench/cifar_data.py   # decode ../shared/data's JPEG CIFAR-10 once; prints the npz paths",
        f"snn2loihi eval {card['folder']}/model.net --data runs/cache/cifar10/cifar10_test.npz",
        "```",
        "",
        f"prints {e['accuracy']:.2%} on {e['samples']:,} images "
        f"(`tests/test_models.py` checks the first images' predictions against `predictions.npy`).",
        "",
        "## Reproduce",
        "",
        "```bash",
        card["commands"]["bench"],
        card["commands"]["ship"],
        "```",
        "",
        f"Training command: `{card['commands']['train']}`",
        "",
        f"Evaluation: `{card['commands']['eval']}`; Lava: `{card['commands']['parity']}` "
        "(every layer's spikes, the readout's u and v at every step).",
        "",
        f"Made {card['date']}.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--run", type=Path, required=True, help="run folder with best.pt")
    p.add_argument("--results", type=Path, required=True, help="bench/cifar_fast.py's JSON")
    p.add_argument("--test", type=Path, required=True, help="test images .npz (x NHWC, y)")
    p.add_argument("--out", type=Path, required=True, help="model folder, e.g. models/cifar10-t4")
    p.add_argument("--name", help="model name (default: the folder's name)")
    p.add_argument("--summary", default="SNN2ANN-trained spiking network for Loihi")
    p.add_argument("--lava-samples", type=int, default=200)
    p.add_argument("--max-checkpoint-mb", type=float, default=20.0)
    args = p.parse_args(argv)

    results = json.loads(args.results.read_text())
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    net = out / "model.net"
    run(CLI + ["export", str(args.run / "best.pt"), "--out", str(net), "--force"])
    eval_json = out / "eval_emulator.json"
    eval_cmd = CLI + ["eval", str(net), "--data", str(args.test), "--backend", "emulator"]
    eval_cmd += ["--json", str(eval_json), "--no-progress"]
    run(eval_cmd)
    ev = json.loads(eval_json.read_text())
    emulator = ev["scores"]["emulator"]
    predictions = np.asarray(emulator.pop("predictions"), dtype=np.uint8)
    write_result(eval_json, ev)
    np.save(out / "predictions.npy", predictions)

    with np.load(args.test) as f:
        first = np.ascontiguousarray(f["x"][: args.lava_samples].transpose(0, 3, 1, 2))
    with tempfile.TemporaryDirectory(prefix="ship-") as tmp:
        images = Path(tmp) / "first_test_images.npy"
        np.save(images, first)
        parity_json = out / "parity.json"
        parity_cmd = CLI + ["parity", str(net), "--input", str(images)]
        parity_cmd += ["--steps", str(results["steps"]), "--json", str(parity_json)]
        run(parity_cmd)
    parity = json.loads(parity_json.read_text())
    readout = parity["layers"][-1]["state_mismatches"]
    first_predictions = predictions[: args.lava_samples]
    with np.load(args.test) as f:
        lava_accuracy = float(np.mean(first_predictions == f["y"][: args.lava_samples]))
    ckpt = slim_checkpoint(args.run / "best.pt", out / "checkpoint.pt", args.max_checkpoint_mb)

    from snn2loihi.netx_io import read_network

    steps = read_network(net).steps
    report = json.loads((out / "model.report.json").read_text())
    card = {
        "name": args.name or out.name,
        "folder": rel(out),
        "summary": args.summary,
        "data": "CIFAR-10, the shared lossy JPEG copy (../shared/data/cifar10-jpeg): 49,000 "
        "training images, 1,000 validation images carved from the training set, the 10,000 "
        "test images evaluated once",
        "arch": results["arch"],
        "network": network_text(args.run / "config.toml", report),
        "recipe": results["recipe"],
        "steps": steps,
        "rule": "argmax of the readout's v >> 6 after the last step",
        "training": {
            "epochs": results["epochs"],
            "minutes": results["train_wall_s"] / 60,
            "machine": machine_text(results["machine"], results.get("threads")),
            "best_epoch": results["best_epoch"],
            "val_samples": results.get("val_samples", 1000),
            "test_snn_acc": results["test_snn_acc"],
            "seed": results.get("seed", 0),
            **({"load": results["load"]} if results.get("load") else {}),
        },
        "emulator": {
            "samples": len(predictions),
            "accuracy": emulator["accuracy"],
            "spikes_per_sample": emulator["spikes_per_sample"],
        },
        "lava_parity": {  # parity: every layer's spikes, the readout's u and v at every step
            "samples": args.lava_samples,
            "spikes_equal": all(ly["mismatches"] == 0 for ly in parity["layers"]),
            "v_equal": readout.get("v") == 0 and readout.get("u") == 0,
            "equal": bool(parity["equal"]),
            # equal spikes and readout v give equal predictions: Lava's are the emulator's
            "accuracy": lava_accuracy if parity["equal"] else None,
        },
        "files": {
            "model.net": f"{net.stat().st_size / 2**20:.1f} MiB",
            "checkpoint.pt": ckpt,
        },
        "commands": {
            "bench": results["command"],
            "train": results["train_command"],
            "eval": shown(eval_cmd),
            "parity": shown(parity_cmd).replace(str(images), "<first test images .npy>"),
            "ship": shlex.join(["python", "bench/ship_model.py", *(argv or sys.argv[1:])]).replace(
                f"{ROOT}/", ""
            ),
        },
        "date": time.strftime("%Y-%m-%d"),
    }
    write_result(out / "card.json", card)
    write_result(out / "README.md", card_markdown(card))
    print(f"{out}: emulator {emulator['accuracy']:.2%} on {len(predictions)} test images")
    return 0


if __name__ == "__main__":
    sys.exit(main())
