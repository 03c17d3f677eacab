"""The training run: wires steps (:mod:`.step`), epochs (:mod:`.epoch`), validation
(:mod:`.evaluate`), logs (:mod:`.run_log`) and checkpoints (:mod:`.checkpoint`).

Each epoch ends with an evaluation on the validation split and an atomic checkpoint
(``last.pt``, and ``best.pt`` by validation SNN accuracy) in ``output.dir``; every training-time
decision sees the validation split only. After the last epoch the selected model (``best.pt``)
is evaluated once on the test split (``test.json``). Rank 0 alone evaluates and writes under DDP.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.utils.data.distributed import DistributedSampler

from snn2loihi.atomic import atomic_path
from snn2loihi.errors import CheckpointError, ConfigError, InputDataError, TrainingDivergedError
from snn2loihi.train import distributed as D
from snn2loihi.train.checkpoint import (
    BEST,
    LAST,
    PRETRAINED,
    check_weights,
    checkpoint_config,
    load_checkpoint,
    save_epoch,
    state_dict_mismatch,
)
from snn2loihi.train.config import Config, TrainConfig
from snn2loihi.train.data import (
    ImageData,
    Splits,
    alternating_flips,
    augment,
    load_datasets,
    mean_pixel,
)
from snn2loihi.train.distill import restored_teacher, teacher_for_epoch
from snn2loihi.train.epoch import epoch_batches, run_epoch
from snn2loihi.train.evaluate import evaluate
from snn2loihi.train.factory import model_from_config
from snn2loihi.train.init_from import InitState, check_init_outputs, init_state
from snn2loihi.train.init_schemes import initialise
from snn2loihi.train.model import SpikingNet
from snn2loihi.train.noise import check_reachable_steps
from snn2loihi.train.run_folder import check_run_folder, hold_run_folder
from snn2loihi.train.run_log import RunLog
from snn2loihi.train.step import StepParams, cpu_bf16_supported
from snn2loihi.train.threshold_placement import place_thresholds, placement_sample

log = logging.getLogger(__name__)

TEST_FILE = "test.json"


def make_optimizer(model: torch.nn.Module, t: TrainConfig) -> torch.optim.Optimizer:
    """``train.optimizer``: sgd and adam apply ``weight_decay`` as L2 to every parameter; adamw
    decouples it (Loshchilov and Hutter) and decays only conv and dense weights, not BatchNorm
    or biases. sgd: BatchNorm's own rate and decay, :func:`_sgd_groups`."""
    if t.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=t.lr, weight_decay=t.weight_decay)
    if t.optimizer == "adamw":
        params = list(model.parameters())
        groups = [
            {"params": [p for p in params if p.ndim >= 2], "weight_decay": t.weight_decay},
            {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
        ]
        return torch.optim.AdamW(groups, lr=t.lr)
    return torch.optim.SGD(
        _sgd_groups(model, t),
        lr=t.lr,
        momentum=t.momentum,
        weight_decay=t.weight_decay,
        nesterov=t.nesterov,
    )


def _sgd_groups(model: torch.nn.Module, t: TrainConfig) -> list:
    """SGD's parameter groups: one, unless BatchNorm gets its own rate (``bn_bias_lr``: its
    biases at that multiple, their decay divided by it) or no decay (``bn_decay = false``)."""
    params = list(model.parameters())
    if t.bn_bias_lr == 1.0 and t.bn_decay:
        return [{"params": params}]
    norms = (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)
    bns = [m for m in model.modules() if isinstance(m, norms)]
    weights, biases = {id(m.weight) for m in bns}, {id(m.bias) for m in bns}
    decay = t.weight_decay if t.bn_decay else 0.0
    return [
        {"params": [p for p in params if id(p) not in weights | biases]},
        {"params": [p for p in params if id(p) in weights], "weight_decay": decay},
        {
            "params": [p for p in params if id(p) in biases],
            "lr": t.lr * t.bn_bias_lr,
            "weight_decay": decay / t.bn_bias_lr,
        },
    ]


def one_cycle_factor(step: int, total: int, warmup: float) -> float:
    """The one-cycle learning-rate factor after ``step`` of ``total`` optimizer steps: a linear
    rise to 1 over the first ``warmup`` fraction of the steps, then a linear fall to 0 at the end."""
    warm = min(max(1, round(total * warmup)), total)
    if step < warm:
        return (step + 1) / warm
    return max(0.0, (total - step) / (total - warm + 1))


def phase_factor(step: int, total: int, t: TrainConfig, per_epoch: int) -> float:
    """The learning-rate factor (of ``t.lr``) after ``step`` of ``total`` scheduler steps (one
    per epoch for cosine, ``per_epoch`` per epoch for onecycle). With ``t.snn_lr`` the epochs
    after ``t.pretrain_epochs`` run a schedule of their own peaking at ``t.snn_lr``."""
    shape = one_cycle_factor if t.scheduler == "onecycle" else _cosine_factor
    split = t.pretrain_epochs * per_epoch if t.snn_lr > 0 else 0
    if split == 0:
        return shape(step, total, t.warmup)
    if step < split:
        return shape(step, split, t.warmup)
    return t.snn_lr / t.lr * shape(step - split, total - split, t.snn_warmup)


def _cosine_factor(step: int, total: int, warmup: float) -> float:
    """Cosine annealing from 1 to 0 over ``total`` steps (``warmup`` unused: no warm-up)."""
    return 0.5 * (1 + math.cos(math.pi * min(step, total) / max(total, 1)))


def make_scheduler(optimizer: torch.optim.Optimizer, t: TrainConfig, steps_per_epoch: int = 1):
    """The ``train.scheduler``: cosine (stepped per epoch), onecycle (stepped per optimizer step,
    :func:`one_cycle_factor` over ``t.epochs * steps_per_epoch`` steps) or None; with
    ``train.snn_lr`` in two phases (:func:`phase_factor`)."""
    if t.scheduler == "cosine" and t.snn_lr == 0:
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=t.epochs)
    if t.scheduler in ("cosine", "onecycle"):
        per = steps_per_epoch if t.scheduler == "onecycle" else 1
        total = max(1, t.epochs * per)
        return torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: phase_factor(step, total, t, per)
        )
    return None


