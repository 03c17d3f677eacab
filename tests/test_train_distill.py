"""train.distill: the epochs after the ANN phase learn from that phase's frozen ANN as well."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from train_helpers import small_config

from snn2loihi.errors import ConfigError
from snn2loihi.train.checkpoint import load_checkpoint
from snn2loihi.train.config import resolve
from snn2loihi.train.distill import distillation_loss
from snn2loihi.train.trainer import train

FAST = ["model.arch='custom'", "model.convs=['8', 's16']", "model.dense=[]"]
PHASES = [*FAST, "train.pretrain_epochs=1", "train.scheduler='none'", "train.optimizer='sgd'"]
PHASES += ["train.lr=0.02"]


def test_distillation_loss_is_the_weighted_sum_of_cross_entropy_and_tempered_kl():
    student = torch.tensor([[2.0, 0.0, -1.0], [0.5, 0.5, 0.0]])
    teacher = torch.tensor([[1.0, 1.0, 0.0], [3.0, 0.0, 0.0]])
    y = torch.tensor([0, 2])
    ce = F.cross_entropy(student, y)
    assert distillation_loss(student, teacher, y, weight=0.0, temperature=4.0) == ce
    tau, kl = 2.0, 0.0
    for s, t in zip(student.tolist(), teacher.tolist(), strict=True):
        p = [math.exp(v / tau) for v in t]
        q = [math.exp(v / tau) for v in s]
        p, q = [v / sum(p) for v in p], [v / sum(q) for v in q]
        kl += sum(a * math.log(a / b) for a, b in zip(p, q, strict=True)) / 2
    got = distillation_loss(student, teacher, y, weight=0.25, temperature=tau)
    assert float(got) == pytest.approx(0.75 * float(ce) + 0.25 * tau * tau * kl, rel=1e-6)
    same = distillation_loss(student, student, y, weight=0.5, temperature=3.0)
    assert float(same) == pytest.approx(0.5 * float(ce), rel=1e-6)  # nothing left to learn


def test_distill_needs_an_ann_phase():
    with pytest.raises(ConfigError, match="train.distill = 0.5 needs train.pretrain_epochs > 0"):
        resolve(None, ["train.distill=0.5"])


def test_a_distilling_run_keeps_its_teacher_and_resumes_with_it(tmp_path):
    """The teacher is the ANN of pretrained.pt, frozen: every checkpoint after the ANN phase
    holds it, it changes the training (weights differ from train.distill = 0), and a run
    resumed past the phase distills from the kept teacher (the weights of the uninterrupted
    run). Resuming past the phase of a run that kept no teacher is refused."""
    torch.set_num_threads(1)
    args = [*PHASES, "train.distill=0.9", "train.distill_temperature=2.0"]
    train(small_config(tmp_path / "whole", *args, "train.epochs=3"))
    whole = tmp_path / "whole" / "run"
    pretrained, last = load_checkpoint(whole / "pretrained.pt"), load_checkpoint(whole / "last.pt")
    assert "teacher" not in pretrained
    for key, value in pretrained["model"].items():
        assert torch.equal(last["teacher"][key], value), key

    train(small_config(tmp_path / "part", *args, "train.epochs=2"))
    part = tmp_path / "part" / "run" / "last.pt"
    train(small_config(tmp_path / "rest", *args, "train.epochs=3"), resume=part)
    resumed = load_checkpoint(tmp_path / "rest" / "run" / "last.pt")["model"]
    for key, value in last["model"].items():
        assert torch.equal(resumed[key], value), key

    train(small_config(tmp_path / "plain", *PHASES, "train.epochs=2"))
    plain = load_checkpoint(tmp_path / "plain" / "run" / "last.pt")
    assert "teacher" not in plain
    distilled = load_checkpoint(part)["model"]
    assert not torch.equal(plain["model"]["layers.0.weight"], distilled["layers.0.weight"])
    with pytest.raises(ConfigError, match="holds no teacher"):
        train(
            small_config(tmp_path / "late", *args, "train.epochs=3"),
            resume=tmp_path / "plain" / "run" / "last.pt",
        )
