"""One optimisation step on a batch: SNN2ANN (or the BPTT baseline), then ATA.

Noise route: one noisy single step (:func:`snn2loihi.train.noise.noise_forward`).
SNN2ANN: the SNN branch runs T steps without gradients (integer Loihi neurons on the export's
integer grid, or float with ``train.float_snn``); the ANN branch runs once with its activations
replaced by the spike counts; the cross-entropy of its logits is back-propagated; ATA then raises
the thresholds of layers with too many noisy spikes. BPTT: the unrolled surrogate-gradient pass.

:func:`train_step` is a pure-ish step in the style of ``step(x, state, params)``: the mutable
state is the model and optimizer, everything else comes in an immutable :class:`StepParams`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from snn2loihi.train.ata import NoisyRateMeter, raise_thresholds
from snn2loihi.train.config import Config
from snn2loihi.train.distill import distillation_loss
from snn2loihi.train.mapping import mapping_unit
from snn2loihi.train.model import SpikingNet
from snn2loihi.train.snn_branch import run_snn


@dataclass(frozen=True)
class StepParams:
    """How a step runs: method, SNN branch options, mapping, ATA and precision options."""

    bptt: bool
    quantized: bool
    weight_bits: int
    compile_neuron: bool
    mapping: Callable
    dropout: float
    bptt_args: dict  # keyword arguments of bptt_forward (leak, alpha)
    ata_enabled: bool
    ata_tolerance: float
    ata_step: float
    ata_granularity: str
    channels_last: bool
    bf16: bool  # bf16 autocast of the ANN branch on CUDA
    label_smoothing: float = 0.0  # of the cross-entropy
    bf16_cpu: bool = False  # bf16 autocast of the ANN branch on CPUs with native bf16
    ann_only: bool = False  # ANN pre-training: ReLU activations, no SNN branch, no ATA
    noise_args: dict | None = None  # the noise route: keyword arguments of noise_forward
    teacher: torch.nn.Module | None = None  # train.distill: the frozen ANN (train/distill.py)
    distill: float = 0.0
    distill_temperature: float = 4.0

    @classmethod
    def from_config(
        cls, config: Config, *, ann_only: bool = False, teacher: torch.nn.Module | None = None
    ) -> StepParams:
        """The step of ``config``; ``ann_only``: an ANN pre-training epoch's step; ``teacher``:
        the ANN the step distills from (:func:`~snn2loihi.train.distill.teacher_for_epoch`)."""
        t, ata, b = config.train, config.ata, config.bptt
        return cls(
            bptt=t.method == "bptt",
            quantized=not t.float_snn,
            weight_bits=t.weight_bits,
            compile_neuron=t.compile_neuron,
            mapping=mapping_unit(t.mapping),
            dropout=t.dropout,
            bptt_args={"leak": 1.0 if b.neuron == "if" else b.leak, "alpha": b.alpha},
            ata_enabled=ata.enabled,
            ata_tolerance=ata.tolerance,
            ata_step=ata.step,
            ata_granularity=ata.granularity,
            channels_last=config.model.channels_last,
            bf16=t.bf16,
            label_smoothing=t.label_smoothing,
            bf16_cpu=t.bf16_cpu,
            ann_only=ann_only,
            noise_args=_noise_args(config) if t.method == "noise" else None,
            teacher=teacher,
            distill=t.distill,
            distill_temperature=t.distill_temperature,
        )


def _noise_args(config: Config) -> dict:
    n = config.noise
    return {"distribution": n.distribution, "mean": n.mean, "std": n.std, "alpha": n.alpha}


@dataclass
class StepResult:
    """Batch loss (mean cross-entropy), correct predictions of the ANN logits, and each spiking
    layer's noisy-spike rate (None when ATA did not run)."""

    loss: float
    correct: float
    noisy: list[float] | None


