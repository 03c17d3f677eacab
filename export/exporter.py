"""The export: checkpoint -> validated ``.net`` + report (+ optional ONNX), all atomic.

The integer network is training's own (:func:`snn2loihi.train.fold.integer_layers`, on the
grid of :mod:`snn2loihi.quant`); the checkpoint is loaded here and written by the one export
pipeline, :func:`snn2loihi.export.pipeline.write_deployable` (headroom, report, accuracy).
"""

from __future__ import annotations

import logging
from pathlib import Path

from snn2loihi.export.errors import DataUnavailableError

log = logging.getLogger(__name__)


def check_export_outputs(
    out: Path | None, inputs: dict, force: bool, onnx: Path | None = None, nir: Path | None = None
) -> None:
    """Refuse (before any work) outputs that are inputs, each other, folders, unwritable, or
    exist without ``force``: the ``.net``, its two report files and the ONNX file."""
    from snn2loihi.export.report import report_paths
    from snn2loihi.outputs import check_outputs

    outputs = {"--out": out, "--onnx": onnx, "--nir": nir}
    if out is not None:
        json_path, md_path = report_paths(out)
        outputs.update({"report": json_path, "report (markdown)": md_path})
    check_outputs(outputs, inputs, force=force)


def export_checkpoint(
    checkpoint: str | Path,
    out: str | Path | None = None,
    *,
    onnx: str | Path | None = None,
    nir: str | Path | None = None,
    force: bool = False,
    split: str = "val",
    samples: int | None = None,
    data_file: str | Path | None = None,
    accuracy: bool = True,
) -> dict:
    """Export ``checkpoint`` to ``out`` (NetX), ``onnx`` and/or ``nir``; return the report dict.

    With ``out``, ``<stem>.report.json``/``.md`` are written beside it. Without ``force`` an
    existing output raises :class:`~snn2loihi.errors.OutputPathError` before anything is written. The accuracy
    check uses the checkpoint's ``[data]`` config (or ``data_file``); if that data cannot be
    loaded the report says why, unless ``data_file`` was given (then it is an error).
    """
    from snn2loihi.export.loader import load_model
    from snn2loihi.export.pipeline import write_deployable
    from snn2loihi.train.checkpoint import checkpoint_config, checkpoint_input, data_inputs

    out = None if out is None else Path(out)
    onnx = None if onnx is None else Path(onnx)
    nir = None if nir is None else Path(nir)
    inputs = {**checkpoint_input(checkpoint), "--data": data_file}
    check_export_outputs(out, inputs, force, onnx, nir)
    model, state = load_model(checkpoint)
    config = checkpoint_config(state)
    if data_file is None and accuracy:  # the accuracy check reads the config's data files
        check_export_outputs(out, data_inputs(config.data), force, onnx, nir)
    weight_bits = config.train.weight_bits
    report: dict = {"checkpoint": str(checkpoint), "net": None if out is None else str(out)}
    report.update(_write_side_outputs(model, str(checkpoint), weight_bits, onnx, nir, force))
    if out is None:
        return report
    data, skipped = None, "disabled (--no-accuracy)"
    if accuracy:  # load the data first: a bad --data file must not leave a half-done export
        data, skipped = _eval_data(model, config, split, samples, data_file)
    if data is None:
        report["accuracy_skipped"] = skipped
    source = str(data_file) if data_file is not None else config.data.dataset
    return write_deployable(
        model,
        out,
        weight_bits=weight_bits,
        source=str(checkpoint),
        report=report,
        data=data,
        accuracy={"split": split, "data": source},
        force=force,
    )


def _write_side_outputs(
    model, checkpoint: str, weight_bits: int, onnx: Path | None, nir: Path | None, force: bool
) -> dict[str, str]:
    """Write the ANN branch as ONNX (``onnx``) and the deployed integer network as a float NIR
    graph (``nir``); returns the report's entries for the files written."""
    written = {}
    if onnx is not None:
        from snn2loihi.export.onnx_export import export_onnx

        export_onnx(model, onnx, overwrite=force)
        written["onnx"] = str(onnx)
    if nir is not None:
        from snn2loihi.export.nir_export import write_nir
        from snn2loihi.export.pipeline import deployable_network

        net = deployable_network(model, weight_bits, checkpoint)
        write_nir(net, nir, model.steps, overwrite=force, where=checkpoint)
        written["nir"] = str(nir)
    return written


def _eval_data(model, config, split, samples, data_file):
    """``(ImageData, None)`` for the accuracy check, or ``(None, reason)`` if unavailable."""
    from snn2loihi.export.accuracy import load_eval_data
    from snn2loihi.train.data import npz_image_shape

    header = None if data_file is None else npz_image_shape(data_file)
    if header is not None and header != tuple(model.input_shape):  # before decompressing
        raise DataUnavailableError(
            f"{data_file}: images have shape {header}, the model expects {model.input_shape}"
        )
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
