"""NIR graph -> NetX ``.net`` on the shared integer grid (``snn2loihi convert model.nir``).

The graph is read as untrusted input (:mod:`~snn2loihi.export.nir_read`) and lowered to float
layers in Loihi's form (:mod:`~snn2loihi.export.nir_lower`). Each layer goes onto the integer grid
of :mod:`snn2loihi.quant` (weights, bias, threshold; the readout with its no-spike budget), or,
when the graph already holds Loihi integers (snn2loihi's own ``export --nir``), kept exactly as
is, so export -> NIR -> convert gives back the same ``.net``. The records then go through the
export pipeline's tail (deployability, 24-bit headroom, atomic write, report); with calibration
data the report puts the float NIR reference, the float Loihi form and the emulator side by side.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from snn2loihi import quant
from snn2loihi.export.errors import DataUnavailableError, NotDeployableError
from snn2loihi.export.nir_reference import COUNT, MEMBRANE
from snn2loihi.loihi import (
    BIAS_MAX,
    BIAS_MIN,
    DECAY_UNITY,
    GRADED_INPUT_MAX,
    VTH_MAX,
    WEIGHT_MAX,
    WEIGHT_MIN,
)
from snn2loihi.netx_io import MAX_STEPS, read_network
from snn2loihi.schema import (
    ConvLayer,
    CubaNeuron,
    DenseLayer,
    FlattenLayer,
    InputLayer,
    NetXNetwork,
    RecurrentDenseLayer,
    Shortcut,
)

log = logging.getLogger(__name__)

META_PREFIX = "snn2loihi_"  # graph metadata written by export --nir
READOUTS = ("auto", COUNT, MEMBRANE)  # how the converted network predicts (convert --readout)
EXACT_TOL = 1e-6


def _decay(retention: float, what: str, name: str, changes: list[str]) -> int:
    d = DECAY_UNITY * (1.0 - retention)
    q = int(min(max(round(d), 0), DECAY_UNITY))
    if abs(d - q) > EXACT_TOL:
        changes.append(f"{name}: {what} {d:.6g}/4096 rounded to {q}/4096")
    return q


def _integers(a: np.ndarray, lo: int, hi: int) -> np.ndarray | None:
    r = np.round(a)
    if (
        np.all(np.abs(a - r) <= EXACT_TOL * np.maximum(1.0, np.abs(a)))
        and r.min(initial=0) >= lo
        and r.max(initial=0) <= hi
    ):
        return r.astype(np.int64)
    return None


def exact_layer(ly):
    """``(weight, bias, vth, weight_rec, shortcut_weights)`` when ``ly`` already is on Loihi's
    integer grid (scale 1), else None (``weight_rec`` None for a layer without recurrence;
    ``shortcut_weights`` one per shortcut)."""
    w = _integers(ly.weight, WEIGHT_MIN, WEIGHT_MAX)  # as Loihi holds them (9-bit)
    b = _integers(ly.bias, BIAS_MIN, BIAS_MAX)
    th = VTH_MAX if ly.threshold is None else _integers(ly.threshold[:1], 0, VTH_MAX)
    w_rec = None
    if ly.weight_rec is not None:
        w_rec = _integers(ly.weight_rec, WEIGHT_MIN, WEIGHT_MAX)
        if w_rec is None:
            return None
    w_sc = [_integers(sc.weight, WEIGHT_MIN, WEIGHT_MAX) for sc in ly.shortcuts]
    if w is None or b is None or th is None or any(q is None for q in w_sc):
        return None
    return w, b, int(np.asarray(th).reshape(-1)[0]), w_rec, w_sc


def _refuse_graded(x, calib) -> None:
    """``--spike-input`` with calibration data that hold more than spikes: exit 2 naming the
    file, the first value above 1 and its index."""
    from snn2loihi.errors import InputDataError

    x = np.asarray(x)
    above = np.argwhere(x > 1)
    if len(above):
        idx = tuple(int(i) for i in above[0])
        raise InputDataError(
            f"{calib}[x]: value {x[idx]} at index {list(idx)} is not a spike (0 or 1), but "
            "--spike-input was given: leave it out for graded inputs up to 255"
        )


def quantize_layer(
    ly, k: int, steps: int, weight_bits: int, spike_count: bool = False, spike_input: bool = False
):
    """``(weight, bias, vth, weight_rec, shortcut_weights, scale, clipped)`` of float Loihi-form
    layer ``ly`` on the grid. A recurrent layer's ``weight_rec`` and a residual layer's
    shortcut weights share the scale (all feed the same ``u``); the scale's input bound counts
    their columns as further inputs (spikes, 0 or 1).
    ``spike_count``: a spiking output layer, whose ``vThMant`` must stay below ``2^17 - 1``
    (that value marks a readout read by ``v``): the scale grows until it does. ``spike_input``:
    the first layer's inputs are spikes (0 or 1), not graded values up to 255."""
    w = torch.as_tensor(ly.weight, dtype=torch.float64)
    b = torch.as_tensor(ly.bias, dtype=torch.float64)
    w_rec = None if ly.weight_rec is None else torch.as_tensor(ly.weight_rec, dtype=torch.float64)
    w_sc = [torch.as_tensor(sc.weight, dtype=torch.float64) for sc in ly.shortcuts]
    extra = ([] if w_rec is None else [w_rec]) + [v.reshape(w.shape[0], -1) for v in w_sc]
    both = torch.cat([w.reshape(w.shape[0], -1), *extra], 1) if extra else w
    first_max = 1 if spike_input else GRADED_INPUT_MAX
    grid = dict(weight_bits=weight_bits, input_max=first_max if k == 0 else 1)
    if ly.threshold is None:
        scale = quant.choose_scale(both, b, readout_steps=steps, **grid)
        vth = VTH_MAX
    else:
        th = float(ly.threshold[0])
        scale = quant.choose_scale(both, b, threshold=th, **grid)
        if spike_count and quant.quantize_threshold(th, scale) >= VTH_MAX:
            scale = th / (VTH_MAX - 1)
        vth = quant.quantize_threshold(th, scale)
    qmin, qmax = quant.weight_limits(weight_bits)
    q = torch.round(both / scale)
    clipped = int(((q < qmin) | (q > qmax)).sum())
    qw = quant.quantize_weight(w, scale, weight_bits).numpy()
    qr = None if w_rec is None else quant.quantize_weight(w_rec, scale, weight_bits).numpy()
    qs = [quant.quantize_weight(v, scale, weight_bits).numpy() for v in w_sc]
    return qw, quant.quantize_bias(b, scale).numpy(), vth, qr, qs, scale, clipped


