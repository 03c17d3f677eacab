"""Evaluation: ANN-branch accuracy, SNN accuracy (integer = deployed) and spikes per layer."""

from __future__ import annotations

import torch

from snn2loihi.train.data import ImageData
from snn2loihi.train.model import SpikingNet
from snn2loihi.train.snn_branch import run_snn


@torch.no_grad()
def evaluate(
    model: SpikingNet,
    data: ImageData,
    *,
    device: torch.device | str = "cpu",
    batch_size: int = 256,
    quantized: bool = True,
    weight_bits: int = 8,
    compile_neuron: bool = False,
    snn: bool = True,
) -> dict:
    """Accuracies on ``data`` and mean spikes per sample per spiking layer.

    ``ann_acc``: the ANN branch alone (eval-mode BN, ReLU activations). ``snn_acc``: the SNN
    branch (the integer network export writes, unless ``quantized=False``), predicted class =
    argmax of the accumulated readout current, first index on ties (as ``torch.argmax``).
    With ``snn=False`` the SNN branch is not run: ``snn_acc`` and ``spikes_total`` are None,
    ``spikes_per_layer`` empty.
    """
    was_training = model.training
    model.eval()
    correct_ann = correct_snn = 0
    spikes: list[float] | None = None
    n = len(data)
    for start in range(0, n, batch_size):
        x = data.x[start : start + batch_size].to(device)
        y = data.y[start : start + batch_size].to(device)
        logits, _ = model.ann_forward(x.float())
        correct_ann += int((logits.argmax(1) == y).sum())
        if not snn:
            continue
        out = run_snn(
            model, x, quantized=quantized, weight_bits=weight_bits, compile_neuron=compile_neuron
        )
        correct_snn += int((out.logits.argmax(1) == y).sum())
        per = [s * x.shape[0] for s in out.spikes_per_sample()]
        spikes = per if spikes is None else [a + b for a, b in zip(spikes, per, strict=True)]
    model.train(was_training)
    spikes = [s / n for s in (spikes or [])]
    return {
        "ann_acc": correct_ann / n,
        "snn_acc": correct_snn / n if snn else None,
        "spikes_per_layer": spikes,
        "spikes_total": sum(spikes) if snn else None,
    }
