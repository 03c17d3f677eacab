"""The training loop: SNN2ANN (or the BPTT baseline), evaluation, logs and checkpoints.

One SNN2ANN iteration: the SNN branch runs T steps without gradients (integer Loihi neurons on
the export's integer grid, or float with ``train.float_snn``); the ANN branch runs once with its
activations replaced by the spike counts; the cross-entropy of its logits is back-propagated;
ATA then raises thresholds of layers with too many noisy spikes. Each epoch ends with an
evaluation on the test split and an atomic checkpoint (``last.pt``, and ``best.pt`` by SNN
accuracy) in ``output.dir``; rank 0 alone writes under DDP.
"""

from __future__ import annotations

import contextlib
import csv
import logging
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data.distributed import DistributedSampler
from tqdm import tqdm

from snn2loihi.train import distributed as D
from snn2loihi.train.ata import adjust_thresholds
from snn2loihi.train.checkpoint import BEST, LAST, load_checkpoint, save_checkpoint
from snn2loihi.train.data import ImageData, augment, load_datasets
from snn2loihi.train.evaluate import evaluate
from snn2loihi.train.factory import model_from_config
from snn2loihi.train.mapping import mapping_unit
from snn2loihi.train.snn_branch import run_snn

log = logging.getLogger(__name__)

CSV_FIELDS = (
    "epoch",
    "lr",
    "train_loss",
    "train_acc",
    "ann_acc",
    "snn_acc",
    "spikes_total",
    "spikes_per_layer",
    "thresholds",
    "noisy_rate",
    "epoch_s",
)


def _optimizer(model, t: dict):
    if t["optimizer"] == "adam":
        return torch.optim.Adam(model.parameters(), lr=t["lr"], weight_decay=t["weight_decay"])
    return torch.optim.SGD(
        model.parameters(), lr=t["lr"], momentum=t["momentum"], weight_decay=t["weight_decay"]
    )


def _scheduler(optimizer, t: dict):
    if t["scheduler"] == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=t["epochs"])
    return None


def _epoch_batches(data: ImageData, sampler: DistributedSampler, batch_size: int):
    """Index batches of this rank for the sampler's epoch; a trailing batch of one is dropped
    (BatchNorm cannot train on it)."""
    idx = torch.tensor(list(iter(sampler)), dtype=torch.int64)
    batches = list(torch.split(idx, batch_size))
    if batches and len(batches[-1]) < 2:
        batches.pop()
    return batches


class _CsvLog:
    """Appends one row per epoch to ``log.csv`` (header written once)."""

    def __init__(self, path: Path):
        self.path = path
        if not path.exists():
            with open(path, "w", newline="") as fh:
                csv.writer(fh).writerow(CSV_FIELDS)

    def write(self, row: dict) -> None:
        with open(self.path, "a", newline="") as fh:
            csv.writer(fh).writerow([row[k] for k in CSV_FIELDS])


def _tensorboard(out_dir: Path, enabled: bool):
    if not enabled:
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        log.warning("tensorboard is not installed; logging to CSV only")
        return None
    return SummaryWriter(str(out_dir / "tb"))


