"""Float simulation of NIR layers (:class:`~snn2loihi.export.nir_lower.FloatLayer`) on images.

The float reference of a converted graph: the NIR dynamics as written (dialect and ``dt``
applied), and the same simulator on the Loihi-form layers before quantization. Images (N, *shape)
are shown as graded input (raw pixels, the graph's input scale folded into layer 0) at every
step; streams (N, T, *shape) give step t its own frame (spikes or graded values).
Prediction by the converted network's rule (``convert --readout``): ``count``: the most spikes
of the last layer over the T steps; ``v``: argmax of its ``v`` after the last step (before its
reset if it spikes). Ties go to the first index, as in :mod:`snn2loihi.readout`.
A recurrent layer (``weight_rec``) adds ``W_rec . s(t - 1)`` of its own spikes to its input; a
residual layer (``shortcuts``) adds each shortcut's convolution of its source layer's spikes of
the same step (NIR's sum of the edges into one node).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _t(a) -> torch.Tensor:
    return torch.as_tensor(a, dtype=torch.float64)


COUNT, MEMBRANE = "count", "v"  # the readout rules (convert --readout count / v)


@torch.no_grad()
def reference_predictions(
    layers, x, steps: int, rule: str = MEMBRANE, *, stream: bool = False, batch_size: int = 256
) -> torch.Tensor:
    """Predicted classes (N,) of float ``layers`` by ``rule`` (``count`` or ``v``) for images
    ``x`` (N, *input_shape) shown at every step, or (``stream``) frames (N, T >= steps,
    *input_shape), frame t at step t."""
    if rule not in (COUNT, MEMBRANE):
        raise ValueError(f"unknown readout rule {rule!r} (choose {COUNT} or {MEMBRANE})")
    if rule == COUNT and layers[-1].threshold is None:
        raise ValueError(f"rule {COUNT}: the last layer ({layers[-1].name}) does not spike")
    preds = []
    for chunk in torch.split(torch.as_tensor(x), batch_size):
        v, counts = _run(layers, chunk.double(), steps, stream)
        preds.append((counts if rule == COUNT else v).argmax(1))
    return torch.cat(preds) if preds else torch.zeros(0, dtype=torch.long)


def _synapse(ly, s: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    if ly.kind == "conv":
        return F.conv2d(s, w, None, ly.stride, ly.padding, ly.dilation, ly.groups)
    return s.flatten(1) @ w.T


def _shortcuts(ly, spikes: list) -> torch.Tensor | float:
    """The sum of ``ly``'s shortcut synapses of this step's spikes (``spikes[k]``: layer k's)."""
    a = 0.0
    for sc in ly.shortcuts:
        a = a + F.conv2d(
            spikes[sc.source], _t(sc.weight), None, sc.stride, sc.padding, sc.dilation, sc.groups
        )
    return a


def _run(layers, x: torch.Tensor, steps: int, stream: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """The last layer's ``v`` after the last step (N, n) and its spike counts (N, n)."""
    if stream and x.shape[1] < steps:
        raise ValueError(f"a stream of {x.shape[1]} steps cannot run {steps} steps")
    state = []
    for ly in layers:
        view = (1, -1) + (1,) * (len(ly.shape) - 1)
        p = {k: _t(getattr(ly, k)).view(view) for k in ("bias", "a_u", "g_u", "a_v", "g_v", "c")}
        th = None if ly.threshold is None else _t(ly.threshold).view(view)
        reset = _t(ly.v_reset).view(view)
        # u, v and the layer's spikes of the previous step (its recurrent synapse's input)
        state.append((ly, _t(ly.weight), p, th, reset, [0.0, 0.0, 0.0]))
    out, counts = None, 0.0
    for t in range(steps):
        s = x[:, t] if stream else x
        spikes: list = []  # each layer's output of this step (a shortcut's input)
        for k, (ly, w, p, th, reset, uv) in enumerate(state):
            a = _synapse(ly, s, w) + _shortcuts(ly, spikes)
            if ly.weight_rec is not None and torch.is_tensor(uv[2]):  # no spikes before step 1
                a = a + uv[2] @ _t(ly.weight_rec).T
            if ly.bias_in_current:
                uv[0] = p["a_u"] * uv[0] + p["g_u"] * (a + p["bias"])
                uv[1] = p["a_v"] * uv[1] + p["g_v"] * uv[0] + p["c"]
            else:
                uv[0] = p["a_u"] * uv[0] + a
                uv[1] = p["a_v"] * uv[1] + uv[0] + p["bias"]
            v = uv[1]
            if k == len(state) - 1:
                out = v.flatten(1)
            if th is None:
                s = v
                spikes.append(s)
                continue
            fired = v > th
            uv[1] = torch.where(fired, reset.expand_as(v), v)
            s = uv[2] = fired.double()
            spikes.append(s)
            if k == len(state) - 1:
                counts = counts + s.flatten(1)
    return out, counts