def steps_per_epoch(samples: int, batch_size: int, world: int = 1) -> int:
    """Optimizer steps per epoch and rank (as :func:`.epoch.epoch_batches` cuts them)."""
    per_rank = math.ceil(samples / world)
    full, rest = divmod(per_rank, batch_size)
    return full + (1 if rest >= 2 else 0)


def to_device(splits: Splits, device: torch.device) -> Splits:
    """``splits`` with every image and label tensor on ``device`` (``data.on_device``)."""

    def move(d: ImageData) -> ImageData:
        return ImageData(d.x.to(device), d.y.to(device))

    return Splits(move(splits.train), move(splits.val), move(splits.test), splits.num_classes)


@dataclass
class RunState:
    """What a run carries from epoch to epoch (``net``: ``model`` or its DDP wrapper)."""

    model: SpikingNet
    net: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: object
    meta: dict  # input shape, classes, normalization: rebuilds the model from a checkpoint
    start: int = 0
    best: float = -1.0  # best validation SNN accuracy so far
    history: list[dict] = field(default_factory=list)
    teacher: SpikingNet | None = None  # train.distill: the frozen ANN of the ANN phase


def build_run(config: Config, splits: Splits, device: torch.device, world: int, resume) -> RunState:
    """The seeded model, optimizer and scheduler; restored from ``resume`` if given, else
    started from the model of ``train.init_from`` if set (:mod:`.init_from`)."""
    state = load_checkpoint(resume) if resume is not None else None
    mean, std = splits.train.channel_stats()
    input_shape = tuple(splits.train.x.shape[1:])
    init = None
    if state is not None:
        check_resumed_init(config, state, resume)
    elif config.train.init_from:
        init = init_state(config, input_shape, splits.num_classes)
        mean, std = init.mean, init.std  # the normalization the checkpoint's layer 0 folds
    torch.manual_seed(config.train.seed)
    model = model_from_config(config, input_shape, splits.num_classes, mean, std)
    if state is None and init is None:
        initialise(model, splits.train.x, config.model.whiten, config.model.identity_init)
    model = model.to(device)
    if config.train.method == "noise":
        check_reachable_steps(model)
    if config.model.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = make_optimizer(model, config.train)
    meta = {"input_shape": list(input_shape), "num_classes": splits.num_classes}
    meta.update(mean=list(mean), std=list(std))
    per_epoch = steps_per_epoch(len(splits.train), config.train.batch_size, world)
    scheduler = make_scheduler(optimizer, config.train, per_epoch)
    run = RunState(model, model, optimizer, scheduler, meta)
    if init is not None:
        load_init(model, init)
    if state is not None:
        check_weights(state["model"], resume)
        try:
            model.load_state_dict(state["model"])
        except RuntimeError as exc:
            raise CheckpointError(
                f"--resume {resume}: the checkpoint's model does not fit this config's "
                f"({state_dict_mismatch(exc)})"
            ) from None
        place_resumed_thresholds(model, config, state, resume)
        run.teacher = restored_teacher(model, config, state, resume)
        restore_optimizer(optimizer, state, resume)
        if run.scheduler is not None and state["scheduler"]:
            run.scheduler.load_state_dict(state["scheduler"])
            if isinstance(run.scheduler, torch.optim.lr_scheduler.CosineAnnealingLR):
                # a resumed run may extend the schedule
                run.scheduler.T_max = config.train.epochs  # (onecycle: built for the new total)
        run.start = state["epoch"] + 1
        run.history = list(state["metrics"].get("history", []))
        run.best = max(
            (h["snn_acc"] for h in run.history if h["snn_acc"] is not None), default=-1.0
        )
        log.info("resumed from %s at epoch %d", resume, run.start)
    if world > 1:
        run.net = torch.nn.parallel.DistributedDataParallel(model)
    return run


