"""Accuracy of a NetX network on labelled data, on the emulator, on Lava, or on both.

The data: images shown for T steps, as graded input (as training encodes them) or rate coded,
or the user's streams (:mod:`snn2loihi.deploy.encoding`). Predictions follow the network's own
rule (:mod:`snn2loihi.readout`). Any network runs: on the per-sample clock, or on Lava's global
clock (a :class:`~snn2loihi.deploy.runner.GlobalClock`: input neurons, SDNN, delays,
recurrence). The emulator runs in batches, Lava in chunks; with both, every output spike and
the readout ``v`` are compared sample by sample.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from snn2loihi.deploy.encoding import RateEncoded
from snn2loihi.deploy.inputs import (
    as_network_images,
    check_input_budget,
    check_labels,
    check_values,
)
from snn2loihi.deploy.runner import Deadline, GlobalClock, Runner, RunResult
from snn2loihi.errors import InputDataError
from snn2loihi.readout import (
    COUNT_WINDOWS,
    SPIKE_COUNT,
    input_window_predictions,
    prediction_rule,
)
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
    """An evaluation of ``samples`` samples at ``steps`` steps; ``agreement`` (with both back
    ends): equal predictions, and whether every output spike and readout ``v`` is equal.
    ``encoding``: ``graded``, ``rate`` or ``stream``; ``clock``: the global clock's settings
    (None: the per-sample clock); ``count_window``: whose output steps a spike count counts
    (:data:`~snn2loihi.readout.COUNT_WINDOWS`)."""

    net: str
    samples: int
    steps: int
    rule: str
    scores: dict[str, BackendScore]
    agreement: dict | None = None
    encoding: str = "graded"
    clock: dict | None = None
    runs: dict[str, RunResult] = field(default_factory=dict, repr=False)  # not serialised
    count_window: str = "sample"

    def to_dict(self, with_predictions: bool = False) -> dict:
        out = asdict(dataclasses.replace(self, runs={}))
        out.pop("runs")
        if not with_predictions:
            for score in out["scores"].values():
                score.pop("predictions")
        return out


def check_images(images: np.ndarray, labels: np.ndarray, net: NetXNetwork, source: str) -> None:
    """Refuse images that do not fit the network and labels outside its classes."""
    shape = tuple(net.input_shape)
    if images.ndim != 1 + len(shape) or tuple(images.shape[1:]) != shape:
        raise InputDataError(
            f"{source}: images have shape {tuple(images.shape[1:])}, the network takes {shape}"
        )
    if images.dtype.kind not in "iu" or images.min(initial=0) < 0 or images.max(initial=0) > 255:
        raise InputDataError(f"{source}: images must be pixels 0..255 (dtype {images.dtype})")
    check_labels(labels, len(images), int(np.prod(net.output_shape)), source)


def accuracy(predictions, labels) -> tuple[int, float]:
    """``(correct, fraction)`` of ``predictions`` (N,) equal to ``labels`` (N,) (arrays or
    tensors; 0.0 for no samples)."""
    correct = int((np.asarray(predictions) == np.asarray(labels)).sum())
    return correct, correct / max(len(labels), 1)


def _steps_shown(net, images, encoding, steps, clock, chunk, name, data) -> tuple[int, int | None]:
    """``(T, shown)`` of a checked input: T from a stream's time axis (else ``steps``), checked
    against the global clock and the memory budget of one chunk; ``shown``: the steps the
    runner repeats an image for (None: a stream, or images as an input neuron's bias)."""
    time_axis = encoding != "graded"
    steps = int(images.shape[1]) if time_axis else steps
    if clock is not None and clock.steps != steps:
        raise InputDataError(
            f"{name}: the global clock runs {clock.steps} steps per sample, the input {steps}"
        )
    per_run = min(len(images), chunk)
    what = "images" if encoding != "stream" else "samples"
    check_input_budget(per_run, steps, tuple(net.input_shape), f"{data}: {per_run} {what}")
    shown = None if time_axis or (clock is not None and clock.drive == "bias") else steps
    return steps, shown


def evaluate_network(
    net: NetXNetwork,
    path: str | Path | None,
    images: np.ndarray | RateEncoded,
    labels: np.ndarray,
    steps: int,
    backend: str = "emulator",
    *,
    clock: GlobalClock | None = None,
    device: str = "cpu",
    batch_size: int = 256,
    lava_chunk: int = 100,
    timeout: float | None = None,
    progress: bool = False,
    data: str = "images",
    compiled: bool = False,
    name: str | None = None,
    traces: bool = False,
    count_window: str = "sample",
) -> Evaluation:
    """Evaluate ``net`` (the file ``path``) with ``labels`` (N,) on ``backend`` (emulator, lava
    or both). ``images``: uint8 pixels (N, *input_shape) shown as graded input at each of
    ``steps`` steps (an input neuron's bias on the global clock's ``bias`` drive), images rate
    coded (:class:`~snn2loihi.deploy.encoding.RateEncoded`), or streams (N, T, *input_shape) of
    spikes or 8-bit integers (``steps`` is then their T). ``clock``: Lava's global clock (None:
    the per-sample clock, for networks that run on it).

    ``progress``: a bar per back end (a logged line per chunk off a terminal); ``data`` names
    the images in errors. ``compiled``: the emulator's neurons as fused kernels (see
    :class:`~snn2loihi.deploy.emulator.Emulator`). ``path`` None: a network held only in
    memory (Lava gets it written into each run's own folder); ``name`` names it in errors.
    ``traces``: keep every layer's spikes in :attr:`Evaluation.runs` (for a parity table).
    """
    name = name or str(path)
    if backend not in EVAL_BACKENDS:
        raise InputDataError(f"--backend {backend}: choose from {', '.join(EVAL_BACKENDS)}")
    _check_count_window(count_window, net, clock, name)
    images, labels, encoding = _checked_input(net, images, labels, data)
    chunk = max(batch_size, lava_chunk if backend != "emulator" else 0)
    steps, shown = _steps_shown(net, images, encoding, steps, clock, chunk, name, data)
    classes = int(np.prod(net.output_shape))
    deadline = Deadline(timeout, name, "eval")
    runs: dict[str, RunResult] = {}
    for which in ("emulator", "lava") if backend == "both" else (backend,):
        runner = Runner(
            net, path, which, clock=clock, device=device, batch_size=batch_size,
            compiled=compiled, deadline=deadline, name=name, traces=traces,
        )  # fmt: skip
        size = batch_size if which == "emulator" else lava_chunk
        runs[which] = runner.run(images, shown, chunk=size, progress=progress, desc=which)
    if count_window == "input":
        runs = _counted_by_input(runs, net.num_synaptic_layers)
    scores = {which: _score(which, run, labels, classes) for which, run in runs.items()}
    agreement = _agreement(runs["emulator"], runs["lava"]) if backend == "both" else None
    rule = next(iter(runs.values())).rule
    settings = None if clock is None else clock.settings()
    return Evaluation(
        name, len(images), steps, rule, scores, agreement, encoding, settings, runs, count_window
    )


def _counted_by_input(runs: dict[str, RunResult], delay: int) -> dict[str, RunResult]:
    """Each run predicting by the output spikes of the input-aligned windows of one continuous
    stream (``--count-window input``; ``delay``: the pipeline's depth in steps)."""
    return {
        which: dataclasses.replace(run, predictions=input_window_predictions(run.spikes, delay))
        for which, run in runs.items()
    }


def _check_count_window(count_window: str, net: NetXNetwork, clock, name: str) -> None:
    """``input`` counts spikes over input-aligned windows of one continuous stream: only for a
    spike-count network on the per-sample clock (each sample a window of one stream)."""
    if count_window not in COUNT_WINDOWS:
        raise InputDataError(
            f"--count-window {count_window}: choose from {', '.join(COUNT_WINDOWS)}"
        )
    if count_window == "sample":
        return
    rule = prediction_rule(net)
    if rule != SPIKE_COUNT:
        raise InputDataError(
            f"{name}: --count-window input counts output spikes, but this network predicts by "
            f"rule '{rule}'"
        )
    if clock is not None:
        raise InputDataError(
            f"{name}: --count-window input needs the per-sample clock (one continuous stream); "
            "the global clock runs each sample on its own"
        )


def _checked_input(
    net: NetXNetwork, images: np.ndarray | RateEncoded, labels: np.ndarray, data: str
) -> tuple[np.ndarray | RateEncoded, np.ndarray, str]:
    """``(images, labels, encoding)`` checked against ``net``, images in the network's layout:
    ``encoding`` ``"rate"`` (:class:`~snn2loihi.deploy.encoding.RateEncoded`), ``"stream"``
    (N, T, *input_shape) or ``"graded"`` (pixels (N, *input_shape)); ``data`` names them."""
    if isinstance(images, RateEncoded):
        check_images(images.images, labels, net, data)
        return images, labels, "rate"
    shape = tuple(net.input_shape)
    images = as_network_images(images, shape)
    if images.ndim == 2 + len(shape):
        check_values(images, data)
        labels = check_labels(labels, len(images), int(np.prod(net.output_shape)), data)
        return images, labels, "stream"
    check_images(images, labels, net, data)
    return images, labels, "graded"


def _score(name: str, run: RunResult, labels: np.ndarray, classes: int) -> BackendScore:
    confusion = np.zeros((classes, classes), dtype=np.int64)
    np.add.at(confusion, (labels, run.predictions), 1)
    correct, fraction = accuracy(run.predictions, labels)
    spikes = sum(run.layer_spikes.values()) / max(len(labels), 1)
    pred = run.predictions.tolist()
    return BackendScore(name, fraction, correct, spikes, confusion.tolist(), pred)


def _agreement(emu: RunResult, lava: RunResult) -> dict:
    out = {
        "equal_predictions": int((emu.predictions == lava.predictions).sum()),
        "samples": len(emu.predictions),
        "output_spikes_equal": bool(np.array_equal(emu.spikes, lava.spikes)),
        "readout_v_equal": None,
    }
    if emu.v_last is not None:
        out["readout_v_equal"] = bool(np.array_equal(emu.v_last, lava.v_last))
    out["equal"] = out["equal_predictions"] == out["samples"] and out["output_spikes_equal"]
    out["equal"] = out["equal"] and out["readout_v_equal"] is not False
    return out
