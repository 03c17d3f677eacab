"""`eval` for every network (#32): the rate coding of lava-dl's NetX MNIST tutorial, streams
from an .npz, Lava's global clock for networks that need it, and one-line refusals."""

from __future__ import annotations

import json

import numpy as np
import pytest

from snn2loihi.app.cli import main
from snn2loihi.deploy.emulator import Emulator
from snn2loihi.deploy.encoding import RateEncoded, rate_encode
from snn2loihi.deploy.timeline import Timeline
from snn2loihi.readout import predict, prediction_rule
from snn2loihi.schema import CubaNeuron, DenseLayer, InputLayer, NetXNetwork, RecurrentDenseLayer

LIF = CubaNeuron(i_decay=1024, v_decay=512, vth_mant=40)


def _dense(n_out, n_in, seed, cls=DenseLayer, **kw):
    rng = np.random.default_rng(seed)
    w = rng.integers(-40, 90, (n_out, n_in)) * 2
    return cls(shape=(n_out,), weight=w, neuron=LIF, **kw)


def _recurrent() -> NetXNetwork:
    """No input neuron, a recurrent hidden layer: runs on the global clock only."""
    rec = np.random.default_rng(9).integers(-30, 30, (5, 5)) * 2
    return NetXNetwork(
        (InputLayer((6,)), _dense(5, 6, 1, RecurrentDenseLayer, weight_rec=rec), _dense(3, 5, 2)),
        (6,),
    )


def _input_neuron() -> NetXNetwork:
    """lava-dl's layout: an input layer with a CUBA neuron, driven through its bias."""
    neuron = CubaNeuron(4096, 100, 20, type_name="LOIHI")
    return NetXNetwork(
        (InputLayer((6,), neuron=neuron, weight=7, bias=2), _dense(5, 6, 1), _dense(3, 5, 2)),
        (6,),
    )


def tutorial_encoder(images: np.ndarray, n_ts: int) -> np.ndarray:
    """InpImgToSpk of lava-dl's NetX MNIST tutorial over one continuous Lava run of every image
    (time_step 1, 2, ...): run_spk, then run_post_mgmt where post_guard holds. (N*T, pixels)."""
    flat = images.reshape(len(images), -1)
    inp_img = np.zeros(flat.shape[1])
    v = np.zeros(flat.shape[1])
    curr_img_id, sent = 0, []
    for time_step in range(1, len(images) * n_ts + 1):
        if time_step % n_ts == 1:  # run_spk
            inp_img = np.zeros(inp_img.shape, dtype=float)
            v = np.zeros(v.shape, dtype=float)
        v[:] = v[:] + (1 * inp_img + 0)[:]
        mask = v > 1
        v[mask] = 0
        sent.append(mask.copy())
        if time_step % n_ts == 1:  # post_guard, run_post_mgmt
            inp_img = flat[curr_img_id] / 255
            v = np.zeros(v.shape, dtype=float)
            curr_img_id += 1
    return np.array(sent, dtype=np.uint8)


def test_rate_code_is_the_tutorials_encoder_image_by_image():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (5, 1, 3, 4), dtype=np.uint8)
    images[0, 0, 0, :3] = [255, 0, 128]
    spikes = rate_encode(images, 12)
    assert spikes.shape == (5, 12, 1, 3, 4) and spikes.dtype == np.uint8
    expected = tutorial_encoder(images, 12)
    np.testing.assert_array_equal(spikes.reshape(60, 12), expected)
    # 255: v = 1, 2 > 1 (spike), ...: every second step from the third; 128/255 likewise
    assert np.flatnonzero(spikes[0, :, 0, 0, 0]).tolist() == [2, 4, 6, 8, 10]
    assert np.flatnonzero(spikes[0, :, 0, 0, 2]).tolist() == [2, 4, 6, 8, 10]
    assert not spikes[0, :, 0, 0, 1].any() and not spikes[:, 0].any()
    np.testing.assert_array_equal(RateEncoded(images, 12)[1:4], spikes[1:4])


def _expected(net: NetXNetwork, x: np.ndarray, drive: str, steps: int) -> list[int]:
    """Predictions of the global-clock emulator run on ``x`` by the network's rule."""
    traces = Emulator(net).run_netx(x, drive=drive, steps=steps, timeline=Timeline())
    return predict(prediction_rule(net), traces[-1].messages.numpy()).tolist()


