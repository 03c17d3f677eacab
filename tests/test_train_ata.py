"""ATA raises thresholds exactly where noisy spikes exceed the tolerance."""

from __future__ import annotations

import torch
from train_helpers import calibrated_model

from snn2loihi.train.ata import adjust_thresholds, noisy_spike_rates


def _inputs(model, noisy_channel_fraction: dict[int, float]):
    """Per spiking layer: pre-activations all <= 0 and spikes on given fractions of channel 0."""
    pre, counts = [], []
    shapes = model.layer_shapes()[: len(model.spiking_layers)]
    for shape in shapes:
        a = -torch.ones(4, *shape)
        n = torch.zeros(4, *shape)
        pre.append(a)
        counts.append(n)
    for k, frac in noisy_channel_fraction.items():
        flat = counts[k][:, 0].reshape(4, -1)
        flat[:, : int(round(frac * flat.shape[1]))] = 1
    return pre, counts


def test_layer_granularity_raises_only_noisy_layers():
    model = calibrated_model()
    before = [ly.thresholds.clone() for ly in model.spiking_layers]
    # layer 1 (64 channels x 16 positions): 100% of channel 0 noisy -> 1/64 of the layer
    pre, counts = _inputs(model, {0: 1.0, 1: 1.0})
    rates = adjust_thresholds(model, pre, counts, tolerance=0.01, step=0.05, granularity="layer")
    assert rates[0] > 0.01 and 0 < rates[1] < 0.02 and rates[2] == 0
    after = [ly.thresholds for ly in model.spiking_layers]
    torch.testing.assert_close(after[0], before[0] + 0.05)
    torch.testing.assert_close(after[1], before[1] + 0.05)  # 1/64 = 0.0156 > 0.01
    torch.testing.assert_close(after[2], before[2])


def test_below_tolerance_nothing_changes_and_thresholds_never_fall():
    model = calibrated_model()
    before = [ly.thresholds.clone() for ly in model.spiking_layers]
    pre, counts = _inputs(model, {0: 0.5})
    adjust_thresholds(model, pre, counts, tolerance=0.5, step=0.05)
    for b, ly in zip(before, model.spiking_layers, strict=True):
        assert torch.equal(b, ly.thresholds)


def test_channel_granularity_raises_only_noisy_channels():
    model = calibrated_model()
    before = model.spiking_layers[0].thresholds.clone()
    pre, counts = _inputs(model, {0: 0.5})
    adjust_thresholds(model, pre, counts, tolerance=0.1, step=0.02, granularity="channel")
    after = model.spiking_layers[0].thresholds
    assert after[0] == before[0] + 0.02
    assert torch.equal(after[1:], before[1:])


def test_spikes_where_the_ann_is_active_are_not_noisy():
    pre = torch.tensor([[1.0, -1.0, 0.0, 2.0]])
    counts = torch.tensor([[3.0, 0.0, 1.0, 0.0]])
    assert float(noisy_spike_rates(pre, counts)) == 0.25