def restore_optimizer(optimizer: torch.optim.Optimizer, state: dict, resume) -> None:
    """Load a resumed checkpoint's optimizer state; one of other parameter groups is refused."""
    theirs = len(state["optimizer"].get("param_groups", []))
    if theirs != len(optimizer.param_groups):
        raise CheckpointError(
            f"--resume {resume}: its optimizer has {theirs} parameter group(s), this config's "
            f"{len(optimizer.param_groups)} (train.bn_bias_lr / train.bn_decay differ from the "
            "run's; resume with its config.toml)"
        )
    optimizer.load_state_dict(state["optimizer"])


def check_resumed_init(config: Config, state: dict, resume) -> None:
    """A resumed run keeps the ``train.init_from`` it was started with (a record of where its
    weights came from); another value is refused."""
    theirs = state.get("config", {}).get("train", {}).get("init_from", "")
    if config.train.init_from != theirs:
        raise ConfigError(
            f"train.init_from = {config.train.init_from!r}: --resume {resume} continues a run "
            f"started from {theirs!r}; a resumed run keeps its weights, so --init-from (or "
            "train.init_from) cannot change"
        )


def place_resumed_thresholds(model: SpikingNet, config: Config, state: dict, resume) -> None:
    """Thresholds of a run resumed during (or at the end of) its ANN phase: those epochs train
    the ReLU branch alone, without ATA, so the checkpoint's thresholds are still its
    ``model.threshold``, and this config's ``model.threshold`` places them instead (how the SNN
    phase of ``pretrained.pt`` runs at another T with a threshold of its own: T = 1 puts the
    whole decision in one step). After that the thresholds are trained state (ATA), and another
    ``model.threshold`` is refused rather than ignored."""
    theirs = checkpoint_config(state, f"--resume {resume}: config")
    ours, before = config.model.threshold, theirs.model.threshold
    if ours == before:
        return
    if state["epoch"] >= theirs.train.pretrain_epochs:
        raise ConfigError(
            f"model.threshold = {ours}: --resume {resume} continues after epoch "
            f"{state['epoch'] + 1}, past its ANN phase ({theirs.train.pretrain_epochs} epochs), "
            f"so its thresholds (model.threshold = {before}, then ATA) are trained state; "
            f"resume with model.threshold = {before}, or from the run's {PRETRAINED} to place "
            "new ones"
        )
    for layer in model.spiking_layers:
        layer.thresholds.fill_(ours)
    log.info("--resume %s: thresholds placed at model.threshold = %s (%s in that run)",
             resume, ours, before)  # fmt: skip


