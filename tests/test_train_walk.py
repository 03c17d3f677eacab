"""The training forwards share one layer walk (:meth:`SpikingNet.walk`).

Every route (the ANN branch with ReLU or with the SNN's counts, dropout and the ATA hook; the
noise route; BPTT with IF and LIF neurons) reproduces, bit for bit, the logits, per-layer
outputs, BatchNorm running statistics and one backward pass's gradients that the three
hand-written walks gave before the merge: :data:`MAIN_DIGESTS` are :func:`route_digest` run on
commit 5f68558 (CPU, float32, one thread). And in eval mode BPTT's unrolled pass and the noise
route's step at zero noise fire exactly the float SNN branch's spikes, on plain stacks and
through residual shortcuts.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from train_helpers import calibrated_model, digits_like_batch

from snn2loihi.loihi import DECAY_UNITY
from snn2loihi.train.bptt import bptt_forward
from snn2loihi.train.noise import noise_forward
from snn2loihi.train.snn_branch import run_snn

STACKS = {
    "plain": dict(arch="custom", convs=("8", "p16", "s16"), dense=(24,)),
    # identity shortcut (conv 0 -> conv 2), 1x1 stride-2 shortcut (conv 2 -> conv 4)
    "residual": dict(arch="custom", convs=("8", "8", "8r", "s16", "16r"), dense=(24,)),
    "dense": dict(arch="custom", convs=(), dense=(24, 16)),  # flattened at layer 0
}

# route -> (stack, method, keyword arguments); method "ann" runs SpikingNet.ann_forward with
# the SNN branch's counts where "counts" is set (and records each layer through the ATA hook
# where "hook" is set), "noise" noise_forward, "bptt" bptt_forward.
ROUTES = {
    "ann-plain": ("plain", "ann", {}),
    "ann-residual": ("residual", "ann", {}),
    "ann-dense": ("dense", "ann", {}),
    "ann-counts-plain": ("plain", "ann", {"counts": True}),
    "ann-counts-hook-residual": ("residual", "ann", {"counts": True, "hook": True}),
    "ann-counts-dropout-residual": ("residual", "ann", {"counts": True, "dropout": 0.2}),
    "ann-dropout-plain": ("plain", "ann", {"dropout": 0.2}),
    "noise-gaussian-plain": ("plain", "noise", {}),
    "noise-uniform-plain": ("plain", "noise", {"distribution": "uniform", "std": 0.5}),
    "noise-gaussian-dense": ("dense", "noise", {"mean": 0.25}),
    "bptt-if-plain": ("plain", "bptt", {}),
    "bptt-lif-plain": ("plain", "bptt", {"leak": 0.75, "alpha": 3.0}),
    "bptt-if-dense": ("dense", "bptt", {}),
}

# route_digest(route) on commit 5f68558, before the walk was merged
MAIN_DIGESTS = {
    "ann-plain": "662d77344beba039",
    "ann-residual": "75463ccf20156a70",
    "ann-dense": "ae788be3028e5ae2",
    "ann-counts-plain": "fa3208b9e93113e5",
    "ann-counts-hook-residual": "5faed3578b84609c",
    "ann-counts-dropout-residual": "e7d92ac101f5df27",
    "ann-dropout-plain": "f5fa9a40ee552a34",
    "noise-gaussian-plain": "6b82ae6142abd3b6",
    "noise-uniform-plain": "7de621533fa3bd9f",
    "noise-gaussian-dense": "5308f71605fc4449",
    "bptt-if-plain": "392cb497fb384b57",
    "bptt-lif-plain": "abd5e671583f2c02",
    "bptt-if-dense": "dce12432878a9002",
}


def seeded_model(stack: str, seed: int = 0, **kw):
    """:func:`calibrated_model` of ``STACKS[stack]``, initial weights from ``seed`` (eval mode)."""
    torch.manual_seed(seed)
    return calibrated_model(**STACKS[stack], **kw)


def _route_outputs(model, method: str, x: torch.Tensor, kw: dict):
    """``(logits, per-layer tensors)`` of one route in training mode."""
    if method == "noise":
        return noise_forward(model, x.float(), **kw)
    if method == "bptt":
        return bptt_forward(model, x.float(), **kw)
    counts = run_snn(model, x).counts if kw.get("counts") else None
    seen: list[torch.Tensor] = []

    def hook(k, a, counts_k):
        seen.extend([a.detach().clone(), counts_k.clone()])

    layer_hook = hook if kw.get("hook") else None
    logits, pre = model.ann_forward(
        x.float(), counts, dropout=kw.get("dropout", 0.0), layer_hook=layer_hook
    )
    return logits, pre + seen


def route_digest(route: str) -> str:
    """SHA-256 (first 16 hex digits) of a route's logits, per-layer outputs, BN running
    statistics after the pass, and every parameter's gradient of the cross-entropy, on a seeded
    calibrated model (T = 4) and 16 digits-like 8x8 images."""
    stack, method, kw = ROUTES[route]
    torch.set_num_threads(1)
    divisor = 4 if method == "ann" else 1  # SNN2ANN's step divisor, BPTT's and the noise route's
    model = seeded_model(stack, steps=4, step_divisor=divisor).train()
    x = digits_like_batch(16)
    y = torch.arange(16) % 10
    torch.manual_seed(5)
    logits, per_layer = _route_outputs(model, method, x, kw)
    F.cross_entropy(logits, y).backward()
    digest = hashlib.sha256()
    for t in [logits, *per_layer, *model.buffers()]:
        digest.update(t.detach().contiguous().numpy().tobytes())
    for name, p in model.named_parameters():
        digest.update(name.encode())
        digest.update(b"-" if p.grad is None else p.grad.contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def _recording_machine() -> bool:
    """The digests are float32 bits of one CPU kind and torch build (oneDNN picks kernels by
    ISA): an AMD EPYC with AVX-512 and torch 2.14.1, where they were recorded."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return (
        "model name\t: AMD EPYC\n" in info
        and " avx512f " in info
        and torch.__version__.startswith("2.14.1")
    )


