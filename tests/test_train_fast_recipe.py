"""The pieces of the fast CIFAR recipe (configs/cifar_fast.toml): the one-cycle schedule, label
smoothing, data kept on the training device, and the ``cifar_fast`` architecture."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data.distributed import DistributedSampler
from train_helpers import calibrated_model, small_config

from snn2loihi.errors import ConfigError
from snn2loihi.export.pipeline import deployable_network
from snn2loihi.schema import ConvLayer
from snn2loihi.train.checkpoint import load_checkpoint
from snn2loihi.train.config import resolve
from snn2loihi.train.data import ImageData, augment
from snn2loihi.train.epoch import epoch_batches
from snn2loihi.train.model import build_model
from snn2loihi.train.trainer import (
    make_optimizer,
    make_scheduler,
    one_cycle_factor,
    steps_per_epoch,
    train,
)

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


@pytest.mark.parametrize("scheduler", ["onecycle", "cosine"])
def test_snn_lr_gives_the_epochs_after_pretraining_a_schedule_of_their_own(scheduler):
    """train.snn_lr: the ANN pre-training epochs end at rate 0, then the SNN epochs restart at
    snn_lr (no warm-up by default) and fall to 0 again; Nesterov momentum reaches SGD."""
    t = resolve(None, [f"train.scheduler='{scheduler}'", "train.epochs=5", "train.lr=0.1"])
    t = resolve(
        None,
        [
            "train.pretrain_epochs=3",
            "train.snn_lr=0.01",
            "train.optimizer='sgd'",
            "train.nesterov=true",
        ],
        base=t,
    ).train
    per = 4 if scheduler == "onecycle" else 1
    model = torch.nn.Linear(2, 2)
    opt = make_optimizer(model, t)
    assert opt.param_groups[0]["nesterov"] is True
    sched = make_scheduler(opt, t, per)
    lrs = [opt.param_groups[0]["lr"]]
    for _ in range(5 * per):
        opt.step()
        sched.step()
        lrs.append(opt.param_groups[0]["lr"])
    split = 3 * per
    assert max(lrs[:split]) == pytest.approx(0.1) and lrs[split - 1] < 0.1 * 0.5
    assert lrs[split] == pytest.approx(0.01)  # the SNN phase starts at its own peak
    assert all(a >= b for a, b in zip(lrs[split:-1], lrs[split + 1 :], strict=True))
    assert lrs[-1] == pytest.approx(0.0, abs=1e-12)


def test_config_refuses_snn_lr_without_pretraining_and_nesterov_without_sgd():
    from snn2loihi.errors import ConfigError

    with pytest.raises(ConfigError, match="train.snn_lr = 0.01 needs train.pretrain_epochs"):
        resolve(None, ["train.snn_lr=0.01"])
    with pytest.raises(ConfigError, match="train.nesterov = true needs train.optimizer = 'sgd'"):
        resolve(None, ["train.nesterov=true", "train.optimizer='adam'"])
    with pytest.raises(ConfigError, match="train.nesterov = true needs train.momentum > 0"):
        resolve(None, ["train.nesterov=true", "train.optimizer='sgd'", "train.momentum=0"])


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


def test_cutout_sets_one_clipped_square_per_image_to_the_fill():
    x = torch.full((64, 3, 10, 10), 200, dtype=torch.uint8)
    fill = torch.tensor([1, 2, 3], dtype=torch.uint8)
    a = augment(x, torch.Generator().manual_seed(5), 0, False, cutout=4, fill=fill)
    assert torch.equal(a, augment(x, torch.Generator().manual_seed(5), 0, False, 4, fill))
    for img in a:
        cut = img[0] != 200
        rows, cols = cut.any(1).nonzero().flatten(), cut.any(0).nonzero().flatten()
        # one axis-aligned square of side 4, clipped by the border where its centre is near it
        assert torch.equal(cut, cut.any(1).view(-1, 1) & cut.any(0).view(1, -1))
        assert 2 <= len(rows) <= 4 and 2 <= len(cols) <= 4
        assert torch.equal(rows, torch.arange(rows[0], rows[-1] + 1))
        assert (len(rows) == 4 or rows[0] == 0 or rows[-1] == 9) and (
            len(cols) == 4 or cols[0] == 0 or cols[-1] == 9
        )
        for c in range(3):
            assert torch.equal(img[c][cut], torch.full((int(cut.sum()),), c + 1, dtype=torch.uint8))
            assert bool((img[c][~cut] == 200).all())
    clipped = [int((img[0] != 200).sum()) for img in a]
    assert min(clipped) < 16 and 16 in clipped  # some squares meet the border, some do not
    assert torch.equal(augment(x, torch.Generator(), 0, False, cutout=0), x)


def test_mean_pixel_is_the_rounded_channel_mean():
    from snn2loihi.train.data import mean_pixel

    x = torch.stack([torch.full((2, 2), v, dtype=torch.uint8) for v in (10, 101, 250)])
    data = ImageData(torch.stack([x, x.flip(0)]), torch.zeros(2, dtype=torch.int64))
    assert mean_pixel(data).tolist() == [130, 101, 130]  # (10 + 250) / 2, 101, (250 + 10) / 2


def test_adamw_decays_only_conv_and_dense_weights():
    from snn2loihi.train.trainer import make_optimizer

    model = calibrated_model("digits", steps=2)
    cfg = resolve(None, ["train.optimizer='adamw'", "train.weight_decay=0.5", "train.lr=0.1"])
    opt = make_optimizer(model, cfg.train)
    assert isinstance(opt, torch.optim.AdamW)
    decayed, kept = opt.param_groups
    assert decayed["weight_decay"] == 0.5 and kept["weight_decay"] == 0.0
    assert all(p.ndim >= 2 for p in decayed["params"]) and decayed["params"]
    assert all(p.ndim < 2 for p in kept["params"]) and kept["params"]
    assert len(decayed["params"]) + len(kept["params"]) == len(list(model.parameters()))
    before = [p.detach().clone() for p in model.parameters()]
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()  # zero gradients: only the decay moves, and only the weights
    for p, b in zip(model.parameters(), before, strict=True):
        assert torch.equal(p, b) == (p.ndim < 2), p.shape


def test_batchnorm_gets_its_own_rate_and_decay_in_sgd():
    """train.bn_bias_lr: BN biases at that multiple of the rate, the same decay per step;
    train.bn_decay = false: no decay on BN weights and biases; defaults: one group."""
    model = calibrated_model("digits", steps=2)
    sets = ["train.optimizer='sgd'", "train.weight_decay=0.5", "train.lr=0.1"]
    opt = make_optimizer(model, resolve(None, [*sets, "train.bn_bias_lr=8"]).train)
    rest, weights, biases = opt.param_groups
    bns = [m.bn for m in model.layers if m.bn is not None]
    assert [id(p) for p in biases["params"]] == [id(m.bias) for m in bns]
    assert [id(p) for p in weights["params"]] == [id(m.weight) for m in bns]
    assert biases["lr"] == pytest.approx(0.8) and rest["lr"] == weights["lr"] == 0.1
    assert biases["lr"] * biases["weight_decay"] == pytest.approx(0.1 * 0.5)
    assert rest["weight_decay"] == weights["weight_decay"] == 0.5
    assert len(rest["params"]) + 2 * len(bns) == len(list(model.parameters()))
    undecayed = make_optimizer(model, resolve(None, [*sets, "train.bn_decay=false"]).train)
    assert [g["weight_decay"] for g in undecayed.param_groups] == [0.5, 0.0, 0.0]
    assert len(make_optimizer(model, resolve(None, sets).train).param_groups) == 1
    with pytest.raises(ConfigError, match="train.bn_bias_lr = 8.0 needs train.optimizer = 'sgd'"):
        resolve(None, ["train.bn_bias_lr=8", "train.optimizer='adam'"])
    with pytest.raises(ConfigError, match="train.bn_decay = false needs train.optimizer = 'sgd'"):
        resolve(None, ["train.bn_decay=false", "train.optimizer='adamw'"])


def test_channels_last_parameters_give_the_exported_integers():
    """The recipe trains with channels_last parameters; export rebuilds the model contiguous.
    Both must fold to the same floats bit for bit (the input normalization's bias sum once
    followed the memory layout, and a CIFAR checkpoint's in-process test figure differed from
    its deployed one by 9 images), hence to the same integers."""
    from snn2loihi.train.fold import integer_layers, step_layers

    def make():
        torch.manual_seed(3)
        return build_model("cifar_fast_half", (3, 32, 32), 10, mean=(0.49, 0.48, 0.45),
                           std=(0.25, 0.24, 0.26), steps=4, step_divisor=4).eval()  # fmt: skip

    flat, cl = make(), make().to(memory_format=torch.channels_last)
    assert cl.layers[0].weight.is_contiguous(memory_format=torch.channels_last)
    for a, b in zip(step_layers(flat, compact=True), step_layers(cl, compact=True), strict=True):
        assert torch.equal(a.weight, b.weight) and torch.equal(a.bias, b.bias)
    for a, b in zip(integer_layers(flat), integer_layers(cl), strict=True):
        assert torch.equal(a.weight, b.weight) and torch.equal(a.bias, b.bias)
        assert a.scale == b.scale and a.neuron == b.neuron


def test_cutout_fill_is_the_training_mean_and_only_when_cutout_augments():
    from snn2loihi.train.data import load_datasets, mean_pixel
    from snn2loihi.train.trainer import cutout_fill

    on = resolve(None, ["data.augment='on'", "data.cutout=4"])
    splits = load_datasets(on.data)
    assert torch.equal(cutout_fill(on, splits), mean_pixel(splits.train))
    for overrides in (["data.cutout=4"], ["data.augment='on'"]):  # digits: auto is off
        cfg = resolve(None, overrides)
        assert cutout_fill(cfg, load_datasets(cfg.data)) is None


@pytest.mark.skipif(
    not torch.ops.mkldnn._is_mkldnn_bf16_supported(), reason="needs a CPU with native bf16"
)
def test_bf16_cpu_autocasts_the_ann_branch_only():
    """bf16 on the CPU changes the differentiable pass (loss, gradients) but not the integer
    SNN branch: the spike counts the ANN branch receives are the float32 run's."""
    from snn2loihi.train.snn_branch import run_snn
    from snn2loihi.train.step import StepParams, forward_logits

    model = calibrated_model("digits", steps=2).train()
    x = torch.randint(0, 256, (16, 1, 8, 8), generator=torch.Generator().manual_seed(0))
    x = x.to(torch.uint8)
    seen = {}
    for bf16 in (False, True):
        params = StepParams.from_config(resolve(None, [f"train.bf16_cpu={str(bf16).lower()}"]))
        logits, _ = forward_logits(model, model, x, params)
        seen[bf16] = logits
    assert seen[True].dtype == torch.bfloat16 and seen[False].dtype == torch.float32
    assert torch.allclose(seen[True].float(), seen[False], atol=0.1, rtol=0.05)
    counts = run_snn(model, x, quantized=True, weight_bits=8).counts
    with torch.autocast("cpu", dtype=torch.bfloat16):
        again = run_snn(model, x, quantized=True, weight_bits=8).counts
    assert all(torch.equal(a, b) for a, b in zip(counts, again, strict=True))