def cpu_bf16_supported() -> bool:
    """True when oneDNN runs bf16 natively on this CPU (AVX512-BF16 or AMX)."""
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def _autocast(device: torch.device, params: StepParams):
    """bf16 autocast of the differentiable pass (the SNN branch never runs under it: its
    integers are exact). CPU: only with ``bf16_cpu`` on a CPU with native bf16
    (:func:`cpu_bf16_supported`; the trainer refuses the setting elsewhere)."""
    if device.type == "cuda" and params.bf16:
        return torch.autocast("cuda", dtype=torch.bfloat16)
    if device.type == "cpu" and params.bf16_cpu:
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _float_input(x: torch.Tensor, params: StepParams) -> torch.Tensor:
    """The differentiable passes' input: uint8 images as float, channels-last if set."""
    xf = x.float()
    if params.channels_last and x.ndim == 4:
        xf = xf.contiguous(memory_format=torch.channels_last)
    return xf


def teacher_logits(x: torch.Tensor, params: StepParams) -> torch.Tensor:
    """The teacher's ReLU-ANN logits (B, classes) for uint8 images ``x``, without gradients."""
    with torch.no_grad(), _autocast(x.device, params):
        logits, _ = params.teacher(_float_input(x, params))
    return logits.float()


def forward_logits(
    model: SpikingNet, net: torch.nn.Module, x: torch.Tensor, params: StepParams
) -> tuple[torch.Tensor, list[torch.Tensor] | None]:
    """Training logits (B, classes) for uint8 images ``x`` (B, C, H, W); with SNN2ANN and ATA
    also each spiking layer's noisy-spike rate, measured as the ANN pass goes
    (:class:`~snn2loihi.train.ata.NoisyRateMeter`: the spike counts are let go layer by
    layer, not held to the end of the pass nor through backward). ``net`` is ``model`` or its
    DDP wrapper."""
    xf = _float_input(x, params)
    if params.ann_only:  # before the methods: pre-training epochs of every method
        with _autocast(x.device, params):
            logits, _ = net(xf)  # ReLU activations
        return logits, None
    if params.bptt:
        with _autocast(x.device, params):
            logits, _ = net(xf, bptt=params.bptt_args)
        return logits, None
    if params.noise_args is not None:
        with _autocast(x.device, params):
            logits, _ = net(xf, noise=params.noise_args)
        return logits, None
    counts = run_snn(
        model,
        x,
        quantized=params.quantized,
        weight_bits=params.weight_bits,
        compile_neuron=params.compile_neuron,
    ).counts
    meter = NoisyRateMeter(params.ata_granularity) if params.ata_enabled else None
    with _autocast(x.device, params):
        logits, _ = net(xf, counts, params.mapping, params.dropout, layer_hook=meter)
    return logits, None if meter is None else meter.rates


def train_step(
    model: SpikingNet,
    net: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    x: torch.Tensor,
    y: torch.Tensor,
    params: StepParams,
) -> StepResult:
    """One optimisation step on images ``x`` (B, C, H, W) uint8 and labels ``y`` (B,).

    ATA's noisy-spike rates are measured during the forward pass (:func:`forward_logits`);
    the thresholds rise after the optimizer step."""
    optimizer.zero_grad(set_to_none=True)  # the last step's gradients freed before the passes
    target = teacher_logits(x, params) if params.teacher is not None else None
    logits, rates = forward_logits(model, net, x, params)
    if target is None:
        loss = F.cross_entropy(logits.float(), y, label_smoothing=params.label_smoothing)
    else:
        loss = distillation_loss(
            logits.float(), target, y, weight=params.distill,
            temperature=params.distill_temperature, label_smoothing=params.label_smoothing,
        )  # fmt: skip
    loss.backward()
    optimizer.step()
    noisy = None
    if rates is not None:
        noisy = raise_thresholds(model, rates, tolerance=params.ata_tolerance, step=params.ata_step)
    return StepResult(float(loss.detach()), float((logits.argmax(1) == y).sum()), noisy)
