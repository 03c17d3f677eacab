"""CUDA == CPU where training and deployment meet: the integer SNN branch, the emulator on graded
input through pooled (block) kernels, augmentation on the device, and a training run whose data
lives on the GPU. Skipped without a GPU; bench/device_run.sh runs every test marked ``cuda``."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from train_helpers import calibrated_model, small_config

from snn2loihi.deploy.emulator import Emulator
from snn2loihi.readout import readout_logits
from snn2loihi.train.checkpoint import load_checkpoint
from snn2loihi.train.config import resolve
from snn2loihi.train.data import augment, load_datasets
from snn2loihi.train.factory import model_from_checkpoint
from snn2loihi.train.netx_model import to_netx
from snn2loihi.train.snn_branch import run_snn
from snn2loihi.train.trainer import train

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]

CONVS = ("8", "16p2", "s16")  # a pooled (block) kernel and a strided conv


def _model():
    return calibrated_model("custom", convs=CONVS, dense=(24,), input_shape=(3, 16, 16), steps=4)


def _images(n: int = 12) -> torch.Tensor:
    g = torch.Generator().manual_seed(5)
    return torch.randint(0, 256, (n, 3, 16, 16), generator=g).to(torch.uint8)


def test_integer_snn_branch_on_cuda_equals_cpu():
    model, x = _model(), _images()
    cpu = run_snn(model, x, record=True)
    gpu = run_snn(model.to("cuda"), x.to("cuda"), record=True)
    for a, b in zip(cpu.spikes, gpu.spikes, strict=True):
        assert torch.equal(a, b.cpu())
    for a, b in zip(cpu.counts, gpu.counts, strict=True):
        assert torch.equal(a, b.cpu())
    assert torch.equal(cpu.readout_v.to(torch.int64), gpu.readout_v.cpu().to(torch.int64))
    assert torch.equal(cpu.logits, gpu.logits.cpu())


def test_emulator_on_cuda_equals_cpu_on_graded_input_and_pooled_kernels():
    net = to_netx(_model())
    x = _images().unsqueeze(1).expand(-1, 4, -1, -1, -1).numpy()
    cpu = Emulator(net).run(x, record_state=True)
    gpu = Emulator(net, device="cuda", batch_size=5).run(x, record_state=True)
    for a, b in zip(cpu.layers, gpu.layers, strict=True):
        for name in ("spikes", "u", "v"):
            assert torch.equal(getattr(a, name).cpu(), getattr(b, name).cpu()), name


def test_augment_on_cuda_gives_the_cpu_pixels():
    x = _images(16)
    a = augment(x, torch.Generator().manual_seed(7), 4, True)
    b = augment(x.to("cuda"), torch.Generator().manual_seed(7), 4, True)
    assert b.device.type == "cuda" and torch.equal(a, b.cpu())


def test_training_with_data_on_cuda_reports_the_emulated_accuracy(tmp_path):
    fast = ["model.arch='custom'", "model.convs=['8', '16p2']", "model.dense=[]"]
    recipe = ["train.scheduler='onecycle'", "train.label_smoothing=0.1", "train.bf16=true"]
    recipe += ["model.channels_last=true", "data.on_device=true", "train.device='cuda'"]
    cfg = small_config(tmp_path, *fast, *recipe, "train.epochs=2")
    metrics = train(cfg)
    assert metrics["snn_acc"] > 0.5, metrics  # chance is 0.10
    model = model_from_checkpoint(load_checkpoint(tmp_path / "run" / "best.pt"))
    test = load_datasets(resolve(tmp_path / "run" / "config.toml").data).test
    x = test.x.unsqueeze(1).expand(-1, cfg.train.steps, -1, -1, -1)
    res = Emulator(to_netx(model), device="cuda").run(x, record_state="last")
    pred = readout_logits(res.layers[-1].v[:, -1].cpu()).argmax(1)
    accuracy = int((pred == test.y).sum()) / len(test)
    assert accuracy == pytest.approx(metrics["test_snn_acc"], abs=1e-12)
    assert np.isfinite(metrics["train_loss"])