def _refuse_non_finite(lowered, dt: float, input_scale: float) -> None:
    """A ``--dt`` or ``--input-scale`` so large that the float layers overflow is refused
    (the integer grid would otherwise be cast from inf/NaN)."""
    from snn2loihi.errors import InputDataError

    for i, ly in enumerate(lowered.loihi):
        for name, value in vars(ly).items():
            if isinstance(value, np.ndarray) and value.dtype.kind == "f":
                if not np.isfinite(value).all():
                    raise InputDataError(
                        f"--dt {dt:g} and --input-scale {input_scale:g} make layer {i + 1} "
                        f"({ly.name}) '{name}' non-finite; give smaller values"
                    )


def readout_of(lowered, readout: str, path) -> str:
    """The rule the converted network predicts by: :data:`COUNT` (the last neuron node spikes:
    the most output spikes over T steps) or :data:`MEMBRANE` (a non-spiking readout node, I/LI/
    CubaLI, or ``readout='v'``: argmax of its ``v`` after the last step). ``readout``: ``auto``
    (by the last neuron node), ``count`` or ``v``; ``count`` on a non-spiking node is refused."""
    from snn2loihi.errors import InputDataError

    if readout not in READOUTS:
        raise InputDataError(f"--readout {readout!r} must be one of {', '.join(READOUTS)}")
    spiking = lowered.loihi[-1].threshold is not None
    if readout == COUNT and not spiking:
        raise InputDataError(
            f"{path}: --readout count: the last neuron node ({lowered.loihi[-1].name}) does not "
            "spike (I, LI or CubaLI); it is read by its v (drop --readout)"
        )
    return COUNT if spiking and readout != MEMBRANE else MEMBRANE


