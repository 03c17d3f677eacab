"""model.threshold_placement = "mse": thresholds placed per layer at the end of the ANN phase."""

from __future__ import annotations

import pytest
import torch
from train_helpers import small_config

from snn2loihi.errors import ConfigError
from snn2loihi.neuron_loop import integrate_counting
from snn2loihi.schema import CubaNeuron
from snn2loihi.train.checkpoint import load_checkpoint
from snn2loihi.train.config import resolve
from snn2loihi.train.threshold_placement import GRID, best_threshold, constant_current_counts
from snn2loihi.train.trainer import train

FAST = ["model.arch='custom'", "model.convs=['8', 's16']", "model.dense=[]"]


def test_constant_current_counts_are_the_reset_to_zero_if_neurons():
    """floor(T / ceil(th / current)): counts 0, 1, 2, 4 at T = 4 (never 3), 0 for a <= 0; the
    same counts as Loihi's integer IF neuron (the integer branch's own time loop) driven by
    the same constant integer current, threshold ``vThMant = floor(th)`` (spike at v > 100)."""
    a = torch.tensor([-40, 0, 1, 25, 26, 33, 34, 50, 51, 100, 101, 300], dtype=torch.int32)
    counts = constant_current_counts(a.double(), 100.5, steps=4, divisor=1)
    assert counts.tolist() == [0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 4, 4]
    neuron = CubaNeuron.integrate_and_fire(vth_mant=100)
    steps = a.view(1, 1, -1).expand(1, 4, -1)  # the same current at each of the 4 steps
    _, stepped = integrate_counting(steps, 0, neuron, int32_safe=True)
    assert stepped[0].tolist() == counts.int().tolist()


def test_best_threshold_of_normal_activations_depends_on_t():
    """For N(0, 1) BatchNorm outputs the least-error threshold is 0.35 at T = 4 (counts 0, 1,
    2, 4 in units of th), 0.55 at T = 2 and 0.6 at T = 1 (the 1-bit Lloyd-Max point)."""
    a = torch.randn(400_000, generator=torch.Generator().manual_seed(0))
    found = {t: best_threshold(a, t, t)[0] for t in (4, 2, 1)}
    assert found == {4: 0.35, 2: 0.55, 1: 0.6}


def test_a_run_places_each_layers_threshold_after_its_ann_phase(tmp_path):
    """The ANN epoch leaves the thresholds at model.threshold; the first SNN2ANN epoch starts
    from thresholds placed per layer (ATA off, so they stay there); pretrained.pt keeps the
    unplaced ones, so resuming it places them again, the same way."""
    torch.set_num_threads(1)
    args = [*FAST, "train.pretrain_epochs=1", "model.threshold_placement='mse'"]
    args += ["ata.enabled=false"]
    seen = {}
    train(small_config(tmp_path / "a", *args), on_epoch_end=lambda e, m: seen.update({e: m}))
    assert seen[0]["thresholds"] == [0.5, 0.5]
    placed = seen[1]["thresholds"]
    assert placed != [0.5, 0.5]
    assert all(min(abs(th - g) for g in GRID) < 1e-6 for th in placed), placed
    run = tmp_path / "a" / "run"
    assert load_checkpoint(run / "pretrained.pt")["model"][
        "layers.0.thresholds"
    ].unique().tolist() == [0.5]
    resumed = train(small_config(tmp_path / "b", *args), resume=run / "pretrained.pt")
    assert resumed["thresholds"] == placed  # the same ANN, the same sample


def test_placement_needs_an_ann_phase():
    with pytest.raises(ConfigError, match="model.threshold_placement = 'mse' needs train.pretrain"):
        resolve(None, ["model.threshold_placement='mse'"])