def test_bf16_cpu_is_refused_where_the_cpu_lacks_it(tmp_path, monkeypatch):
    from snn2loihi.errors import ConfigError
    from snn2loihi.train import trainer

    monkeypatch.setattr(trainer, "cpu_bf16_supported", lambda: False)
    config = small_config(tmp_path, *FAST, "train.bf16_cpu=true", "train.device='cpu'")
    with pytest.raises(ConfigError, match=r"train.bf16_cpu = true: this CPU has no native bf16"):
        train(config)
    assert not (tmp_path / "run").exists()


def test_bn_momentum_reaches_every_batchnorm_and_is_range_checked():
    from snn2loihi.errors import ConfigError
    from snn2loihi.train.factory import model_from_config

    cfg = resolve(None, ["model.bn_momentum=0.4"])
    model = model_from_config(cfg, (1, 8, 8), 10, (0.3,), (0.35,))
    assert [ly.bn.momentum for ly in model.spiking_layers] == [0.4] * len(model.spiking_layers)
    before = model.spiking_layers[0].bn.running_mean.clone()
    model.train()(torch.full((4, 1, 8, 8), 200.0))  # training batches move the statistics
    after = model.spiking_layers[0].bn.running_mean
    assert not torch.equal(before, after)
    default = model_from_config(resolve(None, []), (1, 8, 8), 10, (0.3,), (0.35,))
    assert {ly.bn.momentum for ly in default.spiking_layers} == {0.1}
    for bad in ("0", "1.5"):
        with pytest.raises(ConfigError, match="model.bn_momentum"):
            resolve(None, [f"model.bn_momentum={bad}"])


