"""The one export pipeline: an integer model -> a validated ``.net`` with its report.

``export`` (checkpoint), ``convert`` (ONNX) and the demo all end here: integer layers (computed
once) -> NetX records -> deployability check -> 24-bit headroom -> atomic write -> accuracy of
the written file on the emulator next to training's integer SNN branch -> ``<stem>.report.*``.
"""

from __future__ import annotations

import logging
from pathlib import Path

from snn2loihi.export.errors import NotDeployableError
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


def deployable_network(model, weight_bits: int, source: str, layers=None) -> NetXNetwork:
    """The NetX records of ``model`` on its integer grid, checked deployable (nothing written).

    ``layers``: the model's :func:`~snn2loihi.train.fold.integer_layers`, if already computed.
    """
    from snn2loihi.train.fold import integer_layers
    from snn2loihi.train.netx_model import netx_records

    layers = integer_layers(model, weight_bits) if layers is None else layers
    net = netx_records(layers, model.input_shape, model.layer_shapes(), steps=model.steps)
    check_deployable(net, source)
    return net


def write_deployable(
    model,
    out: str | Path,
    *,
    weight_bits: int,
    source: str,
    report: dict,
    data=None,
    accuracy: dict | None = None,
    force: bool = False,
) -> dict:
    """Write ``model`` (a :class:`~snn2loihi.train.model.SpikingNet`) to ``out`` and its report.

    Args:
        weight_bits: the integer grid's weight width.
        source: the checkpoint or ONNX file, named in refusals.
        report: the report's leading fields (where the network came from); completed in place.
        data: :class:`~snn2loihi.train.data.ImageData` for the accuracy check, or None.
        accuracy: fields put before the measured accuracy (split, data source, ANN accuracy).
        force: overwrite an existing ``out`` (checked by the caller before any work).

    Returns the report dict, also written as ``<stem>.report.json``/``.md`` beside ``out``.
    """
    from snn2loihi.export.accuracy import compare_accuracy
    from snn2loihi.export.layer_table import clipped_weights
    from snn2loihi.train.fold import integer_layers

    layers = integer_layers(model, weight_bits)  # the one quantization of this export
    net = deployable_network(model, weight_bits, source, layers)

    def measure(path):
        return {**(accuracy or {}), **compare_accuracy(path, model, layers, data)}

    return finish_deployable(
        net,
        out,
        steps=model.steps,
        weight_bits=weight_bits,
        report=report,
        scales=[ly.scale for ly in layers],
        clipped=clipped_weights(model, weight_bits, layers),
        measure=None if data is None else measure,
        force=force,
    )


def finish_deployable(
    net: NetXNetwork,
    out: str | Path,
    *,
    steps: int,
    weight_bits: int,
    report: dict,
    scales: list[float] | None = None,
    clipped: list[int] | None = None,
    measure=None,
    force: bool = False,
    graded_input: bool = True,
) -> dict:
    """The shared tail of every export: headroom -> atomic write -> accuracy -> report.

    ``net`` is already checked deployable. ``measure(out)`` returns the report's accuracy
    dict (or None: not measured). ``graded_input``: the first layer's inputs reach 255 (False:
    spikes). Returns the report, also written beside ``out``.
    """
    from snn2loihi.export.headroom import network_headroom
    from snn2loihi.export.layer_table import coarse_grid_layers, layer_rows
    from snn2loihi.export.report import write_report
    from snn2loihi.netx_io import write_network
    from snn2loihi.readout import prediction_rule

    headroom = network_headroom(net, steps, graded_input=graded_input)
    warnings = [w for h in headroom for w in h.warnings]
    for w in warnings:
        log.warning("%s", w)
    write_network(net, out, overwrite=force)
    report.update(
        steps=steps,
        weight_bits=weight_bits,
        input_shape=list(net.input_shape),
        output_shape=list(net.output_shape),
        prediction=prediction_rule(net),  # derived from the file (snn2loihi.readout)
        layers=layer_rows(net, headroom, scales, clipped),
        warnings=warnings,
        accuracy=None,
    )
    report["coarse_grid"] = coarse_grid_layers(net, weight_bits)
    for c in report["coarse_grid"]:
        log.info("layer %d: vThMant %d is a coarse threshold grid", c["layer"], c["vth_mant"])
    if measure is not None:
        report["accuracy"] = measure(out)
    write_report(report, out)
    return report
