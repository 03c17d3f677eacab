"""Accuracy of a NetX network on labelled images, on the emulator, on Lava, or on both.

Images are encoded as training encodes them: uint8 pixels shown as graded input at every one of
the T steps. Predictions follow the network's own rule (:mod:`snn2loihi.readout`). The emulator
runs in batches, Lava in chunks (one compiled run each); with both, every output spike and the
readout ``v`` are compared sample by sample.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from snn2loihi.deploy.inputs import as_network_images, check_input_budget
from snn2loihi.errors import InputDataError
from snn2loihi.readout import READOUT_V, predict, prediction_rule
from snn2loihi.schema import NetXNetwork

log = logging.getLogger(__name__)

EVAL_BACKENDS = ("emulator", "lava", "both")


@dataclass
class BackendScore:
    """One back end's figures: accuracy, the confusion matrix (rows: label, columns:
    prediction), the mean number of spikes per sample over all layers, and the predictions."""

    backend: str
    accuracy: float
    correct: int
    spikes_per_sample: float
    confusion: list[list[int]]
    predictions: list[int] = field(repr=False)


@dataclass
class Evaluation:
    """An evaluation of ``samples`` images at ``steps`` steps; ``agreement`` (with both back
    ends): equal predictions, and whether every output spike and readout ``v`` is equal."""

    net: str
    samples: int
    steps: int
    rule: str
    scores: dict[str, BackendScore]
    agreement: dict | None = None

    def to_dict(self, with_predictions: bool = False) -> dict:
        out = asdict(self)
        if not with_predictions:
            for score in out["scores"].values():
                score.pop("predictions")
        return out


@dataclass
class _Run:
    """What one back end produced for a slice of samples."""

    predictions: np.ndarray
    spikes: int  # all layers, all samples of the slice
    output: np.ndarray  # (n, T, *shape) uint8
    v_last: np.ndarray | None


def check_images(images: np.ndarray, labels: np.ndarray, net: NetXNetwork, source: str) -> None:
    """Refuse images that do not fit the network and labels outside its classes."""
    shape = tuple(net.input_shape)
    if images.ndim != 1 + len(shape) or tuple(images.shape[1:]) != shape:
        raise InputDataError(
            f"{source}: images have shape {tuple(images.shape[1:])}, the network takes {shape}"
        )
    if images.dtype.kind not in "iu" or images.min(initial=0) < 0 or images.max(initial=0) > 255:
        raise InputDataError(f"{source}: images must be pixels 0..255 (dtype {images.dtype})")
    classes = int(np.prod(net.output_shape))
    if len(labels) and int(labels.max()) >= classes:
        bad = int(np.flatnonzero(labels >= classes)[0])
        raise InputDataError(
            f"{source}: label {int(labels[bad])} (sample {bad}) exceeds the network's "
            f"{classes} classes"
        )


def _emulator_runs(net, images, steps, device, batch_size, rule, compiled) -> Iterable[_Run]:
    from snn2loihi.deploy.emulator import Emulator

    emulator = Emulator(net, device=device, batch_size=batch_size, compiled=compiled)
    state = "last" if rule == READOUT_V else False
    for lo in range(0, len(images), batch_size):
        x = np.broadcast_to(
            images[lo : lo + batch_size, None],
            (min(batch_size, len(images) - lo), steps, *images.shape[1:]),
        )
        res = emulator.run(x, record_state=state, spikes="output")
        out = res.output.numpy().astype(np.uint8)
        v = None if not state else res.layers[-1].v[:, -1].numpy()
        spikes = sum(t.total_spikes() for t in res.layers)
        yield _Run(predict(rule, out, v), spikes, out, v)


def _lava_runs(net, path, name, images, steps, chunk, rule, deadline, timeout) -> Iterable[_Run]:
    from snn2loihi.deploy.lava_runner import run_lava
    from snn2loihi.deploy.parity import time_left

    state = "last" if rule == READOUT_V else False
    for lo in range(0, len(images), chunk):
        part = images[lo : lo + chunk]
        x = np.broadcast_to(part[:, None], (len(part), steps, *part.shape[1:]))
        left = time_left(deadline, timeout, name, "eval")
        res = run_lava(
            path,
            np.ascontiguousarray(x),
            graded=bool(part.max(initial=0) > 1),
            probe_all=True,
            record_state=state,
            timeout=left,
            net=net,
            name=name,
        )
        v = None if not state else res.v[-1][:, -1]
        spikes = sum(int(s.sum()) for s in res.spikes)
        yield _Run(predict(rule, res.output, v), spikes, res.output, v)


def evaluate_network(
    net: NetXNetwork,
    path: str | Path | None,
    images: np.ndarray,
    labels: np.ndarray,
    steps: int,
    backend: str = "emulator",
    *,
    device: str = "cpu",
    batch_size: int = 256,
    lava_chunk: int = 100,
    timeout: float | None = None,
    progress: Callable[[Iterable, str, int], Iterable] | None = None,
    data: str = "images",
    compiled: bool = False,
    name: str | None = None,
) -> Evaluation:
    """Evaluate ``net`` (the file ``path``) on ``images`` (N, *input_shape) uint8 pixels with
    ``labels`` (N,) over ``steps`` steps on ``backend`` (emulator, lava or both).

    ``progress(iterable, description, total)`` wraps each back end's loop (a progress bar);
    ``data`` names the images in errors. ``compiled``: the emulator's neurons as fused kernels
    (see :class:`~snn2loihi.deploy.emulator.Emulator`). ``path`` None: a network held only in
    memory (Lava gets it written into each run's own folder); ``name`` names it in errors.
    """
    name = name or str(path)
    if backend not in EVAL_BACKENDS:
        raise InputDataError(f"--backend {backend}: choose from {', '.join(EVAL_BACKENDS)}")
    images = as_network_images(images, tuple(net.input_shape))
    check_images(images, labels, net, data)
    chunk = max(batch_size, lava_chunk if backend != "emulator" else 0)
    per_run = min(len(images), chunk)
    check_input_budget(per_run, steps, tuple(net.input_shape), f"{data}: {per_run} images")
    rule = prediction_rule(net)
    classes = int(np.prod(net.output_shape))
    wrap = progress or (lambda it, desc, total: it)
    deadline = None if timeout is None else time.monotonic() + timeout
    runs: dict[str, list[_Run]] = {}
    names = ("emulator", "lava") if backend == "both" else (backend,)
    for name in names:
        if name == "emulator":
            it = _emulator_runs(net, images, steps, device, batch_size, rule, compiled)
            total = -(-len(images) // batch_size)
        else:
            it = _lava_runs(net, path, name, images, steps, lava_chunk, rule, deadline, timeout)
            total = -(-len(images) // lava_chunk)
        runs[name] = list(wrap(it, name, total))
    scores = {name: _score(name, parts, labels, classes) for name, parts in runs.items()}
    agreement = _agreement(runs["emulator"], runs["lava"]) if backend == "both" else None
    return Evaluation(name, len(images), steps, rule, scores, agreement)


def _score(name: str, parts: list[_Run], labels: np.ndarray, classes: int) -> BackendScore:
    pred = np.concatenate([p.predictions for p in parts])
    confusion = np.zeros((classes, classes), dtype=np.int64)
    np.add.at(confusion, (labels, pred), 1)
    correct = int((pred == labels).sum())
    spikes = sum(p.spikes for p in parts) / max(len(labels), 1)
    return BackendScore(
        name, correct / max(len(labels), 1), correct, spikes, confusion.tolist(), pred.tolist()
    )


def _agreement(emu: list[_Run], lava: list[_Run]) -> dict:
    e_pred = np.concatenate([p.predictions for p in emu])
    l_pred = np.concatenate([p.predictions for p in lava])
    e_out = np.concatenate([p.output for p in emu])
    l_out = np.concatenate([p.output for p in lava])
    out = {
        "equal_predictions": int((e_pred == l_pred).sum()),
        "samples": len(e_pred),
        "output_spikes_equal": bool(np.array_equal(e_out, l_out)),
        "readout_v_equal": None,
    }
    if emu[0].v_last is not None:
        e_v = np.concatenate([p.v_last for p in emu])
        l_v = np.concatenate([p.v_last for p in lava])
        out["readout_v_equal"] = bool(np.array_equal(e_v, l_v))
    out["equal"] = out["equal_predictions"] == out["samples"] and out["output_spikes_equal"]
    out["equal"] = out["equal"] and out["readout_v_equal"] is not False
    return out