def test_ann_pretraining_epochs_run_no_snn_branch_then_snn2ann(tmp_path, monkeypatch):
    """train.pretrain_epochs: those epochs train the ReLU ANN (no SNN branch, thresholds
    untouched by ATA); the epochs after them are SNN2ANN from those weights."""
    from snn2loihi.errors import ConfigError
    from snn2loihi.train import step

    torch.set_num_threads(1)
    calls = []
    real = step.run_snn
    monkeypatch.setattr(step, "run_snn", lambda *a, **k: calls.append(1) or real(*a, **k))
    seen = {}

    def after(epoch, metrics):
        seen[epoch] = (len(calls), metrics["thresholds"])

    config = small_config(tmp_path, *FAST, "train.epochs=2", "train.pretrain_epochs=1")
    train(config, on_epoch_end=after)
    assert seen[0][0] == 0 and seen[1][0] == steps_per_epoch(1293, 64)
    assert seen[0][1] == [0.5, 0.5]  # no ATA while pre-training
    with pytest.raises(ConfigError, match="train.pretrain_epochs = 2 must be below"):
        resolve(None, ["train.epochs=2", "train.pretrain_epochs=2"])


def test_the_ann_phase_validates_its_snn_at_its_last_epoch_only(tmp_path):
    """ANN-phase epochs before the last validate the ANN branch alone (no integer SNN run:
    snn_acc None, an empty log.csv cell); the last ANN epoch and the SNN2ANN epochs validate
    both; best.pt is chosen among the SNN-validated epochs, and a resume reads that history."""
    import csv

    torch.set_num_threads(1)
    args = [*FAST, "train.epochs=3", "train.pretrain_epochs=2"]
    metrics = train(small_config(tmp_path / "a", *args))
    snn = [h["snn_acc"] for h in metrics["history"]]
    assert snn[0] is None and metrics["history"][0]["spikes_total"] is None
    assert all(isinstance(a, float) for a in snn[1:]), snn
    assert all(isinstance(h["ann_acc"], float) for h in metrics["history"])
    run = tmp_path / "a" / "run"
    with open(run / "log.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["snn_acc"] == "" for r in rows] == [True, False, False]
    assert rows[0]["spikes_per_layer"] == "" and rows[0]["ann_acc"] != ""
    assert load_checkpoint(run / "best.pt")["epoch"] in (1, 2)
    resumed = train(small_config(tmp_path / "b", *args), resume=run / "pretrained.pt")
    assert [h["snn_acc"] for h in resumed["history"]] == snn


def test_pretrained_pt_holds_the_ann_phase_to_resume_at_another_t(tmp_path):
    """pretrained.pt: the run at the end of its ANN phase. Resumed into another folder with the
    run's config it ends with exactly the whole run's weights; with another train.steps (and
    model.threshold: the thresholds are placed anew) it trains the SNN2ANN epochs at that T from
    the same ANN (one ANN phase, a sweep of T). Past the ANN phase a new threshold is refused."""
    torch.set_num_threads(1)
    args = [*FAST, *RECIPE, "train.epochs=2", "train.pretrain_epochs=1", "train.snn_lr=0.01"]
    train(small_config(tmp_path / "a", *args))
    whole = tmp_path / "a" / "run"
    assert load_checkpoint(whole / "pretrained.pt")["epoch"] == 0
    train(small_config(tmp_path / "b", *args), resume=whole / "pretrained.pt")
    a = load_checkpoint(whole / "last.pt")["model"]
    b = load_checkpoint(tmp_path / "b" / "run" / "last.pt")["model"]
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert not (tmp_path / "b" / "run" / "pretrained.pt").exists()  # its ANN phase was not run

    t1_args = [*args, "train.steps=1", "model.threshold=1.25", "ata.enabled=false"]
    metrics = train(small_config(tmp_path / "c", *t1_args), resume=whole / "pretrained.pt")
    t1 = load_checkpoint(tmp_path / "c" / "run" / "last.pt")
    assert t1["config"]["train"]["steps"] == 1
    assert [h["epoch"] for h in metrics["history"]] == [0, 1]
    assert metrics["thresholds"] == [1.25, 1.25]  # a's were 0.5
    assert not torch.equal(t1["model"]["layers.0.weight"], a["layers.0.weight"])
    with pytest.raises(ConfigError, match=r"model.threshold = 1.25: --resume .*past its ANN phase"):
        train(small_config(tmp_path / "d", *t1_args, "train.epochs=3"), resume=whole / "last.pt")
    assert not (tmp_path / "d" / "run").exists()
