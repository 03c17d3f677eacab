"""The noise route (``train.method = "noise"``, arXiv 2211.05453): a T = 1 SNN trained with noise
on the membrane potential, deployed at T = N; its export fires exactly the integer branch's spikes
on the emulator (and on Lava), and bad settings are refused naming the field."""

from __future__ import annotations

import pytest
import torch
from test_export_helpers import export_and_check, trained_export_lava_parity
from train_helpers import DIGITS_RUN, calibrated_model, digits_like_batch, small_config

from snn2loihi.errors import ConfigError
from snn2loihi.export.loader import load_model
from snn2loihi.quant import readout_max_steps
from snn2loihi.train.checkpoint import load_checkpoint
from snn2loihi.train.config import resolve
from snn2loihi.train.data import load_datasets
from snn2loihi.train.noise import check_reachable_steps, noise_forward
from snn2loihi.train.trainer import train

NOISE_RUN = [*DIGITS_RUN, "train.method='noise'"]  # trained at T = 1, deployed at T = 3


def test_config_refuses_leaky_neurons_and_bad_noise():
    with pytest.raises(ConfigError, match="bptt.neuron = 'lif' with train.method = 'noise'"):
        resolve(None, ["train.method='noise'", "bptt.neuron='lif'"])
    with pytest.raises(ConfigError, match="noise.distribution = 'laplace' is not one of"):
        resolve(None, ["train.method='noise'", "noise.distribution='laplace'"])
    with pytest.raises(ConfigError, match=r"noise.std = -0.1 must be in \[0.0, 1.0\]"):
        resolve(None, ["noise.std=-0.1"])
    assert resolve(None, ["bptt.neuron='lif'"]).train.method == "snn2ann"  # only with noise


def test_a_step_count_beyond_the_readout_is_refused(tmp_path, cli_refusal):
    model = calibrated_model(steps=readout_max_steps(128), step_divisor=1)
    check_reachable_steps(model)  # the digits readout has 128 inputs
    argv = ["train", "--method", "noise", "--steps", readout_max_steps(128) + 1]
    argv += ["--out", tmp_path / "run", "--no-progress"]
    cli_refusal(argv, "train.steps = 2002", "at most 2001 steps")
    assert not (tmp_path / "run").exists()


def test_noise_forward_is_the_thresholded_current_plus_seeded_noise():
    model = calibrated_model(steps=4, step_divisor=1).train()
    x = digits_like_batch(16).float()
    _, exact = noise_forward(model, x, mean=0.25, std=0.0)
    layer = model.layers[0]
    a = layer.bn(model.layer_synapse(0, x))
    th = layer.thresholds.view(-1, 1, 1)
    assert torch.equal(exact[0], (a + 0.25 * th > th).float())
    torch.manual_seed(3)
    first = noise_forward(model, x, distribution="uniform")[1]
    torch.manual_seed(3)
    again = noise_forward(model, x, distribution="uniform")[1]
    assert all(torch.equal(p, q) for p, q in zip(first, again, strict=True))
    assert not torch.equal(first[0], exact[0])


def test_noise_route_trains_at_one_step_and_exports_exactly(tmp_path):
    """One epoch of the route on digits; the checkpoint is an N = 3 network with the full
    current every step, and the exported file fires the integer branch's spikes."""
    torch.set_num_threads(1)
    config = small_config(tmp_path, *NOISE_RUN)
    result = train(config)
    ckpt = tmp_path / "run" / "best.pt"
    model, state = load_model(ckpt)
    assert model.steps == 3 and model.step_divisor == 1
    assert state["config"]["noise"]["distribution"] == "gaussian"
    x = load_datasets(config.data).val.x[:32]
    report = export_and_check(ckpt, model, tmp_path / "noise.net", x, 144)
    assert report["accuracy"]["emulator_acc"] == result["snn_acc"] > 0.5  # chance is 0.1
    assert load_checkpoint(ckpt)["epoch"] == 0


@pytest.mark.lava
def test_noise_route_export_matches_lava_spike_for_spike(tmp_path):
    trained_export_lava_parity(tmp_path, *NOISE_RUN)
