"""Distillation from the ANN phase (``train.distill``): the epochs after ``train.pretrain_epochs``
also learn from a frozen copy of the ANN that phase trained (the teacher).

Loss (Hinton et al., "Distilling the Knowledge in a Neural Network", arXiv 1503.02531):
``(1 - a) * CE(student, y) + a * tau^2 * KL(softmax(teacher / tau) || softmax(student / tau))``
with ``a = train.distill`` and ``tau = train.distill_temperature``; the student's logits are the
method's training logits (SNN2ANN: the ANN branch with the spike counts substituted), the
teacher's those of its ReLU ANN branch in eval mode (BatchNorm's running statistics) on the same
augmented batch. The teacher is the model as the ANN phase left it (``pretrained.pt``), kept in
every later checkpoint (``teacher``) so that a resumed run distills from the same network.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F

from snn2loihi.errors import ConfigError
from snn2loihi.train.checkpoint import TEACHER
from snn2loihi.train.config import Config
from snn2loihi.train.model import SpikingNet


def distillation_loss(
    student: torch.Tensor,
    teacher: torch.Tensor,
    y: torch.Tensor,
    *,
    weight: float,
    temperature: float,
    label_smoothing: float = 0.0,
) -> torch.Tensor:
    """The batch's mean loss for logits (B, classes) and labels (B,); ``weight`` 0 is the plain
    cross-entropy. The KL term is scaled by ``temperature^2`` so that its gradients keep their
    size as the temperature changes."""
    ce = F.cross_entropy(student, y, label_smoothing=label_smoothing)
    if weight == 0:
        return ce
    t = temperature
    kl = F.kl_div(
        F.log_softmax(student / t, dim=1), F.log_softmax(teacher / t, dim=1),
        reduction="batchmean", log_target=True,
    )  # fmt: skip
    return (1 - weight) * ce + weight * t * t * kl


def frozen_copy(model: SpikingNet) -> SpikingNet:
    """The teacher: a copy of ``model`` in eval mode without gradients."""
    teacher = copy.deepcopy(model).eval()
    teacher.requires_grad_(False)
    return teacher


def teacher_for_epoch(teacher: SpikingNet | None, model: SpikingNet, config: Config, epoch: int):
    """The teacher of ``epoch``: None before the ANN phase ends or without ``train.distill``;
    at the first epoch after the phase a frozen copy of ``model``; later the one kept."""
    t = config.train
    if t.distill == 0 or epoch < t.pretrain_epochs:
        return None
    return teacher if teacher is not None else frozen_copy(model)


def restored_teacher(model: SpikingNet, config: Config, state: dict, resume) -> SpikingNet | None:
    """The teacher of a run resumed from ``state`` (a loaded checkpoint, ``model`` already
    holding its weights): the checkpoint's own; None where the run resumes in its ANN phase or
    at its end (the teacher is made when the next epoch starts). Past the phase without a
    kept teacher (a run trained without ``train.distill``) the ANN is gone: refused."""
    if config.train.distill == 0:
        return None
    if TEACHER in state:
        teacher = frozen_copy(model)
        teacher.load_state_dict(state[TEACHER])
        return teacher
    if state["epoch"] + 1 > config.train.pretrain_epochs:
        raise ConfigError(
            f"train.distill = {config.train.distill}: --resume {resume} continues after epoch "
            f"{state['epoch'] + 1}, past the ANN phase ({config.train.pretrain_epochs} epochs), "
            "and holds no teacher (that run did not distill); resume from the run's "
            "pretrained.pt, or set train.distill = 0"
        )
    return None