def integer_network(
    lowered,
    steps: int,
    weight_bits: int,
    changes: list[str],
    readout: str = MEMBRANE,
    spike_input: bool = False,
):
    """``(NetXNetwork, scales, clipped, exact)`` of the Loihi-form layers. ``readout``
    (:func:`readout_of`): :data:`MEMBRANE` makes a spiking last layer a non-spiking readout
    (``vThMant = 2^17 - 1``, within its no-spike budget); :data:`COUNT` keeps it spiking with a
    ``vThMant`` below ``2^17 - 1`` (the file's rule: :mod:`snn2loihi.readout`).
    ``spike_input``: :func:`quantize_layer`'s."""
    from snn2loihi.export.nir_lower import as_readout

    layers = list(lowered.loihi)
    if readout == MEMBRANE and layers[-1].threshold is not None:  # no longer the graph's integers
        layers[-1] = as_readout(layers[-1], changes)
        lowered.loihi[-1] = layers[-1]
        exact = [None]
    else:
        exact = [exact_layer(ly) for ly in layers]
    is_exact = all(e is not None for e in exact)
    records: list = [InputLayer(tuple(lowered.input_shape))]
    prev = tuple(lowered.input_shape)
    scales, clipped = [], []
    file_index: list[int] = []  # each layer's index in the file (a shortcut's source)
    for k, ly in enumerate(layers):
        if is_exact:
            w, b, vth, w_rec, w_sc = exact[k]
            scale, clip = 1.0, 0
        else:
            last = k == len(layers) - 1
            w, b, vth, w_rec, w_sc, scale, clip = _quantized_layer(
                ly, k, steps, weight_bits, last, spike_input
            )
        scales.append(scale)
        clipped.append(clip)
        neuron = CubaNeuron(
            i_decay=_decay(float(ly.a_u[0]), "current decay", ly.name, changes),
            v_decay=_decay(float(ly.a_v[0]), "voltage decay", ly.name, changes),
            vth_mant=vth,
        )
        records += _layer_records(
            ly, k, prev, (w, b, w_rec, w_sc), neuron, len(records), file_index
        )
        prev = tuple(ly.shape)
    net = NetXNetwork(layers=tuple(records), input_shape=tuple(lowered.input_shape))
    return net, scales, clipped, is_exact


def _quantized_layer(ly, k: int, steps: int, weight_bits: int, last: bool, spike_input: bool):
    """:func:`quantize_layer` of layer ``k`` (the ``last`` one: a spike-count output); a
    recurrent layer whose every input weight rounds to 0 is refused."""
    w, b, vth, w_rec, w_sc, scale, clip = quantize_layer(
        ly, k, steps, weight_bits, spike_count=last, spike_input=spike_input
    )
    if w_rec is not None and not np.any(w):
        raise NotDeployableError(
            f"nodes '{ly.name}': every input weight rounds to 0 on the scale it shares with the "
            f"recurrent weights (largest |w| {float(np.abs(ly.weight).max()):.3g}, "
            f"|w_rec| {float(np.abs(ly.weight_rec).max()):.3g}; a first layer's weights "
            "include the input scale 1/255)"
        )
    return w, b, vth, w_rec, w_sc, scale, clip


