"""The demo flow end to end (short training), its report files and the figures they state."""

from __future__ import annotations

import json

import numpy as np
import pytest

from snn2loihi.app.cli import main

pytestmark = [pytest.mark.lava, pytest.mark.timeout(600)]

FIGURES = (
    "training_curves.png",
    "spike_rates.png",
    "raster.png",
    "thresholds.png",
    "confusion_lava.png",
)


def test_demo_trains_exports_runs_lava_and_reports(tmp_path, capsys):
    out = tmp_path / "demo"
    code = main(["demo", "--out", str(out), "--epochs", "2", "--samples", "40", "--no-progress"])
    printed = capsys.readouterr().out
    assert code == 0, printed
    data = json.loads((out / "report.json").read_text())
    s = data["summary"]
    assert s["samples"] == 40 and s["steps"] == 4
    assert (
        s["parity_spikes_equal"] and s["parity_readout_equal"] and s["parity_samples_equal"] == 40
    )
    assert all(p["mismatches"] == 0 for p in data["parity"])
    assert s["lava_acc"] == s["emulator_acc"]
    confusion = np.array(data["confusion_lava"])
    assert confusion.sum() == 40
    assert s["lava_acc"] == pytest.approx(np.trace(confusion) / 40)
    assert s["lava_acc"] > 0.5, "two epochs on digits must be far above chance"
    assert s["spikes_per_sample"] == pytest.approx(sum(s["spikes_per_sample_per_layer"].values()))
    for name in FIGURES:
        blob = (out / name).read_bytes()
        assert blob.startswith(b"\x89PNG") and len(blob) > 2000, name
    md = (out / "report.md").read_text()
    assert f"{100 * s['lava_acc']:.2f}%" in md and f"{100 * s['ann_acc']:.2f}%" in md
    for name in FIGURES:
        assert f"]({name})" in md
    assert (out / "model.net").is_file() and (out / "train" / "best.pt").is_file()
    assert (out / "model.report.md").is_file() and (out / "model.report.json").is_file()
    assert "steps = 4" in (out / "config.toml").read_text()
    assert f"{100 * s['lava_acc']:.2f}%" in printed and "parity: every spike equal" in printed