@pytest.mark.parametrize(
    ("which", "data", "drive"),
    [
        ("recurrent", "rate", "input"),
        ("recurrent", "graded", "input"),
        ("input_neuron", "graded", "bias"),
        ("input_neuron", "stream", "skip"),
    ],
)
def test_eval_runs_any_network_on_its_clock(which, data, drive, write_net, tmp_path, capsys):
    net = {"recurrent": _recurrent, "input_neuron": _input_neuron}[which]()
    path = write_net(net)
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (9, 2, 3), dtype=np.uint8)  # (N, H, W): 6 pixels, flattened
    labels = rng.integers(0, 3, 9)
    steps = 10
    flat = images.reshape(9, 6)
    x = {
        "rate": rate_encode(flat, steps),
        "graded": np.broadcast_to(flat[:, None], (9, steps, 6)),
        "stream": (rng.random((9, steps, 6)) < 0.4).astype(np.uint8),
    }[data]
    np.savez(tmp_path / "d.npz", x=x if data == "stream" else images, y=labels)
    argv = ["eval", path, "--data", tmp_path / "d.npz", "--json", tmp_path / "e.json"]
    argv += ["--no-progress", "--batch-size", 4]
    argv += ["--samples", 7] if data == "stream" else ["--steps", steps]
    argv += ["--encoding", "rate"] if data == "rate" else []
    assert main([str(a) for a in argv]) == 0
    out = json.loads((tmp_path / "e.json").read_text())
    assert out["clock"]["drive"] == drive and out["clock"]["steps"] == steps
    assert out["encoding"] == {"graded": "graded", "rate": "rate", "stream": "stream"}[data]
    fed = flat if drive == "bias" else x
    fed = fed[:7] if data == "stream" else fed  # --samples 7
    assert out["scores"]["emulator"]["predictions"] == _expected(net, fed, drive, steps)
    assert f"global clock (drive '{drive}'" in capsys.readouterr().out


def test_rate_coded_images_on_the_per_sample_clock(write_net, tmp_path):
    """A network without input neuron runs rate-coded images on the per-sample clock, as the
    tutorial's one run with reset_interval T, reset_offset 1 does (deploy/lava_drivers.py)."""
    net = NetXNetwork((InputLayer((6,)), _dense(5, 6, 1), _dense(3, 5, 2)), (6,))
    path = write_net(net)
    rng = np.random.default_rng(2)
    images = rng.integers(0, 256, (7, 6), dtype=np.uint8)
    np.savez(tmp_path / "d.npz", x=images.reshape(7, 2, 3), y=rng.integers(0, 3, 7))
    argv = ["eval", path, "--data", tmp_path / "d.npz", "--steps", 8, "--encoding", "rate"]
    argv += ["--json", tmp_path / "e.json", "--no-progress"]
    assert main([str(a) for a in argv]) == 0
    out = json.loads((tmp_path / "e.json").read_text())
    assert out["clock"] is None and out["encoding"] == "rate"
    spikes = Emulator(net).run(rate_encode(images, 8)).output.numpy()
    assert out["scores"]["emulator"]["predictions"] == predict("spike_count", spikes).tolist()


def test_the_input_aligned_count_window_is_the_tutorials_count_on_one_stream(write_net, tmp_path):
    """``--count-window input`` predicts what counting one continuous stream (every image after
    the other, netx's resets every T steps with offset 1: the tutorial's Lava run, here on the
    emulator's global clock) over the T steps aligned with each input predicts."""
    from snn2loihi.deploy.timeline import drive_for

    def dense(n_out, n_in, seed):  # sparse enough firing for the windows to differ
        w = np.random.default_rng(seed).integers(-60, 60, (n_out, n_in)) * 2
        return DenseLayer(shape=(n_out,), weight=w, neuron=CubaNeuron(1024, 512, 100))

    net = NetXNetwork((InputLayer((6,)), dense(5, 6, 1), dense(3, 5, 2)), (6,))
    path, steps, n = write_net(net), 8, 9
    rng = np.random.default_rng(4)
    images = rng.integers(0, 256, (n, 6), dtype=np.uint8)
    np.savez(tmp_path / "d.npz", x=images.reshape(n, 2, 3), y=rng.integers(0, 3, n))
    argv = ["eval", path, "--data", tmp_path / "d.npz", "--steps", steps, "--encoding", "rate"]
    argv += ["--json", tmp_path / "e.json", "--no-progress", "--count-window", "input"]
    assert main([str(a) for a in argv]) == 0
    out = json.loads((tmp_path / "e.json").read_text())
    stream = np.asarray(rate_encode(images, steps)).reshape(1, n * steps, 6)
    traces = Emulator(net).run_netx(
        stream, drive=drive_for(net, True), timeline=Timeline(reset_interval=steps, reset_offset=1)
    )
    windows = traces[-1].messages.numpy().reshape(n, steps, 3)
    assert out["count_window"] == "input"
    assert out["scores"]["emulator"]["predictions"] == predict("spike_count", windows).tolist()
    own = Emulator(net).run(rate_encode(images, steps)).output.numpy()
    assert predict("spike_count", own).tolist() != predict("spike_count", windows).tolist()


