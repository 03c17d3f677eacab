"""The ready models in models/: each folder's card says what its files do.

For every ``models/<name>/card.json`` (written by bench/ship_model.py): the committed
predictions give the card's accuracy on the test set they name, and the committed ``model.net``,
run on the emulator through the CLI, predicts the first test images exactly as committed.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
MODELS = sorted(p.parent for p in (ROOT / "models").glob("*/card.json"))
PREFIX = 48  # test images run through the emulator in the suite (the whole set: bench/)


@pytest.fixture(scope="module")
def cifar_test() -> tuple[np.ndarray, np.ndarray]:
    """The shared JPEG copy's 10,000 test images (N, 32, 32, 3) uint8 and labels."""
    from cifar_data import SOURCE, decode_split

    if not (SHARED / SOURCE).is_file():
        pytest.skip("../shared/data/cifar10-jpeg absent")
    with np.load(SHARED / SOURCE) as z:
        return decode_split(z, "test")


@pytest.mark.parametrize("folder", MODELS, ids=[p.name for p in MODELS])
def test_model_card_figures_come_from_its_files(folder, cifar_test, tmp_path, capsys):
    from snn2loihi.netx_io import read_network

    card = json.loads((folder / "card.json").read_text())
    net = read_network(folder / "model.net")
    assert net.steps == card["steps"]
    predictions = np.load(folder / "predictions.npy")
    images, labels = cifar_test
    first = images[:PREFIX]
    assert len(predictions) == len(labels) == card["emulator"]["samples"]
    assert float(np.mean(predictions == labels)) == card["emulator"]["accuracy"]
    assert card["lava_parity"]["spikes_equal"] and card["lava_parity"]["v_equal"]

    data = tmp_path / "first.npz"
    np.savez(data, x=first, y=labels[:PREFIX])
    out = tmp_path / "eval.json"
    from snn2loihi.app.cli import main

    code = main(["eval", str(folder / "model.net"), "--data", str(data), "--backend",
                 "emulator", "--json", str(out), "--no-progress"])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    ran = json.loads(out.read_text())["scores"]["emulator"]["predictions"]
    assert ran == predictions[:PREFIX].tolist()
