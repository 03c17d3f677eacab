"""The export: checkpoint -> validated ``.net`` + report (+ optional ONNX), all atomic.

The integer network is training's own (:func:`snn2loihi.train.netx_model.to_netx`, on the
grid of :mod:`snn2loihi.quant`); export adds the headroom check, the report and the accuracy
of the written file on the emulator next to training's integer SNN branch.
"""

from __future__ import annotations

import logging
from pathlib import Path

from snn2loihi.export.errors import DataUnavailableError, NotDeployableError
from snn2loihi.schema import SUPPORTED_TYPES, NetXNetwork
from snn2loihi.validate import validate_network

log = logging.getLogger(__name__)


def check_deployable(net: NetXNetwork, source: str = "network") -> None:
    """Refuse layer types outside NetX's runnable set (conv, dense, flatten, input) and values
    outside Loihi's ranges (before the headroom check reads them)."""
    for i, ly in enumerate(net.layers):
        if ly.kind not in SUPPORTED_TYPES:
            raise NotDeployableError(
                f"{source}: layer {i} ({ly.kind}) cannot run on NetX; use "
                f"{', '.join(SUPPORTED_TYPES)} (fold pooling into a strided conv)"
            )
    validate_network(net, source)


def refuse_existing(paths: list[Path | None], force: bool) -> None:
    if force:
        return
    for p in paths:
        if p is not None and p.exists():
            raise FileExistsError(f"{p} exists (use --force to overwrite)")


def export_checkpoint(
    checkpoint: str | Path,
    out: str | Path | None = None,
    *,
    onnx: str | Path | None = None,
    force: bool = False,
    split: str = "val",
    samples: int | None = None,
    data_file: str | Path | None = None,
    accuracy: bool = True,
) -> dict:
    """Export ``checkpoint`` to ``out`` (NetX) and/or ``onnx``; return the report dict.

    With ``out``, ``<stem>.report.json``/``.md`` are written beside it. Without ``force`` an
    existing output raises :class:`FileExistsError` before anything is written. The accuracy
    check uses the checkpoint's ``[data]`` config (or ``data_file``); if that data cannot be
    loaded the report says why, unless ``data_file`` was given (then it is an error).
    """
    from snn2loihi.export.accuracy import compare_accuracy
    from snn2loihi.export.headroom import network_headroom
    from snn2loihi.export.layer_table import clipped_weights, layer_rows
    from snn2loihi.export.loader import load_model
    from snn2loihi.export.report import write_report
    from snn2loihi.netx_io import write_network
    from snn2loihi.train.checkpoint import checkpoint_config
    from snn2loihi.train.fold import integer_layers
    from snn2loihi.train.netx_model import to_netx

    out = None if out is None else Path(out)
    onnx = None if onnx is None else Path(onnx)
    refuse_existing([out, onnx], force)
    model, state = load_model(checkpoint)
    config = checkpoint_config(state)
    weight_bits = config.train.weight_bits
    report: dict = {"checkpoint": str(checkpoint), "net": None if out is None else str(out)}
    if onnx is not None:
        from snn2loihi.export.onnx_export import export_onnx

        export_onnx(model, onnx, overwrite=force)
        report["onnx"] = str(onnx)
    if out is None:
        return report
    net = to_netx(model, weight_bits)
    check_deployable(net, str(checkpoint))
    headroom = network_headroom(net, model.steps)
    warnings = [w for h in headroom for w in h.warnings]
    for w in warnings:
        log.warning("%s", w)
    scales = [ly.scale for ly in integer_layers(model, weight_bits)]
    data, skipped = None, "disabled (--no-accuracy)"
    if accuracy:  # load the data first: a bad --data file must not leave a half-done export
        data, skipped = _eval_data(model, config, split, samples, data_file)
    write_network(net, out, overwrite=force)
    report.update(
        steps=model.steps,
        weight_bits=weight_bits,
        input_shape=list(net.input_shape),
        output_shape=list(net.output_shape),
        layers=layer_rows(net, headroom, scales, clipped_weights(model, weight_bits)),
        warnings=warnings,
        accuracy=None,
    )
    if data is None:
        report["accuracy_skipped"] = skipped
    else:
        acc = compare_accuracy(out, model, data, weight_bits)
        source = str(data_file) if data_file is not None else config.data.dataset
        report["accuracy"] = {"split": split, "data": source, **acc}
    write_report(report, out)
    return report


def _eval_data(model, config, split, samples, data_file):
    """``(ImageData, None)`` for the accuracy check, or ``(None, reason)`` if unavailable."""
    from snn2loihi.export.accuracy import load_eval_data

    try:
        data = load_eval_data(config.data, split, data_file, samples)
    except DataUnavailableError as exc:
        if data_file is not None:
            raise
        log.warning("accuracy not measured: %s", exc)
        return None, str(exc)
    if tuple(data.x.shape[1:]) != tuple(model.input_shape):
        raise DataUnavailableError(
            f"data images have shape {tuple(data.x.shape[1:])}, the model expects {model.input_shape}"
        )
    return data, None