def test_the_input_count_window_is_refused_where_it_cannot_apply(write_net, tmp_path, cli_refusal):
    np.savez(tmp_path / "d.npz", x=np.zeros((2, 2, 3), np.uint8), y=np.array([0, 1]))
    data = ["--data", tmp_path / "d.npz", "--steps", 4, "--count-window", "input"]
    cli_refusal(["eval", write_net(_recurrent()), *data], "per-sample clock", "global clock")
    v_net = NetXNetwork(
        (InputLayer((6,)), _dense(5, 6, 1), DenseLayer((3,), np.ones((3, 5), np.int64) * 2,
                                                        CubaNeuron(4096, 0, 131071))),
        (6,),
    )  # fmt: skip
    cli_refusal(["eval", write_net(v_net), *data], "counts output spikes", "readout_v")


STREAM_CASES = {
    "frame_shape": (lambda x, y: (x[..., :5], y), [], ("s.npz[x]", "shape (4, 6, 5)", "(6)")),
    "too_few_steps": (lambda x, y: (x, y), ["--steps", 9], ("s.npz[x]", "T = 6", "9")),
    "fraction": (
        lambda x, y: (np.where(np.arange(6) == 4, 0.5, x), y), [],
        ("s.npz[x]", "value 0.5", "[0, 0, 4]"),
    ),
    "label": (lambda x, y: (x, np.array([0, 1, 7, 2])), [], ("s.npz[y]", "label 7", "3 classes")),
    "label_count": (lambda x, y: (x, y[:3]), [], ("s.npz[y]", "shape (3,)", "(4,)")),
    "rate_on_streams": (
        lambda x, y: (x, y), ["--encoding", "rate"], ("--encoding rate", "holds streams"),
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", list(STREAM_CASES))
def test_bad_streams_are_one_line(case, write_net, tmp_path, cli_refusal):
    make, extra, words = STREAM_CASES[case]
    x = np.ones((4, 6, 6), dtype=np.float64)
    x, y = make(x, np.array([0, 1, 2, 0]))
    np.savez(tmp_path / "s.npz", x=x, y=y)
    path = write_net(_recurrent())
    cli_refusal(["eval", path, "--data", tmp_path / "s.npz", *extra], *words)


def test_clock_options_a_network_cannot_take_are_one_line(write_net, tmp_path, cli_refusal):
    np.savez(tmp_path / "d.npz", x=np.zeros((2, 2, 3), np.uint8), y=np.array([0, 1]))
    data = ["--data", tmp_path / "d.npz", "--steps", 4]
    cli_refusal(["eval", write_net(_recurrent()), *data, "--clock", "sample"], "global clock")
    cli_refusal(["eval", write_net(_recurrent()), *data, "--reset-offset", 1], "--reset-interval")


@pytest.mark.lava
@pytest.mark.slow  # about 90 s per case on the busy 2-core CPU: one Lava run per sample
@pytest.mark.parametrize(("which", "data"), [("recurrent", "rate"), ("input_neuron", "graded")])
def test_eval_on_both_back_ends_on_the_global_clock(which, data, write_net, tmp_path, capsys):
    """Lava through the same runner: equal spikes and predictions on the global clock."""
    path = write_net({"recurrent": _recurrent, "input_neuron": _input_neuron}[which]())
    rng = np.random.default_rng(4)
    np.savez(tmp_path / "d.npz", x=rng.integers(0, 256, (3, 2, 3), np.uint8), y=np.arange(3))
    argv = ["eval", path, "--data", tmp_path / "d.npz", "--steps", 8, "--backend", "both"]
    argv += ["--json", tmp_path / "e.json", "--no-progress", "--encoding", data]
    assert main([str(a) for a in argv]) == 0
    out = json.loads((tmp_path / "e.json").read_text())
    assert out["agreement"]["equal"] and out["agreement"]["output_spikes_equal"]
    assert out["clock"]["drive"] == {"recurrent": "input", "input_neuron": "bias"}[which]
    assert "parity    predictions equal 3/3" in capsys.readouterr().out
