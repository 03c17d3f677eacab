"""The pieces of the fast CIFAR recipe (configs/cifar_fast.toml): the one-cycle schedule, label
smoothing, data kept on the training device, and the ``cifar_fast`` architecture."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data.distributed import DistributedSampler
from train_helpers import calibrated_model, small_config

from snn2loihi.export.pipeline import deployable_network
from snn2loihi.schema import ConvLayer
from snn2loihi.train.checkpoint import load_checkpoint
from snn2loihi.train.config import resolve
from snn2loihi.train.data import ImageData, augment
from snn2loihi.train.epoch import epoch_batches
from snn2loihi.train.model import build_model
from snn2loihi.train.trainer import one_cycle_factor, steps_per_epoch, train

FAST = ["model.arch='custom'", "model.convs=['8', 's16']", "model.dense=[]"]
RECIPE = ["train.scheduler='onecycle'", "train.label_smoothing=0.1", "train.optimizer='sgd'"]
RECIPE += ["train.lr=0.05"]


def test_one_cycle_rises_to_one_then_falls_to_zero():
    total, warmup = 100, 0.2
    f = [one_cycle_factor(s, total, warmup) for s in range(total + 1)]
    assert f[0] == pytest.approx(1 / 20) and f[19] == 1.0 and max(f) == 1.0
    assert all(a < b for a, b in zip(f[:19], f[1:20], strict=True))  # rising
    assert all(a > b for a, b in zip(f[19:-1], f[20:], strict=True))  # falling
    assert f[-1] == 0.0 and f[-2] > 0.0
    assert one_cycle_factor(0, 1, 0.2) == 1.0  # a single step runs at the full rate
    assert one_cycle_factor(0, 10, 0.0) == 1.0  # no warm-up


@pytest.mark.parametrize("n, batch, world", [(100, 32, 1), (97, 32, 1), (65, 32, 1), (101, 8, 3)])
def test_steps_per_epoch_counts_the_batches_an_epoch_cuts(n, batch, world):
    data = ImageData(torch.zeros(n, 1, 2, 2, dtype=torch.uint8), torch.zeros(n, dtype=torch.int64))
    for rank in range(world):
        sampler = DistributedSampler(data, num_replicas=world, rank=rank, shuffle=True, seed=0)
        assert len(epoch_batches(sampler, batch)) == steps_per_epoch(n, batch, world)


def test_config_refuses_a_bad_schedule_and_smoothing():
    from snn2loihi.errors import ConfigError

    with pytest.raises(ConfigError, match="train.scheduler"):
        resolve(None, ["train.scheduler='linear'"])
    with pytest.raises(ConfigError, match="train.label_smoothing"):
        resolve(None, ["train.label_smoothing=1.5"])


def test_one_cycle_run_steps_per_batch_and_resumes_exactly(tmp_path):
    torch.set_num_threads(1)
    full = small_config(tmp_path / "a", *FAST, *RECIPE, "train.epochs=3")
    metrics = train(full)
    lrs = [h["lr"] for h in metrics["history"]]
    per_epoch = steps_per_epoch(1293, 64)  # digits: 1797 - 359 test - 145 validation
    total = 3 * per_epoch
    for epoch, lr in enumerate(lrs):  # logged: the rate after the epoch's last step
        step = (epoch + 1) * per_epoch
        assert lr == pytest.approx(0.05 * one_cycle_factor(step, total, 0.2))
    assert metrics["snn_acc"] > 0.5, metrics  # chance is 0.10
    state = load_checkpoint(tmp_path / "a" / "run" / "last.pt")
    assert state["scheduler"]["last_epoch"] == total

    cut = small_config(tmp_path / "b", *FAST, *RECIPE, "train.epochs=3")

    def interrupt(epoch, _metrics):
        if epoch == 0:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(cut, on_epoch_end=interrupt)
    train(cut, resume=tmp_path / "b" / "run" / "last.pt")
    a, b = state["model"], load_checkpoint(tmp_path / "b" / "run" / "last.pt")["model"]
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_data_on_device_trains_the_same_weights(tmp_path):
    torch.set_num_threads(1)
    common = [*FAST, *RECIPE, "train.epochs=1", "data.augment='on'", "data.crop_padding=1"]
    train(small_config(tmp_path / "a", *common))
    train(small_config(tmp_path / "b", *common, "data.on_device=true"))
    a = load_checkpoint(tmp_path / "a" / "run" / "last.pt")["model"]
    b = load_checkpoint(tmp_path / "b" / "run" / "last.pt")["model"]
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_label_smoothing_changes_the_loss_only():
    from snn2loihi.train.step import StepParams, train_step

    losses = []
    for smoothing in (0.0, 0.2):
        model = calibrated_model("digits", steps=2).train()  # logits far from uniform
        opt = torch.optim.SGD(model.parameters(), lr=0.0)
        params = StepParams.from_config(resolve(None, [f"train.label_smoothing={smoothing}"]))
        x = torch.randint(0, 256, (16, 1, 8, 8), generator=torch.Generator().manual_seed(0))
        y = torch.randint(0, 10, (16,), generator=torch.Generator().manual_seed(1))
        losses.append(train_step(model, model, opt, x.to(torch.uint8), y, params).loss)
    assert losses[0] != losses[1]


def test_augment_runs_where_the_batch_is_and_draws_from_the_cpu_generator():
    x = torch.randint(0, 256, (6, 3, 8, 8), dtype=torch.uint8)
    a = augment(x, torch.Generator().manual_seed(3), 2, True)
    b = augment(x.clone(), torch.Generator().manual_seed(3), 2, True)
    assert a.dtype == torch.uint8 and torch.equal(a, b) and not torch.equal(a, x)


def test_cifar_fast_is_a_deployable_stack_of_convs_and_a_readout():
    model = build_model("cifar_fast", (3, 32, 32), 10, mean=(0.5,) * 3, std=(0.25,) * 3,
                        steps=4, step_divisor=4)  # fmt: skip
    assert model.layer_shapes() == [
        (64, 32, 32), (128, 16, 16), (128, 16, 16), (256, 8, 8), (256, 8, 8), (512, 4, 4),
        (512,), (10,),
    ]  # fmt: skip
    assert [ly.pool for ly in model.layers[:6]] == [1, 2, 1, 2, 1, 2]
    net = deployable_network(model.eval(), 8, "cifar_fast")
    convs = [ly for ly in net.layers if isinstance(ly, ConvLayer)]
    assert [c.stride for c in convs] == [(1, 1), (2, 2), (1, 1), (2, 2), (1, 1), (2, 2)]
    assert [c.weight.shape[-1] for c in convs] == [3, 6, 3, 6, 3, 6]  # pools folded: 6x6 kernels
