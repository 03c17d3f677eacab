"""Per-layer figures of an export: shapes, integer grid (scale, vThMant), ranges, clipping."""

from __future__ import annotations

import torch

from snn2loihi import quant
from snn2loihi.export.headroom import LayerHeadroom
from snn2loihi.schema import ConvLayer, DenseLayer, NetXNetwork, RecurrentDenseLayer

COARSE_VTH_MANT = 64  # a threshold below 64 mantissa units: one weight unit is > 1/64 of it


@torch.no_grad()
def clipped_weights(model, weight_bits: int, layers) -> list[int]:
    """Per synaptic layer, how many weights ``round(w / s)`` fell outside ``weight_bits``.

    Recomputes the float per-step weights (BN and channel thresholds folded, as
    :func:`snn2loihi.train.fold.integer_layers` does) on the scales of its integer ``layers``.
    """
    from snn2loihi.train.fold import step_layers

    qmin, qmax = quant.weight_limits(weight_bits)
    out = []
    for sl, il in zip(step_layers(model), layers, strict=True):
        w = sl.weight.double()
        if not sl.readout:
            w, _, _ = quant.fold_channel_thresholds(w, sl.bias.double(), sl.thresholds.double())
        q = torch.round(w / il.scale)
        out.append(int(((q < qmin) | (q > qmax)).sum()))
    return out


def layer_rows(
    net: NetXNetwork,
    headroom: list[LayerHeadroom],
    scales: list[float] | None = None,
    clipped: list[int] | None = None,
) -> list[dict]:
    """One dict per NetX layer (input and flatten included), JSON-ready."""
    rows = []
    k = 0
    for i, ly in enumerate(net.layers):
        row: dict = {"layer": i, "type": ly.kind, "shape": list(ly.shape)}
        if isinstance(ly, ConvLayer | DenseLayer):
            row.update(
                weight_shape=list(ly.weight.shape),
                scale=None if scales is None else scales[k],
                vth_mant=ly.neuron.vth_mant,
                i_decay=ly.neuron.i_decay,
                v_decay=ly.neuron.v_decay,
                weight_min=int(ly.weight.min()),
                weight_max=int(ly.weight.max()),
                bias_min=None if ly.bias is None else int(ly.bias.min()),
                bias_max=None if ly.bias is None else int(ly.bias.max()),
                clipped_weights=None if clipped is None else clipped[k],
                headroom=headroom[k].to_dict(),
            )
            if isinstance(ly, ConvLayer):
                row.update(stride=list(ly.stride), padding=list(ly.padding))
            k += 1
        rows.append(row)
    return rows


def coarse_grid_layers(net: NetXNetwork, weight_bits: int) -> list[dict]:
    """The layers of ``net`` whose threshold mantissa is below :data:`COARSE_VTH_MANT`: their
    ``v`` moves in steps of at least 1/vThMant of the threshold, so small differences of the
    float network's currents vanish or grow into whole spikes. ``weights_set_scale``: the
    largest weight (recurrent and shortcut ones included) sits at the ``weight_bits`` limit, so more bits
    refine the grid; otherwise the bias or the bound on one step's input set the scale
    (``first``: the first synaptic layer, whose input bound counts graded inputs up to 255).
    ``[{"layer", "vth_mant", "weights_set_scale", "first"}]``."""
    _, qmax = quant.weight_limits(weight_bits)
    out = []
    for k, (i, ly) in enumerate(net.synaptic_layers):
        if ly.neuron.vth_mant >= COARSE_VTH_MANT:
            continue
        weights = [ly.weight]  # every synapse into the layer's neurons shares its scale
        if isinstance(ly, RecurrentDenseLayer) and ly.weight_rec is not None:
            weights.append(ly.weight_rec)
        if isinstance(ly, ConvLayer):
            weights += [sc.weight for sc in ly.shortcuts]
        w_max = max(int(abs(w).max()) for w in weights)
        out.append(
            {
                "layer": i,
                "vth_mant": ly.neuron.vth_mant,
                "weights_set_scale": w_max >= qmax,
                "first": k == 0,
            }
        )
    return out
