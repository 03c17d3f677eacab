"""ONNX ANN -> rate-coded IF SNN on training's integer grid -> NetX ``.net`` (``convert``).

Conversion (data-based threshold balancing): layer l's threshold is the ``percentile`` of its
positive ReLU activations on the calibration images, ``lam_l``. The network is rebuilt as a
:class:`~snn2loihi.train.model.SpikingNet` (BN folded, identity BN, step divisor T) with
per-step weights ``W_l * lam_(l-1) / T`` for l >= 1, so that a spike of layer l-1 stands for
``lam_(l-1)`` of activation and T steps of IF integrate the ANN pre-activation. Quantization,
NetX records and the accuracy check are then exactly export's: the one pipeline,
:func:`snn2loihi.export.pipeline.write_deployable`.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from snn2loihi.errors import InputDataError
from snn2loihi.export.errors import DataUnavailableError, NotDeployableError
from snn2loihi.export.onnx_import import OnnxNet

log = logging.getLogger(__name__)

MAX_PERCENTILE_SAMPLES = 2_000_000  # activations used per layer for the percentile


def _specs(net: OnnxNet) -> tuple[list, list[int]]:
    """``(ConvSpec per conv, hidden dense widths)`` of the chain; checks the activations."""
    from snn2loihi.train.model import ConvSpec

    convs, dense = [], []
    for i, ly in enumerate(net.layers):
        last = i == len(net.layers) - 1
        if ly.relu == last:
            what = "must not end with an activation" if last else "needs a ReLU after it"
            raise NotDeployableError(f"ONNX node '{ly.node}' (layer {i}, {ly.kind}): {what}")
        if ly.kind == "conv":
            spec = dict(stride=ly.stride, pool=ly.pool, kernel=ly.weight.shape[2])
            try:
                convs.append(ConvSpec(int(ly.weight.shape[0]), padding=ly.padding, **spec))
            except ValueError as exc:
                raise NotDeployableError(
                    f"ONNX node '{ly.node}' (layer {i}, conv): {exc}"
                ) from None
        elif not last:
            dense.append(int(ly.weight.shape[0]))
    if net.layers[-1].kind != "dense":
        raise NotDeployableError(
            f"ONNX node '{net.layers[-1].node}': the last layer must be Gemm/MatMul (readout)"
        )
    return convs, dense


def build_model(net: OnnxNet, input_shape: tuple[int, int, int], steps: int, mean, std):
    """A :class:`SpikingNet` holding the ONNX weights (thresholds still 1)."""
    from snn2loihi.train.model import ConvFitError
    from snn2loihi.train.model import build_model as build

    convs, dense = _specs(net)
    num_classes = int(net.layers[-1].weight.shape[0])
    try:
        model = build(
            "custom",
            input_shape,
            num_classes,
            convs=tuple(convs),
            dense=tuple(dense),
            mean=tuple(mean),
            std=tuple(std),
            steps=steps,
            step_divisor=steps,
        )
    except ConvFitError as exc:  # a conv that does not fit its input (size, folded pooling)
        node = [ly.node for ly in net.layers if ly.kind == "conv"][exc.index]
        raise NotDeployableError(f"ONNX node '{node}': {exc}") from None
    with torch.no_grad():
        for k, (layer, ly) in enumerate(zip(model.layers, net.layers, strict=True)):
            w = torch.as_tensor(ly.weight, dtype=torch.float32)
            if tuple(w.shape) != tuple(layer.weight.shape):
                raise NotDeployableError(
                    f"ONNX node '{ly.node}' (layer {k}): weight {tuple(w.shape)} does not fit "
                    f"the input it receives (expected {tuple(layer.weight.shape)})"
                )
            layer.weight.copy_(w)
            layer.bias.copy_(torch.as_tensor(ly.bias, dtype=torch.float32))
            if layer.spiking:  # BN already folded into the weights: identity BN
                layer.bn.weight.fill_(1.0)
                layer.bn.bias.zero_()
                layer.bn.running_mean.zero_()
                layer.bn.running_var.fill_(1.0 - layer.bn.eps)
    return model.eval()


def input_normalization(net: OnnxNet, channels: int, mean=None, std=None):
    """``(mean, std)`` for the model's folded input normalization (of ``pixel / 255``).

    The graph input is ``image = (pixel/255 - mean)/std`` (``--mean``/``--std``, default 0/1).
    A leading Mul/Add gives the first layer ``image * gain + offset``; without ``--mean/--std``
    it is taken to map the image back to pixels (snn2loihi's own ONNX export). Either way the
    first layer sees ``alpha * pixel + beta`` per channel, folded as mean ``-beta * sd`` and
    std ``sd = 1 / (255 alpha)``, so the chip's zero padding is pixel 0.
    """
    m = np.zeros(channels) if mean is None else np.asarray(mean, dtype=np.float64)
    sd = np.ones(channels) if std is None else np.asarray(std, dtype=np.float64)
    if net.gain is None:
        return tuple(m.tolist()), tuple(sd.tolist())
    if mean is None and std is None:
        return (0.0,) * channels, (1 / 255,) * channels
    offset = np.zeros(channels) if net.offset is None else net.offset
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):  # checked just below
        alpha = net.gain / (255.0 * sd)
        beta = offset - net.gain * m / sd
        new_sd = 1.0 / (255.0 * alpha)
        new_mean = -beta * new_sd
    if not (np.isfinite(new_mean).all() and np.isfinite(new_sd).all()):
        raise InputDataError(
            f"--mean {m.tolist()} and --std {sd.tolist()} with the graph's input affine give a "
            "non-finite input normalization; give smaller values"
        )
    return tuple(new_mean.tolist()), tuple(new_sd.tolist())


@torch.no_grad()
def balance_thresholds(model, net: OnnxNet, x: torch.Tensor, percentile: float) -> list[float]:
    """Set thresholds and rescale weights from activation percentiles on ``x`` (uint8 NCHW)."""
    acts: list[list[torch.Tensor]] = []
    for chunk in torch.split(x, 256):
        _, pre = model.ann_forward(chunk.float())
        acts.append([torch.relu(p) for p in pre])
    lams = []
    g = torch.Generator().manual_seed(0)
    for k in range(len(acts[0])):
        a = torch.cat([b[k].flatten() for b in acts])
        a = a[a > 0]
        if a.numel() > MAX_PERCENTILE_SAMPLES:
            a = a[torch.randperm(a.numel(), generator=g)[:MAX_PERCENTILE_SAMPLES]]
        lam = float(np.percentile(a.double().numpy(), percentile)) if a.numel() else 1.0
        cap = net.layers[k].clip_max
        lams.append(min(lam, cap) if cap else lam)
    steps = model.steps
    for k, layer in enumerate(model.layers):
        if k > 0:
            layer.weight.mul_(lams[k - 1] / steps)
        if layer.spiking:
            layer.thresholds.fill_(lams[k] / steps)
    return lams


@contextlib.contextmanager
def _naming(onnx_path: str | Path) -> Iterator[None]:
    """Refusals of the ONNX graph name the file (the node messages name only the node)."""
    try:
        yield
    except NotDeployableError as exc:
        if str(onnx_path) in str(exc):
            raise
        raise NotDeployableError(f"'{onnx_path}': {exc}") from None


def onnx_to_model(
    net: OnnxNet,
    data,
    *,
    steps: int,
    percentile: float,
    mean: tuple[float, ...] | None = None,
    std: tuple[float, ...] | None = None,
):
    """The converted :class:`SpikingNet` and the ANN's accuracy on ``data`` (before balancing).

    ``data``: :class:`ImageData` of calibration images; returns ``(model, ann_acc, lams)``.
    """
    shape = tuple(int(s) for s in data.x.shape[1:])
    c = shape[0]
    m, s = input_normalization(net, c, mean, std)
    model = build_model(net, shape, steps, m, s)
    with torch.no_grad():
        logits = torch.cat([model.ann_forward(b.float())[0] for b in torch.split(data.x, 256)])
    ann_acc = float((logits.argmax(1) == data.y).double().mean())
    lams = balance_thresholds(model, net, data.x, percentile)
    return model, ann_acc, lams


def check_options(percentile: float, mean, std, channels: int) -> None:
    """Refuse a percentile outside (0, 100] and ``--mean/--std`` that cannot normalize."""
    if not (np.isfinite(percentile) and 0 < percentile <= 100):
        raise InputDataError(f"--percentile {percentile} must be in (0, 100]")
    for name, values in (("--mean", mean), ("--std", std)):
        if values is None:
            continue
        if len(values) not in (1, channels):
            raise InputDataError(
                f"{name} {','.join(map(str, values))}: give one value per channel of the "
                f"calibration images ({channels}) or one for all"
            )
        for i, v in enumerate(values):
            if not np.isfinite(v) or (name == "--std" and v <= 0):
                rule = "finite and > 0" if name == "--std" else "finite"
                raise InputDataError(f"{name}[{i}] = {v} must be {rule}")


def _check_image_shape(net, shape: tuple[int, ...], calib, onnx_path) -> None:
    if len(net.input_shape) == 3 and all(net.input_shape) and net.input_shape != shape:
        raise DataUnavailableError(
            f"{calib}: images are {shape} (C, H, W), the ONNX input '{onnx_path}' is {net.input_shape}"
        )


def _calibration_images(net, calib, onnx_path, percentile, mean, std):
    """The calibration images of ``calib`` (.npz x uint8 (N, H, W[, C]), y) as eval data,
    checked against ``net``'s input and the options; the header's shape is checked before the
    images are decompressed. Streams (N, T, ...) are refused: they calibrate NIR graphs."""
    from snn2loihi.deploy.encoding import stream_header
    from snn2loihi.export.accuracy import load_eval_data
    from snn2loihi.train.config import default_config
    from snn2loihi.train.data import npz_image_shape

    stream = stream_header(calib, net.input_shape)
    if stream is not None:
        raise InputDataError(
            f"{calib}[x]: streams of shape {stream} (samples, steps, ...); converting ONNX "
            "balances thresholds on images (x (N, H, W[, C]) uint8); streams calibrate NIR graphs"
        )
    header_shape = npz_image_shape(calib)
    if header_shape is not None:
        check_options(percentile, mean, std, header_shape[0])
        _check_image_shape(net, header_shape, calib, onnx_path)
    data = load_eval_data(default_config().data, "train", calib)
    check_options(percentile, mean, std, int(data.x.shape[1]))
    _check_image_shape(net, tuple(int(v) for v in data.x.shape[1:]), calib, onnx_path)
    return data


def convert_onnx(
    onnx_path: str | Path,
    calib: str | Path,
    out: str | Path,
    *,
    steps: int = 16,
    percentile: float = 99.9,
    weight_bits: int = 8,
    mean: tuple[float, ...] | None = None,
    std: tuple[float, ...] | None = None,
    force: bool = False,
) -> dict:
    """Convert ``onnx_path`` with calibration images ``calib`` (.npz x, y) to ``out``; report."""
    from snn2loihi.export.exporter import check_export_outputs
    from snn2loihi.export.onnx_import import read_onnx
    from snn2loihi.export.pipeline import write_deployable
    from snn2loihi.netx_io import MAX_STEPS

    out = Path(out)
    if not 1 <= steps <= MAX_STEPS:  # as for NIR graphs: the T the .net records
        raise InputDataError(f"--steps {steps} must be in 1..{MAX_STEPS} (the T a .net records)")
    check_export_outputs(out, {"ONNX": onnx_path, "--calib": calib}, force)
    with _naming(onnx_path):
        net = read_onnx(onnx_path)
    data = _calibration_images(net, calib, onnx_path, percentile, mean, std)
    with _naming(onnx_path), np.errstate(over="ignore", invalid="ignore"):  # checked below
        model, ann_acc, lams = onnx_to_model(
            net, data, steps=steps, percentile=percentile, mean=mean, std=std
        )
    for name, p in model.state_dict().items():
        if p.is_floating_point() and not torch.isfinite(p).all():
            raise InputDataError(
                f"--mean {mean} and --std {std} make the folded network's '{name}' non-finite; "
                "give smaller values"
            )
    report = {
        "onnx": str(onnx_path),
        "net": str(out),
        "calibration": str(calib),
        "percentile": percentile,
        "activation_percentiles": lams,
    }
    return write_deployable(
        model,
        out,
        weight_bits=weight_bits,
        source=str(onnx_path),
        report=report,
        data=data,
        accuracy={"split": "calibration", "data": str(calib), "ann_acc": ann_acc},
        force=force,
    )