def train(
    config: dict,
    *,
    resume: str | Path | None = None,
    on_epoch_end: Callable[[int, dict], None] | None = None,
) -> dict:
    """Train as ``config`` says; returns the last epoch's metrics (with ``history``).

    ``resume``: a checkpoint (or its folder) to continue from; its model, thresholds, optimizer
    and scheduler states are restored and training continues at the next epoch.
    ``on_epoch_end(epoch, metrics)`` is called after each epoch's checkpoint (rank 0).
    """
    d, t, ata = config["data"], config["train"], config["ata"]
    device = D.local_device(t["device"])
    rank, world = D.init_distributed(device)
    main = D.is_main(rank)
    if t["num_threads"]:
        torch.set_num_threads(t["num_threads"])
    out_dir = Path(config["output"]["dir"])
    state = load_checkpoint(resume) if resume is not None else None

    train_data, test_data, num_classes = load_datasets(d)
    mean, std = train_data.channel_stats()
    torch.manual_seed(t["seed"])
    input_shape = tuple(train_data.x.shape[1:])
    model = model_from_config(config, input_shape, num_classes, mean, std).to(device)
    if config["model"]["channels_last"]:
        model = model.to(memory_format=torch.channels_last)
    optimizer = _optimizer(model, t)
    scheduler = _scheduler(optimizer, t)
    history: list[dict] = []
    start = 0
    best = -1.0
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if scheduler is not None and state["scheduler"]:
            scheduler.load_state_dict(state["scheduler"])
            scheduler.T_max = t["epochs"]  # a resumed run may extend the schedule
        start = state["epoch"] + 1
        history = list(state["metrics"].get("history", []))
        best = max((h["snn_acc"] for h in history), default=-1.0)
        log.info("resumed from %s at epoch %d", resume, start)
    net = torch.nn.parallel.DistributedDataParallel(model) if world > 1 else model

    sampler = DistributedSampler(
        train_data, num_replicas=world, rank=rank, shuffle=True, seed=t["seed"]
    )
    use_aug = d["augment"] == "on" or (d["augment"] == "auto" and d["dataset"].startswith("cifar"))
    bptt = t["method"] == "bptt"
    bptt_args = {
        "leak": 1.0 if config["bptt"]["neuron"] == "if" else config["bptt"]["leak"],
        "alpha": config["bptt"]["alpha"],
    }
    mapping = mapping_unit(t["mapping"])
    autocast = (
        torch.autocast("cuda", dtype=torch.bfloat16)
        if device.type == "cuda" and t["bf16"]
        else contextlib.nullcontext()
    )
    csv_log = tb = None
    if main:
        out_dir.mkdir(parents=True, exist_ok=True)
        csv_log = _CsvLog(out_dir / "log.csv")
        tb = _tensorboard(out_dir, config["output"]["tensorboard"])
    meta = {
        "input_shape": list(input_shape),
        "num_classes": num_classes,
        "mean": list(mean),
        "std": list(std),
    }

    metrics: dict = {}
    for epoch in range(start, t["epochs"]):
        t0 = time.perf_counter()
        epoch_seed = t["seed"] * 100_003 + epoch
        torch.manual_seed(epoch_seed)
        gen = torch.Generator().manual_seed(epoch_seed)
        sampler.set_epoch(epoch)
        model.train()
        loss_sum = correct = seen = 0.0
        noisy: list[float] = []
        batches = _epoch_batches(train_data, sampler, t["batch_size"])
        bar = tqdm(
            batches,
            desc=f"epoch {epoch + 1}/{t['epochs']}",
            leave=False,
            disable=not (main and config["output"]["progress"]),
        )
        for idx in bar:
            x = train_data.x[idx]
            if use_aug:
                x = augment(x, gen, d["crop_padding"], d["flip"])
            x, y = x.to(device), train_data.y[idx].to(device)
            xf = x.float()
            if config["model"]["channels_last"] and x.ndim == 4:
                xf = xf.contiguous(memory_format=torch.channels_last)
            if bptt:
                with autocast:
                    logits, _ = net(xf, bptt=bptt_args)
            else:
                snn = run_snn(
                    model,
                    x,
                    quantized=not t["float_snn"],
                    weight_bits=t["weight_bits"],
                    compile_neuron=t["compile_neuron"],
                )
                with autocast:
                    logits, pre = net(xf, snn.counts, mapping, t["dropout"])
            loss = F.cross_entropy(logits.float(), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if not bptt and ata["enabled"]:
                noisy = adjust_thresholds(
                    model,
                    pre,
                    snn.counts,
                    tolerance=ata["tolerance"],
                    step=ata["step"],
                    granularity=ata["granularity"],
                )
            loss_sum += float(loss.detach()) * len(y)
            correct += float((logits.argmax(1) == y).sum())
            seen += len(y)
            bar.set_postfix(loss=f"{loss_sum / seen:.3f}", acc=f"{correct / seen:.3f}")
        loss_sum, correct, seen = D.all_reduce_sum([loss_sum, correct, seen], device)
        lr = optimizer.param_groups[0]["lr"]
        if scheduler is not None:
            scheduler.step()
        if main:
            ev = evaluate(
                model,
                test_data,
                device=device,
                batch_size=t["eval_batch_size"],
                quantized=not t["float_snn"],
                weight_bits=t["weight_bits"],
                compile_neuron=t["compile_neuron"],
            )
            metrics = {
                "epoch": epoch,
                "lr": lr,
                "train_loss": loss_sum / max(seen, 1),
                "train_acc": correct / max(seen, 1),
                **ev,
                "thresholds": [float(ly.thresholds.mean()) for ly in model.spiking_layers],
                "noisy_rate": noisy,
                "epoch_s": time.perf_counter() - t0,
            }
            history.append(metrics)
            csv_log.write(
                {
                    **metrics,
                    "spikes_per_layer": ";".join(f"{s:.2f}" for s in ev["spikes_per_layer"]),
                    "thresholds": ";".join(f"{v:.4f}" for v in metrics["thresholds"]),
                    "noisy_rate": ";".join(f"{v:.4f}" for v in noisy),
                }
            )
            if tb is not None:
                for key in ("train_loss", "train_acc", "ann_acc", "snn_acc", "spikes_total"):
                    tb.add_scalar(key, metrics[key], epoch)
            log.info(
                "epoch %d: loss %.4f ann %.4f snn %.4f spikes %.1f",
                epoch + 1,
                metrics["train_loss"],
                ev["ann_acc"],
                ev["snn_acc"],
                ev["spikes_total"],
            )
            ckpt_metrics = {**metrics, "history": history, "model": meta}
            kwargs = dict(
                model=model,
                optimizer=optimizer,
                scheduler=scheduler,
                epoch=epoch,
                config=config,
                metrics=ckpt_metrics,
            )
            save_checkpoint(out_dir / LAST, **kwargs)
            if ev["snn_acc"] > best:
                best = ev["snn_acc"]
                save_checkpoint(out_dir / BEST, **kwargs)
            if on_epoch_end is not None:
                on_epoch_end(epoch, metrics)
        D.barrier()
    if tb is not None:
        tb.close()
    return {**metrics, "history": history}
