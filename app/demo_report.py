"""Run reports: PNG figures (matplotlib, headless) and a markdown page with the same figures.

Every function writes one file atomically and returns its path.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from snn2loihi.atomic import atomic_path


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    _pyplot().close(fig)
    return path


def _or_nan(figure: float | None) -> float:
    """A figure to plot: NaN (a gap) where it was not measured (the SNN's in the ANN phase)."""
    return float("nan") if figure is None else figure


def training_curves(history: list[dict], path: Path) -> Path:
    """Loss, accuracies (ANN branch and integer SNN) and spikes per sample over epochs."""
    plt = _pyplot()
    epochs = [h["epoch"] + 1 for h in history]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.4))
    axes[0].plot(epochs, [h["train_loss"] for h in history], marker="o")
    axes[0].set(title="training loss", xlabel="epoch")
    axes[1].plot(epochs, [h["ann_acc"] for h in history], marker="o", label="ANN branch")
    axes[1].plot(
        epochs, [_or_nan(h["snn_acc"]) for h in history], marker="s", label="integer SNN (deployed)"
    )
    axes[1].set(title="validation accuracy", xlabel="epoch")
    axes[1].legend()
    axes[2].plot(epochs, [_or_nan(h["spikes_total"]) for h in history], marker="o")
    axes[2].set(title="spikes per sample", xlabel="epoch")
    return _save(fig, path)


def spike_rates(names: list[str], rates: list[float], path: Path) -> Path:
    """Mean spikes per neuron per step of every layer (bar chart)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.2))
    ax.bar(names, rates)
    ax.set(title="spike rate per layer", ylabel="spikes / neuron / step")
    return _save(fig, path)


def raster(layers: list[np.ndarray], names: list[str], path: Path) -> Path:
    """Spike raster of one sample: one panel per layer, (T, neurons) each."""
    plt = _pyplot()
    fig, axes = plt.subplots(len(layers), 1, figsize=(8, 1.3 + 1.2 * len(layers)), squeeze=False)
    for ax, spikes, name in zip(axes[:, 0], layers, names, strict=True):
        flat = np.asarray(spikes).reshape(spikes.shape[0], -1)
        t, n = np.nonzero(flat)
        ax.scatter(t, n, s=2, marker="|")
        ax.set(ylabel=name, xlim=(-0.5, flat.shape[0] - 0.5), ylim=(-0.5, flat.shape[1] - 0.5))
        ax.set_xticks(range(flat.shape[0]))
        if not flat.any():
            ax.text(0.5, 0.5, "no spikes", transform=ax.transAxes, ha="center", va="center")
    axes[-1, 0].set_xlabel("time step")
    fig.subplots_adjust(hspace=0.45)
    fig.suptitle("spike raster of sample 0 (Lava)")
    return _save(fig, path)


def thresholds(names: list[str], vth: list[int], path: Path) -> Path:
    """vThMant of every layer."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.2))
    ax.bar(names, vth)
    ax.set(title="per-layer threshold (vThMant)", yscale="log")
    return _save(fig, path)


def confusion(matrix: np.ndarray, path: Path, title: str) -> Path:
    """Confusion matrix (true rows, predicted columns) with counts."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 4.4))
    ax.imshow(matrix, cmap="Blues")
    for (i, j), v in np.ndenumerate(matrix):
        if v:
            ax.text(j, i, str(v), ha="center", va="center", fontsize=7)
    ax.set(
        title=title,
        xlabel="predicted",
        ylabel="true",
        xticks=range(len(matrix)),
        yticks=range(len(matrix)),
    )
    return _save(fig, path)


def write_json(data: dict, path: Path) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2))
    return path


def write_text(text: str, path: Path) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return path


def markdown_table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)