@pytest.mark.skipif(
    not _recording_machine(), reason="digests recorded on AMD EPYC (AVX-512), torch 2.14.1"
)
@pytest.mark.parametrize("route", list(ROUTES))
def test_every_route_reproduces_the_separate_walks_bit_for_bit(route):
    assert route_digest(route) == MAIN_DIGESTS[route]


@pytest.mark.parametrize("stack", ["plain", "residual"])
@pytest.mark.parametrize("v_decay", [0, 1024], ids=["if", "lif"])
def test_bptt_forward_fires_the_float_snn_branch_spikes(stack, v_decay):
    torch.set_num_threads(1)
    model = seeded_model(stack, steps=4, step_divisor=1, v_decay=v_decay)
    x = digits_like_batch(16).float()
    with torch.no_grad():
        logits, counts = bptt_forward(model, x, leak=1 - v_decay / DECAY_UNITY)
    ref = run_snn(model, x, quantized=False)
    assert len(counts) == len(ref.counts)
    for k, (ours, theirs) in enumerate(zip(counts, ref.counts, strict=True)):
        assert torch.equal(ours, theirs), f"layer {k}"
        assert 0 < ours.sum() < 4 * ours.numel(), f"layer {k} must be mixed"
    torch.testing.assert_close(logits * 4, ref.logits)


@pytest.mark.parametrize("stack", ["plain", "residual"])
def test_noise_forward_without_noise_is_one_step_of_the_float_snn_branch(stack):
    torch.set_num_threads(1)
    model = seeded_model(stack, 1, steps=1, step_divisor=1)  # each layer fires at T = 1
    x = digits_like_batch(16).float()
    with torch.no_grad():
        logits, spikes = noise_forward(model, x, mean=0.0, std=0.0)
    ref = run_snn(model, x, quantized=False)
    for k, (ours, theirs) in enumerate(zip(spikes, ref.counts, strict=True)):
        assert torch.equal(ours, theirs), f"layer {k}"
        assert 0 < ours.sum() < ours.numel(), f"layer {k} must be mixed"
    torch.testing.assert_close(logits, ref.logits)