def load_init(model: SpikingNet, init: InitState) -> None:
    """Load the checked ``train.init_from`` state into the fresh ``model``."""
    check_weights(init.model, init.path)
    try:
        model.load_state_dict(init.model)
    except RuntimeError as exc:
        raise CheckpointError(
            f"--init-from {init.path}: the checkpoint's model does not fit this config's "
            f"({state_dict_mismatch(exc)})"
        ) from None


def _eval_kwargs(config: Config, device: torch.device) -> dict:
    t = config.train
    return dict(
        device=device,
        batch_size=t.eval_batch_size,
        quantized=not t.float_snn,
        weight_bits=t.weight_bits,
        compile_neuron=t.compile_neuron,
    )


def seed_of_epoch(seed: int, epoch: int) -> int:
    """The seed of ``epoch``: ``seed * 100003 + epoch``, wrapped into torch's 0..2**63-1 (the
    same value wherever it fits, so earlier runs repeat)."""
    return (seed * 100_003 + epoch) % 2**63


def train_epoch(
    run: RunState,
    config: Config,
    splits: Splits,
    sampler,
    epoch: int,
    device,
    main: bool,
    fill: torch.Tensor | None = None,
):
    """Seed the epoch, shuffle, augment and train one epoch; returns :class:`EpochStats`.
    ``fill``: cutout's uint8 (C,) colour, the training mean (:func:`cutout_fill`)."""
    d, t = config.data, config.train
    epoch_seed = seed_of_epoch(t.seed, epoch)
    torch.manual_seed(epoch_seed)
    gen = torch.Generator().manual_seed(epoch_seed)
    sampler.set_epoch(epoch)
    transform = None
    if augmenting(d):
        flips = None  # the epoch's flip of every training image, drawn once
        if d.flip_mode == "alternate":
            flips = alternating_flips(len(splits.train), t.seed, epoch)

        def transform(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
            mask = None if flips is None else flips[idx.cpu()]
            return augment(x, gen, d.crop_padding, d.flip, d.cutout, fill, mask)

    per_step = run.scheduler if t.scheduler == "onecycle" else None
    return run_epoch(
        run.model,
        run.net,
        run.optimizer,
        splits.train,
        epoch_batches(sampler, t.batch_size),
        StepParams.from_config(config, ann_only=epoch < t.pretrain_epochs, teacher=run.teacher),
        device=device,
        transform=transform,
        after_step=None if per_step is None else per_step.step,
        desc=f"epoch {epoch + 1}/{t.epochs}",
        progress=main and config.output.progress,
    )


def augmenting(d) -> bool:
    """Whether training batches are augmented (``data.augment``; auto: CIFAR only)."""
    return d.augment == "on" or (d.augment == "auto" and d.dataset.startswith("cifar"))


def cutout_fill(config: Config, splits: Splits) -> torch.Tensor | None:
    """Cutout's colour, the training set's mean pixel, when cutout is on (once per run)."""
    d = config.data
    return mean_pixel(splits.train) if augmenting(d) and d.cutout else None


def validate_epoch(run: RunState, config: Config, val_data, epoch: int, stats, lr, t0, device):
    """Rank 0: the epoch's metrics with validation accuracies, appended to the history.

    An epoch of the ANN phase before its last validates the ANN branch only (``snn_acc`` None):
    the integer SNN's figure there is a zero-shot conversion of a network that is not trained
    for it yet, never selected (3% of a CIFAR-10 ANN epoch's time on the CPU)."""
    model = run.model
    snn = epoch >= config.train.pretrain_epochs - 1
    ev = evaluate(model, val_data, **_eval_kwargs(config, device), snn=snn)
    metrics = {
        "epoch": epoch,
        "lr": lr,
        "train_loss": stats.loss,
        "train_acc": stats.acc,
        **ev,
        "thresholds": [float(ly.thresholds.mean()) for ly in model.spiking_layers],
        "noisy_rate": stats.noisy,
        "epoch_s": time.perf_counter() - t0,
    }
    run.history.append(metrics)
    return metrics


def checkpoint_epoch(run: RunState, config: Config, metrics: dict) -> None:
    """Rank 0: ``last.pt``, ``best.pt`` when the validation SNN accuracy is a new best, and
    ``pretrained.pt`` after the last epoch of the ANN phase (``train.pretrain_epochs``)."""
    is_best = metrics["snn_acc"] is not None and metrics["snn_acc"] > run.best
    if is_best:
        run.best = metrics["snn_acc"]
    save_epoch(
        Path(config.output.dir),
        is_best=is_best,
        ends_pretraining=metrics["epoch"] == config.train.pretrain_epochs - 1,
        model=run.model,
        optimizer=run.optimizer,
        scheduler=run.scheduler,
        epoch=metrics["epoch"],
        config=config,
        metrics={**metrics, "history": run.history, "model": run.meta},
        teacher=run.teacher,
    )


def test_best(model: SpikingNet, config: Config, test_data, device) -> dict:
    """Evaluate the selected checkpoint (``best.pt``) once on the test split; write and return
    ``best_epoch`` and the ``test_*`` figures (``test.json`` in the run folder)."""
    out_dir = Path(config.output.dir)
    if not (out_dir / BEST).is_file():
        log.warning("no %s in %s: the test split is not evaluated", BEST, out_dir)
        return {}
    state = load_checkpoint(out_dir / BEST)
    best = copy.deepcopy(model)
    best.load_state_dict(state["model"])
    ev = evaluate(best, test_data, **_eval_kwargs(config, device))
    result = {
        "split": "test",
        "samples": len(test_data),
        "best_epoch": state["epoch"],
        "val_snn_acc": state["metrics"]["snn_acc"],
        **{f"test_{k}": v for k, v in ev.items()},
    }
    with atomic_path(out_dir / TEST_FILE) as tmp:
        tmp.write_text(json.dumps(result, indent=2) + "\n")
    log.info("test split (best epoch %d): snn %.4f", state["epoch"] + 1, ev["snn_acc"])
    return result


def check_bf16_cpu(t: TrainConfig, device: torch.device) -> None:
    """Refuse ``train.bf16_cpu`` where the CPU would emulate bf16 (slower than float32)."""
    if t.bf16_cpu and device.type == "cpu" and not cpu_bf16_supported():
        raise ConfigError(
            "train.bf16_cpu = true: this CPU has no native bf16 (AVX512-BF16 or AMX); "
            "set train.bf16_cpu=false"
        )


def train(
    config: Config,
    *,
    resume: str | Path | None = None,
    force: bool = False,
    on_epoch_end: Callable[[int, dict], None] | None = None,
) -> dict:
    """Train as ``config`` says; returns the last epoch's metrics (validation accuracies), the
    test figures of the selected model (``best_epoch``, ``test_snn_acc``, ...) and ``history``.

    ``resume``: a checkpoint (or its folder) to continue from; its model, thresholds, optimizer
    and scheduler states are restored and training continues at the next epoch (resumed within
    the ANN phase, the thresholds are placed at ``model.threshold``: :func:`place_resumed_thresholds`).
    ``on_epoch_end(epoch, metrics)`` is called after each epoch's checkpoint (rank 0).
    ``output.dir`` must not hold another run unless it is the one resumed, or ``force``
    (:mod:`.run_folder`); everything is checked before the folder is created.
    """
    t, out_dir = config.train, Path(config.output.dir)
    device = D.local_device(t.device)
    rank, world = D.init_distributed(device)
    main = D.is_main(rank)
    if main:
        check_run_folder(out_dir, resume=resume, force=force)
        if resume is None:
            check_init_outputs(config)
    if t.num_threads:
        torch.set_num_threads(t.num_threads)
    check_bf16_cpu(t, device)
    splits = load_datasets(config.data)
    run = build_run(config, splits, device, world, resume)
    if config.data.on_device:
        splits = to_device(splits, device)
    if run.start >= t.epochs:
        raise ConfigError(
            f"--resume {resume}: the checkpoint has finished {run.start} epochs; give --epochs "
            f"above {run.start} to train on"
        )
    held = hold_run_folder(out_dir, resume=resume, force=force) if main else nullcontext()
    with held:
        return _train_epochs(run, config, splits, device, rank, world, on_epoch_end)


def _non_finite_parameter(model) -> str | None:
    """The name of the first parameter or float buffer (BatchNorm statistics) holding NaN or
    inf, else None."""
    tensors = [*model.named_parameters(), *model.named_buffers()]
    return next((n for n, t in tensors if t.is_floating_point() and not t.isfinite().all()), None)


def _train_epochs(run: RunState, config: Config, splits: Splits, device, rank, world, on_end):
    """The epochs of :func:`train` from ``run.start``; then the test split on rank 0."""
    t, main = config.train, D.is_main(rank)
    sampler = DistributedSampler(
        splits.train, num_replicas=world, rank=rank, shuffle=True, seed=t.seed
    )
    out = Path(config.output.dir)
    logs = (
        RunLog(out, config.output.tensorboard, config.output.progress, t.epochs) if main else None
    )
    metrics: dict = {}
    fill = cutout_fill(config, splits)
    for epoch in range(run.start, t.epochs):
        t0 = time.perf_counter()
        if epoch == t.pretrain_epochs and config.model.threshold_placement == "mse":
            place_thresholds(run.model, placement_sample(splits.train.x).to(device))
        run.teacher = teacher_for_epoch(run.teacher, run.model, config, epoch)
        try:
            stats = train_epoch(run, config, splits, sampler, epoch, device, main, fill)
            loss = stats.loss
        except InputDataError as exc:  # the quantized branch refuses weights that overflowed
            raise TrainingDivergedError(
                f"epoch {epoch + 1}: the weights diverged ({exc}); training stopped and "
                f"{Path(config.output.dir) / LAST} keeps the last good epoch ({epoch}); lower "
                "train.lr or check the data"
            ) from None
        bad = _non_finite_parameter(run.model)
        if not math.isfinite(loss) or bad is not None:
            what = f"left parameter '{bad}' not finite" if bad else f"loss is {loss}"
            raise TrainingDivergedError(
                f"epoch {epoch + 1}: the training {what}; training stopped and "
                f"{Path(config.output.dir) / LAST} keeps the last good epoch ({epoch}); lower "
                "train.lr or check the data"
            )
        lr = run.optimizer.param_groups[0]["lr"]
        if run.scheduler is not None and t.scheduler == "cosine":
            run.scheduler.step()
        if main:
            metrics = validate_epoch(run, config, splits.val, epoch, stats, lr, t0, device)
            logs.epoch(metrics)
            checkpoint_epoch(run, config, metrics)
            if on_end is not None:
                on_end(epoch, metrics)
        D.barrier()
    if not main:
        return {**metrics, "history": run.history}
    logs.close()
    return {**metrics, **test_best(run.model, config, splits.test, device), "history": run.history}