def _layer_records(ly, k: int, prev, integers, neuron, at: int, file_index: list[int]) -> list:
    """The records of float layer ``k`` (``integers``: weight, bias, weight_rec, shortcut
    weights) at index ``at`` of the file: a conv, or a dense or recurrent dense layer after a
    flatten when the previous layer's shape ``prev`` is (C, H, W). Appends the layer's index
    in the file to ``file_index``."""
    w, b, w_rec, w_sc = integers
    if ly.kind == "conv":
        file_index.append(at)
        return [
            ConvLayer(
                shape=tuple(ly.shape),
                weight=w,
                neuron=neuron,
                bias=b,
                stride=ly.stride,
                padding=ly.padding,
                dilation=ly.dilation,
                groups=ly.groups,
                shortcuts=_shortcut_records(ly, k, w_sc, file_index),
            )
        ]
    out: list = [FlattenLayer((math.prod(prev), 1, 1))] if len(prev) == 3 else []
    file_index.append(at + len(out))
    dense = dict(shape=tuple(ly.shape), weight=w, neuron=neuron, bias=b)
    if w_rec is None:
        return [*out, DenseLayer(**dense)]
    return [*out, RecurrentDenseLayer(**dense, weight_rec=w_rec)]


def _shortcut_records(ly, k: int, weights, file_index: list[int]) -> tuple[Shortcut, ...]:
    """The :class:`Shortcut` records of float layer ``k`` (integer ``weights``, one per
    shortcut). NIR sums a shortcut's spikes of the same step; on Lava every synapse of the
    chain delays by one step, so a shortcut from layer ``p`` waits ``k - p - 1`` steps more."""
    return tuple(
        Shortcut(
            source=file_index[sc.source],
            weight=q,
            delay=k - sc.source - 1,
            stride=sc.stride,
            padding=sc.padding,
            dilation=sc.dilation,
            groups=sc.groups,
        )
        for sc, q in zip(ly.shortcuts, weights, strict=True)
    )


def _metadata_number(meta: dict, name: str, path) -> float | None:
    """The graph's ``snn2loihi_<name>`` metadata: None if absent, else a finite number > 0
    (NaN, infinities, text and values <= 0 are refused, never replaced by the default)."""
    from snn2loihi.errors import InputDataError

    key = META_PREFIX + name
    if key not in meta:
        return None
    v = meta[key]
    if isinstance(v, str) or not (math.isfinite(v) and v > 0):
        raise InputDataError(f"{path}: graph metadata {key} = {v!r} must be a finite number > 0")
    if name == "steps" and v != int(v):
        raise InputDataError(f"{path}: graph metadata {key} = {v!r} must be an integer")
    return v


