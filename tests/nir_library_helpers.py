"""Digits for the real-library NIR tests: train a library's network, calibrate, convert and run
``parity`` on Lava as a user does (tests/test_nir.py, tests/test_nir_sources.py)."""

from __future__ import annotations

import json

import numpy as np
import torch
from cli_helpers import run_cli

from snn2loihi.netx_io import read_network


def digits_npz(tmp_path, n=200):
    """The first ``n`` validation digits as ``tmp_path/calib.npz`` (x uint8 (N, 8, 8), y) and
    the validation split."""
    from snn2loihi.train.config import default_config
    from snn2loihi.train.data import load_datasets

    data = load_datasets(default_config().data).val
    x, y = data.x[:n].numpy(), data.y[:n].numpy()
    path = tmp_path / "calib.npz"
    np.savez(path, x=x[:, 0], y=y)
    return path, data


def train_digits(net_step, params, data, steps, epochs=30):
    """Adam on the cross entropy of ``net_step(pixels / 255 (B, 64), steps)`` (B, 10)."""
    x = data.x.flatten(1).float() / 255.0
    y = data.y
    opt = torch.optim.Adam(params, lr=5e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(epochs):
        for idx in torch.randperm(len(x), generator=g).split(128):
            loss = torch.nn.functional.cross_entropy(net_step(x[idx], steps), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()


def digits():
    """The digits splits (x uint8 (N, 1, 8, 8), y) of the default training config."""
    from snn2loihi.train.config import default_config
    from snn2loihi.train.data import load_datasets

    return load_datasets(default_config().data)


def accuracy(run, data, steps) -> float:
    """The share of ``data`` on which ``run(pixels / 255, steps)`` predicts the label."""
    with torch.no_grad():
        pred = run(data.x.flatten(1).float() / 255, steps).argmax(1)
    return float((pred == data.y).double().mean())


def convert_and_parity_cli(tmp_path, name, path, calib, steps, *flags, samples=4) -> dict:
    """``convert model.nir --out m.net``, then ``parity m.net --input digits.npy --samples 4``, as
    a user runs them; both exit 0 and the report is equal with spikes. A recurrent network runs
    on the global clock as convert says (its report's ``global_clock``). Returns the parity
    JSON and convert's report."""
    out, report = tmp_path / f"{name}.net", tmp_path / f"{name}.parity.json"
    res = run_cli("convert", path, "--out", out, "--calib", calib, "--steps", steps, *flags)
    assert res.returncode == 0, res.stderr[-3000:]
    converted = json.loads((tmp_path / f"{name}.report.json").read_text())
    clock, run = converted["global_clock"], ["--steps", steps]
    if clock is not None:
        steps = clock["steps"]
        run = ["--clock", "global", "--reset-interval", clock["reset_interval"],
               "--reset-offset", clock["reset_offset"]]  # fmt: skip
        assert f"--reset-interval {clock['reset_interval']}" in res.stdout
    # digits shown as graded pixels: random 0/1 spikes are too weak to drive a net that was
    # quantized for 0..255 pixels (no spikes to compare)
    x = np.load(calib)["x"][:samples].reshape(samples, 1, *read_network(out).input_shape)
    np.save(tmp_path / f"{name}.x.npy", np.repeat(x, steps, axis=1))
    res = run_cli("parity", out, "--input", tmp_path / f"{name}.x.npy", "--samples", samples,
                  *run, "--json", report)  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    assert "PARITY OK" in res.stdout, res.stdout
    figures = json.loads(report.read_text())
    assert figures["equal"], f"{name}: {figures}"
    assert sum(ly["emulator_spikes"] for ly in figures["layers"]) > 0
    return figures, converted
