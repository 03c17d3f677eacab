"""`snn2loihi run` as a user runs it: images or spike trains in, predictions by the network's
own rule, accuracy from labels, and outputs that can never destroy an input."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from snn2loihi.app.cli import main
from snn2loihi.deploy.emulator import Emulator
from snn2loihi.readout import READOUT_V, SPIKE_COUNT, predict, prediction_rule
from snn2loihi.testing.netgen import SMALL, random_network

READOUT_NET = dataclasses.replace(SMALL, readout=True, weight_range=(-16, 24))


@pytest.fixture
def images(tmp_path):
    """Eight 2x8x8 'images' of pixels 0..255 (no time axis) and labels for them."""
    rng = np.random.default_rng(3)
    x = rng.integers(0, 256, size=(8, 2, 8, 8), dtype=np.uint8)
    y = rng.integers(0, 10, size=8)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    return tmp_path / "x.npy", tmp_path / "y.npy", x, y


def _run(capsys, *args) -> str:
    """``snn2loihi run ARGS`` in-process (the entry point's own test: tests/test_cli.py); it
    must exit 0. Returns what it printed."""
    capsys.readouterr()
    assert main(["run", *map(str, args)]) == 0
    return capsys.readouterr().out


def _printed_predictions(stdout: str) -> list[int]:
    text = stdout.split("predicted classes")[1].split(": ", 1)[1]
    return [int(v) for v in text.split("]")[0].strip("[").split(",")]


def test_images_are_repeated_over_steps_and_predicted_by_the_readout(
    write_net, images, tmp_path, capsys
):
    net_path = write_net(random_network(READOUT_NET, seed=1))
    xf, yf, x, y = images
    stdout = _run(
        capsys, net_path, "--input", xf, "--steps", 4, "--labels", yf, "--out", tmp_path / "s.npy"
    )
    emu = Emulator(net_path)
    assert prediction_rule(emu.net) == READOUT_V
    trace = emu.run(np.repeat(x[:, None], 4, axis=1), record_state=True).layers[-1]
    expected = predict(READOUT_V, v_last=trace.v[:, -1])
    assert _printed_predictions(stdout) == expected.tolist()
    assert "argmax of the readout's v >> 6" in stdout
    correct = int((expected == y).sum())
    assert f"accuracy {correct / 8:.2%} ({correct}/8)" in stdout
    assert np.array_equal(np.load(tmp_path / "s.npy"), trace.spikes.numpy().astype(np.uint8))


def test_spiking_outputs_are_predicted_by_spike_count(write_net, images, tmp_path, capsys):
    net_path = write_net(random_network(SMALL, seed=1))
    xf, _, x, _ = images
    stdout = _run(capsys, net_path, "--input", xf, "--steps", 6, "--out", tmp_path / "s.npy")
    spikes = Emulator(net_path).run(np.repeat(x[:, None], 6, axis=1)).output
    assert _printed_predictions(stdout) == predict(SPIKE_COUNT, spikes).tolist()
    assert "(max spike count)" in stdout


@pytest.mark.lava
def test_lava_predicts_what_the_emulator_predicts(write_net, images, tmp_path, capsys):
    """`run` on both back ends (in-process): the same predictions, accuracy line and output
    spikes, (samples, steps, classes)."""
    net_path = write_net(random_network(READOUT_NET, seed=2))
    xf, yf, _, _ = images
    args = [net_path, "--input", xf, "--steps", 3, "--labels", yf]
    printed = {}
    for backend in ("emulator", "lava"):
        printed[backend] = _run(
            capsys, *args, "--backend", backend, "--out", tmp_path / f"{backend}.npy"
        )
    emu, lava = printed["emulator"], printed["lava"]
    assert _printed_predictions(emu) == _printed_predictions(lava)
    assert emu.splitlines()[-1] == lava.splitlines()[-1]  # the accuracy line
    spikes = np.load(tmp_path / "lava.npy")
    assert spikes.shape == (8, 3, 10)
    assert np.array_equal(np.load(tmp_path / "emulator.npy"), spikes)


@pytest.mark.parametrize(
    ("case", "words"),
    [
        ("out_is_net", ("--out", "is the input net")),
        ("out_is_input", ("--out", "is the input --input")),
        ("out_is_input_via_link", ("--out", "is the input --input")),
        ("out_exists", ("exists (use --force to overwrite)",)),
        ("out_is_folder", ("is a folder",)),
        ("out_under_a_file", ("cannot create files in",)),
        ("images_without_steps", ("have no time axis", "--steps")),
        ("labels_too_few", ("y3.npy", "labels have shape (3,), expected (8,)")),
        ("label_out_of_range", ("ybad.npy", "label 10 at index 2", "10 classes")),
    ],
)
def test_bad_runs_are_refused_and_touch_nothing(
    write_net, images, tmp_path, case, words, cli_refusal
):
    net_path = write_net(random_network(SMALL, seed=0))
    xf, yf, _, _ = images
    np.save(tmp_path / "y3.npy", np.arange(3))
    np.save(tmp_path / "ybad.npy", np.array([0, 1, 10, 0, 0, 0, 0, 0]))
    (tmp_path / "exists.npy").write_bytes(b"keep")
    (tmp_path / "folder").mkdir()
    (tmp_path / "link.npy").symlink_to(xf)
    out, extra, steps = tmp_path / "new.npy", [], ["--steps", "4"]
    if case == "out_is_net":
        out = net_path
    elif case == "out_is_input":
        out = xf
    elif case == "out_is_input_via_link":
        out = tmp_path / "link.npy"
    elif case == "out_exists":
        out = tmp_path / "exists.npy"
    elif case == "out_is_folder":
        out = tmp_path / "folder"
    elif case == "out_under_a_file":
        out = tmp_path / "exists.npy" / "s.npy"
    elif case == "images_without_steps":
        steps = []
    elif case == "labels_too_few":
        extra = ["--labels", tmp_path / "y3.npy"]
    elif case == "label_out_of_range":
        extra = ["--labels", tmp_path / "ybad.npy"]
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file() and not p.is_symlink()}
    cli_refusal(["run", net_path, "--input", xf, *steps, *extra, "--out", out], *words)
    after = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file() and not p.is_symlink()}
    assert after == before  # every input byte-identical, nothing new written


def test_force_overwrites_an_existing_output(write_net, images, tmp_path, capsys):
    net_path = write_net(random_network(SMALL, seed=0))
    out = tmp_path / "s.npy"
    out.write_bytes(b"old")
    _run(capsys, net_path, "--input", images[0], "--steps", 2, "--out", out, "--force")
    assert np.load(out).shape == (8, 2, 10)


@pytest.mark.parametrize("readout", [False, True], ids=["spike-count", "readout-v"])
def test_the_emulator_back_end_keeps_no_hidden_layer_trace(readout, monkeypatch):
    """`run` needs the output layer only: the emulator keeps the output spikes (and, for a
    readout, its u and v) and per-sample counts of the hidden layers, not their (N, T, *shape)
    traces (the CIFAR-sized net: 0.9 GiB more for 2048 samples at T = 16), with the same
    output and predictions as a full run."""
    from snn2loihi.deploy.runner import Runner

    net = random_network(SMALL, seed=1)
    if readout:
        last = net.layers[-1]
        net = dataclasses.replace(net, layers=(*net.layers[:-1], dataclasses.replace(last, neuron=dataclasses.replace(last.neuron, vth_mant=2**17 - 1))))  # fmt: skip
    x = (np.random.default_rng(0).random((6, 5, *SMALL.input_shape)) < 0.4).astype(np.uint8)
    full = Emulator(net).run(x, record_state=True)
    kept = []
    run = Emulator.run

    def spy(self, *args, **kwargs):
        res = run(self, *args, **kwargs)
        kept.append([layer.spikes is not None for layer in res.layers])
        return res

    monkeypatch.setattr(Emulator, "run", spy)
    out = Runner(net, "unused.net", "emulator").run(x)
    assert kept == [[False] * (len(full.layers) - 1) + [True]]
    assert np.array_equal(out.spikes, full.output.numpy().astype(np.uint8))
    if readout:
        assert out.v_last is not None and np.array_equal(
            out.v_last, full.layers[-1].v[:, -1].numpy()
        )


def test_run_keeps_every_prediction_and_the_readout_v(write_net, images, tmp_path, capsys):
    """``--predictions`` and ``--readout-v`` keep what ``run`` computed for every sample (not
    only the 20 it prints); images take the T the file records when ``--steps`` is not given;
    existing outputs need ``--force``."""
    net = dataclasses.replace(random_network(READOUT_NET, seed=1), steps=4)  # T recorded
    net_path = write_net(net)
    xf, _, x, _ = images
    pred, v = tmp_path / "pred.npy", tmp_path / "v.npy"
    args = [net_path, "--input", xf, "--out", tmp_path / "s.npy", "--predictions", pred]
    stdout = _run(capsys, *args, "--readout-v", v)
    trace = Emulator(net_path).run(np.repeat(x[:, None], 4, axis=1), record_state=True)
    v_last = trace.layers[-1].v[:, -1].numpy()
    np.testing.assert_array_equal(np.load(v), v_last)
    np.testing.assert_array_equal(np.load(pred), predict(READOUT_V, v_last=v_last))
    assert np.load(tmp_path / "s.npy").shape == (8, 4, 10)  # T = 4 from the file
    assert f"wrote {pred}: predicted classes (8,)" in stdout
    before = pred.read_bytes()
    capsys.readouterr()
    assert main(["run", *map(str, args)]) == 2  # --out and --predictions exist
    assert "exists (use --force to overwrite)" in capsys.readouterr().err
    assert pred.read_bytes() == before
    _run(capsys, *args, "--force")


def test_readout_v_of_a_spike_count_network_is_refused(write_net, images, tmp_path, cli_refusal):
    net_path = write_net(random_network(SMALL, seed=0))
    out = tmp_path / "v.npy"
    cli_refusal(["run", net_path, "--input", images[0], "--steps", 2, "--out", tmp_path / "s.npy",
                 "--readout-v", out], "--readout-v", "predicts by max spike count")  # fmt: skip
    assert not out.exists() and not (tmp_path / "s.npy").exists()