def convert_nir(
    nir_path: str | Path,
    out: str | Path,
    *,
    calib: str | Path | None = None,
    steps: int | None = None,
    weight_bits: int = 8,
    dt: float | None = None,
    dialect: str = "euler",
    input_scale: float | None = None,
    readout: str = "auto",
    spike_input: bool = False,
    force: bool = False,
) -> dict:
    """Convert the NIR file ``nir_path`` to ``out``; return the report (also written beside it).

    ``steps``: T (default: the graph's ``snn2loihi_steps`` metadata, else 16). ``dt``: the Euler
    step (default: the graph's ``snn2loihi_dt``, else 1e-4 (snnTorch's) or 1e-3 for
    ``dialect='norse'``). ``input_scale``: the graph's input is ``pixel * input_scale`` (default
    1/255). ``calib``: ``.npz`` for the accuracy comparison: images (x uint8 NHWC/NHW, y), or
    streams (x (N, T, *input shape) spikes or integers 0..255, frame t at step t; T: the
    default ``steps``). ``readout``:
    ``auto`` (a spiking last neuron node predicts by its spike count, a non-spiking one by its
    ``v``), ``count`` or ``v`` (read a spiking last layer by its membrane; :func:`readout_of`).
    ``spike_input``: the network's inputs are spikes (0 or 1 per step): the first layer's grid
    bounds one step's input for those instead of graded values up to 255 (a finer grid);
    calibration data with larger values are refused.
    """
    from snn2loihi.errors import InputDataError
    from snn2loihi.export.exporter import check_export_outputs
    from snn2loihi.export.nir_lower import DIALECTS
    from snn2loihi.export.nir_read import read_nir
    from snn2loihi.export.pipeline import check_deployable

    out = Path(out)
    check_export_outputs(out, {"NIR": nir_path, "--calib": calib}, force)
    if dialect not in DIALECTS:
        raise InputDataError(f"--dialect {dialect!r} must be one of {', '.join(DIALECTS)}")
    g = read_nir(nir_path)
    steps, dt, input_scale, steps_set = _time_settings(g, nir_path, steps, dt, dialect, input_scale)
    data, stream = _calibration(calib, g)
    if stream is not None and not steps_set:
        steps = min(stream[1], MAX_STEPS)  # the streams' own T
    image_shape = None if data is None else tuple(int(v) for v in data.x.shape[1:])
    image_shape = image_shape if stream is None else stream[2:]
    settings = _Settings(steps, dt, input_scale, weight_bits, dialect, readout, spike_input)
    grid = _integer_graph(g, nir_path, calib, image_shape, settings)
    check_deployable(grid.net, str(nir_path))
    if stream is not None:
        from snn2loihi.deploy.encoding import load_stream

        data = load_stream(calib, stream[2:], math.prod(grid.net.output_shape), steps)
    if spike_input and data is not None:
        _refuse_graded(data.x, calib)
    return _finish(nir_path, out, calib, data, grid, settings, force)


@dataclasses.dataclass(frozen=True)
class _Settings:
    """A conversion's options, resolved against the graph's metadata (:func:`convert_nir`): T
    ``steps``, the Euler step ``dt`` (s), ``input_scale`` (the graph's input per pixel), the
    ``readout`` option (auto, count or v)."""

    steps: int
    dt: float
    input_scale: float
    weight_bits: int
    dialect: str
    readout: str
    spike_input: bool


class _Grid(NamedTuple):
    """The graph on the integer grid: its float Loihi form ``lowered``, the network ``net``,
    its readout ``rule``, each layer's scale and clipped weights, and ``exact``: the graph's own
    integers were kept."""

    lowered: object
    net: NetXNetwork
    rule: str
    scales: list
    clipped: list
    exact: bool


def _time_settings(g, nir_path, steps, dt, dialect: str, input_scale):
    """``(steps, dt, input_scale, steps_set)``: each option, else the graph's metadata, else
    the default (:func:`convert_nir`), checked; ``steps_set``: T came from ``--steps`` or the
    metadata (else calibration streams give it)."""
    from snn2loihi.errors import InputDataError

    meta_steps = _metadata_number(g.metadata, "steps", nir_path)
    meta_dt = _metadata_number(g.metadata, "dt", nir_path)
    from_option = bool(steps)
    steps = int(steps or meta_steps or 16)
    dt = float(dt or meta_dt or (1e-3 if dialect == "norse" else 1e-4))
    input_scale = 1 / 255 if input_scale is None else float(input_scale)
    for name, v in (("--dt", dt), ("--input-scale", input_scale)):
        if not (math.isfinite(v) and v > 0):
            raise InputDataError(f"{name} {v} must be finite and > 0")
    if not 1 <= steps <= MAX_STEPS:  # the T the .net records
        what = (
            f"--steps {steps}"
            if from_option
            else f"graph metadata snn2loihi_steps = {meta_steps:g}"
        )
        raise InputDataError(f"{nir_path}: {what} must be in 1..{MAX_STEPS} (the T a .net records)")
    return steps, dt, input_scale, from_option or meta_steps is not None


