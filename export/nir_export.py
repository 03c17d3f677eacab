"""The deployed integer network as a NIR graph (``snn2loihi export --nir``).

Per conv/dense layer: ``Conv2d``/``Affine`` with the integer weights, then the neuron that
reproduces Loihi's CUBA step under forward Euler with step ``dt`` (snnTorch's convention):
IF (``iDecay=4096, vDecay=0``: ``r = 1/dt``), LIF (``iDecay=4096``: ``tau = 4096 dt / vDecay``,
``r = tau/dt``) or CubaLIF (``tau_syn = 4096 dt / iDecay``, ``w_in = tau_syn/dt``, bias as
``v_leak = bias * 4096 / vDecay``); the readout (``vThMant = 2^17-1`` on the last layer) as I or
LI. Thresholds are ``vThMant`` (all in mantissa units). The graph starts with ``Scale(255)``: its
input is ``pixel / 255``. A residual layer's shortcut is a ``Conv2d`` node from its source's
neuron node into the layer's neuron node (two edges into one node, summed). It is the float
description; the ``.net`` remains the exact one
(rounding toward zero of the decays and the 24-bit wrap are not expressible in NIR).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from snn2loihi.export.errors import NotDeployableError
from snn2loihi.loihi import DECAY_UNITY, VTH_MAX
from snn2loihi.schema import ConvLayer, CubaNeuron, DenseLayer, NetXNetwork

DT = 1e-4


def _neuron(nir, ly, k: int, last: bool, dt: float, where: str):
    n = ly.neuron
    if not isinstance(n, CubaNeuron):
        raise NotDeployableError(f"{where}: layer {k}: {n.kind} neurons have no NIR form")
    c = ly.shape[0] if isinstance(ly, ConvLayer) else ly.shape[0]
    full = lambda v: np.full(c, float(v))  # noqa: E731
    bias = np.zeros(c) if ly.bias is None else np.asarray(ly.bias, dtype=np.float64)
    readout = last and n.vth_mant == VTH_MAX
    th = full(n.vth_mant)
    if n.i_decay == DECAY_UNITY:
        if n.v_decay == 0:
            return (
                nir.I(r=full(1 / dt)) if readout else nir.IF(r=full(1 / dt), v_threshold=th)
            ), bias
        tau = full(DECAY_UNITY * dt / n.v_decay)
        r = tau / dt
        if readout:
            return nir.LI(tau=tau, r=r, v_leak=full(0)), bias
        return nir.LIF(tau=tau, r=r, v_leak=full(0), v_threshold=th, v_reset=full(0)), bias
    if n.i_decay == 0 or n.v_decay == 0:
        raise NotDeployableError(
            f"{where}: layer {k}: iDecay {n.i_decay} / vDecay {n.v_decay}: a current without "
            "decay, or one integrated without leak, has no NIR CubaLIF form (tau would be infinite)"
        )
    tau_syn, tau_mem = full(DECAY_UNITY * dt / n.i_decay), full(DECAY_UNITY * dt / n.v_decay)
    p = dict(
        tau_syn=tau_syn,
        tau_mem=tau_mem,
        r=tau_mem / dt,
        v_leak=bias * DECAY_UNITY / n.v_decay,
        w_in=tau_syn / dt,
    )
    if readout:
        return nir.CubaLI(**p), np.zeros(c)
    return nir.CubaLIF(**p, v_threshold=th, v_reset=full(0)), np.zeros(c)


def _conv(nir, syn, in_shape, bias: np.ndarray):
    """``nir.Conv2d`` of a conv layer or shortcut ``syn`` reading ``in_shape`` (C, H, W)."""
    return nir.Conv2d(
        input_shape=tuple(int(v) for v in in_shape[1:]),
        weight=np.asarray(syn.weight, dtype=np.float64),
        stride=tuple(syn.stride),
        padding=tuple(syn.padding),
        dilation=tuple(syn.dilation),
        groups=int(syn.groups),
        bias=bias,
    )


def network_to_nir(net: NetXNetwork, steps: int, dt: float = DT, where: str = "network"):
    """The NIR graph (``nir.NIRGraph``) of a plain snn2loihi network. A residual layer's
    shortcuts are ``Conv2d`` nodes from their source's neuron node into the layer's neuron node
    (two edges into one node: NIR sums them). NIR's edges do not delay, so the shortcut's
    ``delay`` (the layers it skips, on Lava's one-step synapses) is implied by the graph."""
    import nir

    if not net.plain:
        raise NotDeployableError(
            f"{where}: only plain CUBA networks (no input neuron, delays or recurrence) have a "
            "NIR form here"
        )
    shape = tuple(net.input_shape)
    nodes = {
        "input": nir.Input(input_type=np.array(shape)),
        "scale": nir.Scale(scale=np.full(shape, 255.0)),
    }
    edges = [("input", "scale")]
    prev = "scale"
    syn = net.synaptic_layers
    for j, (k, ly) in enumerate(syn):
        if isinstance(ly, DenseLayer) and len(shape) == 3:
            nodes[f"flatten{k}"] = nir.Flatten(
                input_type={"input": np.array(shape)}, start_dim=0, end_dim=-1
            )
            edges.append((prev, f"flatten{k}"))
            prev = f"flatten{k}"
        neuron, bias = _neuron(nir, ly, k, j == len(syn) - 1, dt, where)
        w = np.asarray(ly.weight, dtype=np.float64)
        if isinstance(ly, ConvLayer):
            nodes[f"conv{k}"] = _conv(nir, ly, shape, bias)
            name = f"conv{k}"
        else:
            nodes[f"affine{k}"] = nir.Affine(weight=w, bias=bias)
            name = f"affine{k}"
        nodes[f"neuron{k}"] = neuron
        edges += [(prev, name), (name, f"neuron{k}")]
        if isinstance(ly, ConvLayer):
            for s, sc in enumerate(ly.shortcuts):
                src = net.layers[sc.source].shape
                nodes[f"shortcut{k}_{s}"] = _conv(nir, sc, src, np.zeros(ly.shape[0]))
                edges += [
                    (f"neuron{sc.source}", f"shortcut{k}_{s}"),
                    (f"shortcut{k}_{s}", f"neuron{k}"),
                ]
        prev = f"neuron{k}"
        shape = tuple(ly.shape)
    nodes["output"] = nir.Output(output_type=np.array(shape))
    edges.append((prev, "output"))
    meta = {"snn2loihi_steps": int(steps), "snn2loihi_dt": float(dt), "snn2loihi_units": "mantissa"}
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=meta, type_check=False)


def write_nir(
    net: NetXNetwork,
    path: str | Path,
    steps: int,
    *,
    overwrite: bool = True,
    where: str = "network",
) -> Path:
    """Write ``net`` as a NIR file, atomically."""
    from snn2loihi.atomic import atomic_path

    try:
        import nir
    except ImportError:
        from snn2loihi.errors import Snn2LoihiError

        raise Snn2LoihiError(
            "--nir needs the 'nir' package (pip install 'snn2loihi[nir]')"
        ) from None
    graph = network_to_nir(net, steps, where=where)
    with atomic_path(path, overwrite=overwrite) as tmp:
        nir.write(tmp, graph)
    return Path(path)


__all__ = ["network_to_nir", "write_nir"]
