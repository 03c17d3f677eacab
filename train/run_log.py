"""Per-epoch logs of a run (rank 0): ``log.csv`` rows, TensorBoard scalars, one log line."""

from __future__ import annotations

import csv
import logging
from pathlib import Path

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
TB_SCALARS = ("train_loss", "train_acc", "ann_acc", "snn_acc", "spikes_total")


class CsvLog:
    """Appends one row per epoch to ``path`` (header written once); lists joined with ``;``, a
    figure that was not measured (the SNN's in the ANN phase) left empty."""

    def __init__(self, path: Path):
        self.path = path
        if not path.exists():
            with open(path, "w", newline="") as fh:
                csv.writer(fh).writerow(CSV_FIELDS)

    def write(self, metrics: dict) -> None:
        row = {
            **metrics,
            "spikes_per_layer": ";".join(f"{s:.2f}" for s in metrics["spikes_per_layer"]),
            "thresholds": ";".join(f"{v:.4f}" for v in metrics["thresholds"]),
            "noisy_rate": ";".join(f"{v:.4f}" for v in metrics["noisy_rate"]),
        }
        with open(self.path, "a", newline="") as fh:
            csv.writer(fh).writerow([row[k] for k in CSV_FIELDS])


def open_tensorboard(out_dir: Path, enabled: bool):
    """A ``SummaryWriter`` on ``out_dir/tb``, or None (disabled or not installed)."""
    if not enabled:
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        log.warning("tensorboard is not installed; logging to CSV only")
        return None
    return SummaryWriter(str(out_dir / "tb"))


class RunLog:
    """``log.csv`` in ``out_dir`` (created), optional TensorBoard, and a log line per epoch."""

    def __init__(self, out_dir: Path, tensorboard: bool, progress: bool = False, epochs: int = 0):
        out_dir.mkdir(parents=True, exist_ok=True)
        self.csv = CsvLog(out_dir / "log.csv")
        self.tb = open_tensorboard(out_dir, tensorboard)
        # with progress on: one line per epoch on stderr (the batch bar shows on a terminal only)
        self.lines = logging.getLogger("snn2loihi.progress") if progress else log
        self.epochs = epochs

    def epoch(self, metrics: dict) -> None:
        """Record one epoch's metrics (validation accuracies ``ann_acc``/``snn_acc``)."""
        self.csv.write(metrics)
        if self.tb is not None:
            for key in TB_SCALARS:
                if metrics[key] is not None:
                    self.tb.add_scalar(key, metrics[key], metrics["epoch"])
        snn = (
            "SNN not run (ANN phase)"
            if metrics["snn_acc"] is None
            else f"SNN {metrics['snn_acc']:.4f}, {metrics['spikes_total']:.1f} spikes per sample"
        )
        self.lines.info(
            "epoch %d/%d: loss %.4f, validation ANN %.4f, %s",
            metrics["epoch"] + 1,
            self.epochs,
            metrics["train_loss"],
            metrics["ann_acc"],
            snn,
        )

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()