def _calibration(calib, g):
    """``(images, stream header)`` of the calibration file ``calib`` (both None without one):
    a file of streams gives its header (:func:`~snn2loihi.deploy.encoding.stream_header`; its
    frames are loaded once the network is known), any other its images."""
    if calib is None:
        return None, None
    from snn2loihi.deploy.encoding import stream_header
    from snn2loihi.export.accuracy import load_eval_data
    from snn2loihi.export.nir_lower import graph_input_shape
    from snn2loihi.train.config import default_config

    stream = stream_header(calib, graph_input_shape(g) or ())
    if stream is not None:
        return None, stream
    return load_eval_data(default_config().data, "train", calib), None


def _integer_graph(g, nir_path, calib, image_shape, s: _Settings) -> _Grid:
    """Graph ``g`` lowered to Loihi's float form (images of ``image_shape`` fix a flatten's
    input) and put on the integer grid for T = ``s.steps``; every refusal names the file
    first (and ``calib`` after one about calibration images)."""
    from snn2loihi.export.nir_lower import lower

    try:
        with np.errstate(over="ignore", invalid="ignore"):  # checked just below
            lowered = lower(
                g, image_shape=image_shape, input_scale=s.input_scale, dt=s.dt, dialect=s.dialect
            )
        _refuse_non_finite(lowered, s.dt, s.input_scale)
        rule = readout_of(lowered, s.readout, nir_path)
        net, scales, clipped, exact = integer_network(
            lowered, s.steps, s.weight_bits, lowered.changes, rule, s.spike_input
        )
        net = dataclasses.replace(net, steps=s.steps)  # the T its integers were made for
    except NotDeployableError as exc:  # every refusal names the file first
        text = str(exc)
        if calib is not None and "calibration images" in text:
            text = f"{text} ({calib})"
        raise NotDeployableError(text if text.startswith(g.path) else f"{g.path}: {text}") from None
    return _Grid(lowered, net, rule, scales, clipped, exact)


def _finish(nir_path, out: Path, calib, data, grid: _Grid, s: _Settings, force: bool) -> dict:
    """The export pipeline's tail for the converted network (:func:`finish_deployable`), with
    the conversion's report and, given calibration ``data``, the side-by-side accuracy."""
    from snn2loihi.export.pipeline import finish_deployable

    net = grid.net
    report = {
        "nir": str(nir_path),
        "net": str(out),
        "calibration": None if calib is None else str(calib),
        "dialect": s.dialect,
        "dt": s.dt,
        "input_scale": s.input_scale,
        "integer_graph_kept": grid.exact,
        "readout": grid.rule,
        "spike_input": s.spike_input,
        "changes": grid.lowered.changes,
        # a recurrent network runs only on Lava's global clock (None: the per-sample clock)
        "global_clock": None if net.plain else global_clock(net, s.steps).settings(),
    }
    measure = None
    if data is not None:

        def measure(path):
            acc = nir_accuracy(path, grid.lowered, data, s.steps, str(calib), grid.rule)
            if acc["output_spikes_per_sample"] == 0:
                report["warnings"].append(silent_output_warning(path, acc["samples"]))
            return acc

    return finish_deployable(
        net,
        out,
        graded_input=not s.spike_input,
        steps=s.steps,
        weight_bits=s.weight_bits,
        report=report,
        scales=grid.scales,
        clipped=grid.clipped,
        measure=measure,
        force=force,
    )


