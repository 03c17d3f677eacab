"""The one back-end runner (deploy/runner.py) on the emulator, and the one label check: chunked
runs equal one run, predictions follow the network's rule, the emulator is built once."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from snn2loihi.deploy import runner as runner_module
from snn2loihi.deploy.emulator import Emulator
from snn2loihi.deploy.evaluate import evaluate_network
from snn2loihi.deploy.inputs import check_labels
from snn2loihi.deploy.runner import Runner
from snn2loihi.errors import InputDataError
from snn2loihi.readout import READOUT_V, SPIKE_COUNT, predict, prediction_rule
from snn2loihi.testing.netgen import SMALL, random_network

READOUT_NET = dataclasses.replace(SMALL, readout=True, weight_range=(-16, 24))


@pytest.fixture
def images():
    rng = np.random.default_rng(3)
    return rng.integers(0, 256, size=(7, 2, 8, 8), dtype=np.uint8), rng.integers(0, 10, 7)


@pytest.mark.parametrize(("spec", "rule"), [(SMALL, SPIKE_COUNT), (READOUT_NET, READOUT_V)])
def test_chunked_run_predicts_by_the_networks_rule(spec, rule, images):
    net = random_network(spec, seed=1)
    assert prediction_rule(net) == rule
    x, _ = images
    full = Emulator(net).run(np.repeat(x[:, None], 3, axis=1), record_state=True)
    v_last = full.layers[-1].v[:, -1].numpy()
    out = Runner(net, None, "emulator").run(x, 3, chunk=3)  # chunks of 3, 3 and 1 samples
    assert out.rule == rule
    assert np.array_equal(out.spikes, full.output.numpy().astype(np.uint8))
    assert np.array_equal(out.predictions, predict(rule, full.output, v_last))
    assert (out.v_last is None) == (rule != READOUT_V)
    if out.v_last is not None:
        assert np.array_equal(out.v_last, v_last)
    assert out.layer_spikes == {t.index: t.total_spikes() for t in full.layers}


def test_the_emulator_is_built_once_per_runner(images, monkeypatch):
    built = []

    class Counted(Emulator):
        def __init__(self, *args, **kwargs):
            built.append(1)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(runner_module, "Emulator", Counted)
    net = random_network(READOUT_NET, seed=1)
    x, y = images
    assert len(list(Runner(net, None, "emulator").chunks(x, 2, chunk=2))) == 4
    assert len(built) == 1
    ev = evaluate_network(net, None, x, y, 2, batch_size=2)
    assert len(built) == 2 and ev.scores["emulator"].correct == sum(
        p == t for p, t in zip(ev.scores["emulator"].predictions, y, strict=True)
    )


@pytest.mark.parametrize(
    ("labels", "words"),
    [
        (np.array([0, -1, 2]), "label -1 at index 1 is outside the network's 10 classes"),
        (np.array([0, 1, 10]), "label 10 at index 2 is outside the network's 10 classes"),
        (np.array([0.0, 1.0, 2.0]), "labels have dtype float64, expected integers"),
        (np.array([0, 1]), "labels have shape (2,), expected (3,)"),
    ],
)
def test_labels_are_refused_naming_the_file_and_value(labels, words):
    with pytest.raises(InputDataError, match="^y.npy: ") as exc:
        check_labels(labels, 3, 10, "y.npy")
    assert words in str(exc.value)


def test_evaluation_refuses_negative_labels(images):
    net = random_network(SMALL, seed=1)
    x, y = images
    y = y.copy()
    y[4] = -3
    with pytest.raises(InputDataError, match="test.npz: label -3 at index 4"):
        evaluate_network(net, None, x, y, 2, data="test.npz")