def nir_accuracy(path, lowered, data, steps: int, source: str, rule: str = MEMBRANE) -> dict:
    """Float NIR reference, float Loihi form and emulator accuracy on ``data`` side by side,
    with their per-sample prediction agreement; the float models predict by ``rule``
    (:func:`readout_of`) as the ``.net`` does. ``data``: images (:class:`ImageData`, shown as
    graded input at every step) or :class:`~snn2loihi.deploy.encoding.Stream` (frame t at
    step t, the first ``steps`` steps)."""
    from snn2loihi.deploy.encoding import Stream
    from snn2loihi.deploy.evaluate import accuracy
    from snn2loihi.export.nir_reference import reference_predictions

    if len(data) == 0:
        raise DataUnavailableError(f"{source}: no calibration images")
    stream = isinstance(data, Stream)
    x = data.x[:, :steps] if stream else data.x
    labels = np.asarray(data.y)
    ref = np.asarray(reference_predictions(lowered.reference, x, steps, rule, stream=stream))
    flt = np.asarray(reference_predictions(lowered.loihi, x, steps, rule, stream=stream))
    if not stream:
        x = np.asarray(x).reshape(len(data), *lowered.input_shape)
    res, clock = emulator_result(path, x, steps, stream)
    emu = res.predictions
    out_spikes = int(np.count_nonzero(res.spikes)) if rule == COUNT else None
    return {
        "split": "calibration",
        "data": source,
        "input": f"streams, T = {data.steps}" if stream else "images (graded, every step)",
        "samples": len(data),
        "nir_reference_acc": accuracy(ref, labels)[1],
        "loihi_form_float_acc": accuracy(flt, labels)[1],
        "emulator_acc": accuracy(emu, labels)[1],
        "prediction_mismatches": int((emu != ref).sum()),
        "equal": bool((emu == ref).all()),
        # per-sample prediction agreement, pair by pair (share of the samples)
        "agreement": {
            "nir_reference_vs_loihi_form": float((ref == flt).mean()),
            "nir_reference_vs_emulator": float((ref == emu).mean()),
            "loihi_form_vs_emulator": float((flt == emu).mean()),
        },
        # spike-count readout: output spikes per sample on the emulator (None: read by v)
        "output_spikes_per_sample": None if out_spikes is None else out_spikes / len(data),
        # recurrence runs only on Lava's global clock: how the emulator figure was run
        "clock": "sample" if clock is None else clock.settings(),
    }


def emulator_result(path, x: np.ndarray, steps: int, stream: bool):
    """``(RunResult, clock)`` of the emulator on the ``.net`` ``path``: images ``x`` (N,
    *input_shape) shown for ``steps`` steps, or (``stream``) frames (N, steps, *input_shape).
    A network that runs only on the global clock runs on :func:`global_clock`: images for its
    steps, streams padded with zero frames for the pipeline's depth (clock None: the
    per-sample clock)."""
    from snn2loihi.export.accuracy import emulator_run

    net = read_network(path)
    clock = None if net.plain else global_clock(net, steps)
    if not stream:
        return emulator_run(path, x, steps if clock is None else clock.steps, clock), clock
    if clock is not None:
        pad = np.zeros((len(x), clock.steps - steps, *x.shape[2:]), x.dtype)
        x = np.concatenate([x, pad], 1)
    return emulator_run(path, x, None, clock), clock


def silent_output_warning(path, samples: int) -> str:
    """The warning for a spike-count readout that never spiked on the calibration data."""
    msg = (
        f"{path}: the output layer never spiked on the {samples} calibration samples, so "
        "every prediction is class 0 (spike-count readout); a network trained on its last "
        "layer's membrane converts with --readout v"
    )
    log.warning("%s", msg)
    return msg


def global_clock(net, steps: int):
    """How a network that runs only on Lava's global clock (recurrence) is evaluated: each image
    shown for ``steps + depth`` steps of one run (every synapse delays by one step), netx's
    ``reset_interval = steps + depth, reset_offset = 1`` resetting each layer when its first
    input arrives (as the per-sample clock does: no bias transient before), the readout's
    ``v >> 6`` after the last step (when it has integrated exactly ``steps`` steps) or a
    spiking output's spikes counted over the run: a
    :class:`~snn2loihi.deploy.runner.GlobalClock`."""
    from snn2loihi.deploy.runner import GlobalClock
    from snn2loihi.deploy.timeline import Timeline

    run = steps + net.num_synaptic_layers
    return GlobalClock("input", run, Timeline(run, 1))
