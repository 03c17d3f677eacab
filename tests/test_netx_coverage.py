"""The NetX surface beyond snn2loihi's own exports, without Lava: records, the reader and writer,
netx's delay mapping and reset schedule, the sigma-delta steps, the global-clock emulator,
``inspect`` and refusals. (Equality with Lava itself: tests/test_netx_lava.py.)"""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from snn2loihi.deploy.emulator import Emulator
from snn2loihi.deploy.timeline import Timeline, built_layers, drive_for
from snn2loihi.errors import InputDataError, UnsupportedLayerError
from snn2loihi.netx_io import describe_layers, read_network
from snn2loihi.readout import READOUT_V, prediction_rule
from snn2loihi.schema import (
    CubaNeuron,
    DenseLayer,
    InputLayer,
    NetXNetwork,
    RecurrentDenseLayer,
    SigmaDeltaNeuron,
)
from snn2loihi.sigma_delta import (
    SigmaDeltaState,
    delta_step,
    int32_safe_bound,
    sigma_delta_step,
    sigma_step,
)

LAVADL = Path(__file__).resolve().parents[2] / "shared" / "data" / "lavadl-nets"
SIX = ("tiny", "pilotnet_lif", "pilotnet_sdnn", "bootstrap_mnist", "netx_mnist", "oxford")
needs_corpus = pytest.mark.skipif(not LAVADL.is_dir(), reason="../shared/data/lavadl-nets absent")

LIF = CubaNeuron(i_decay=1024, v_decay=512, vth_mant=40)


def _dense(n_out, n_in, seed, **kw):
    rng = np.random.default_rng(seed)
    w = rng.integers(-60, 80, (n_out, n_in)) * 2
    return DenseLayer(shape=(n_out,), weight=w, neuron=kw.pop("neuron", LIF), **kw)


def test_timeline_reset_schedule_is_netx_s():
    # layer j resets at the start of step t (1-based) when t % R == (K + 1 + j) % R
    tl = Timeline(reset_interval=4, reset_offset=1)
    assert tl.resets(0, 9) == [False, True, False, False, False, True, False, False, False]
    assert tl.resets(2, 9) == [False, False, False, True, False, False, False, True, False]
    assert Timeline().resets(3, 5) == [False] * 5
    with pytest.raises(InputDataError, match="reset-interval"):
        Timeline(reset_interval=0)


def test_delay_matrix_maps_like_netx():
    ly = _dense(3, 4, 0, delay=np.array([1, 2, 70]))  # (Nout,): rows first, clamped at 62
    assert ly.delay_matrix().tolist() == [[1] * 4, [2] * 4, [62] * 4]
    ly = _dense(3, 4, 0, delay=np.array([0, 1, 2, 3]))  # (Nin,): columns
    assert ly.delay_matrix().tolist() == [[0, 1, 2, 3]] * 3
    assert _dense(3, 4, 0, delay=np.array(5)).delay_matrix().tolist() == [[5] * 4] * 3


def test_sigma_delta_steps_by_hand():
    z = SigmaDeltaState.zeros(torch.zeros(3, dtype=torch.int64))
    # Delta: act = a << 12; change 100<<12 sent (>>6) when |delta| >= vth << 12
    msg, st = delta_step(torch.tensor([100, 1, 0]), z, vth_mant=2)
    assert msg.tolist() == [100 << 6, 0, 0] and st.residue.tolist() == [0, 1 << 12, 0]
    # SigmaDelta: sigma += a; act = relu(sigma + bias << 12)
    msg, st = sigma_delta_step(torch.tensor([5000, -9000, 4096]), z, torch.tensor([1, 0, 0]), 1)
    assert st.sigma.tolist() == [5000, -9000, 4096]
    assert st.act.tolist() == [5000 + 4096, 0, 4096]
    assert msg.tolist() == [(9096 >> 6), 0, 4096 >> 6]
    msg2, _ = sigma_delta_step(torch.tensor([0, 0, 0]), st, torch.tensor([1, 0, 0]), 1)
    assert msg2.tolist() == [0, 0, 0]  # no change, nothing sent
    out, st = sigma_step(torch.tensor([7, -3, 0]), z)
    out, st = sigma_step(torch.tensor([1, 1, 1]), st)
    assert out.tolist() == [8, -2, 1]


def test_records_round_trip_through_the_file(write_net, tmp_path):
    sd = SigmaDeltaNeuron(vth_mant=3)
    net = NetXNetwork(
        layers=(
            InputLayer((6,), neuron=CubaNeuron(4096, 100, 20, type_name="LOIHI"), weight=7, bias=2),
            _dense(5, 6, 1, delay=np.array([0, 3, 1, 2, 0])),
            RecurrentDenseLayer(
                shape=(4,), weight=_dense(4, 5, 2).weight, neuron=LIF,
                weight_rec=_dense(4, 4, 3).weight,
            ),
            _dense(3, 4, 4, neuron=CubaNeuron.netx_default_neuron()),
        ),
        input_shape=(6,),
    )  # fmt: skip
    assert read_network(write_net(net)) == net
    sdnn = NetXNetwork(
        layers=(
            InputLayer((6,), neuron=sd),
            _dense(5, 6, 1, neuron=sd, bias=np.arange(5)),
            _dense(2, 5, 2, neuron=SigmaDeltaNeuron(vth_mant=0, sigma_output=True)),
        ),
        input_shape=(6,),
    )
    assert read_network(write_net(sdnn)) == sdnn
    with h5py.File(write_net(net, "probe.net")) as f:  # NetX's own default: no neuron group
        assert "neuron" not in f["layer/3"]


def test_drive_follows_the_input_and_the_input_neuron(write_net):
    cuba_in = NetXNetwork((InputLayer((6,), neuron=LIF), _dense(3, 6, 0)), (6,))
    sd_in = NetXNetwork(
        (InputLayer((6,), neuron=SigmaDeltaNeuron(0)), _dense(3, 6, 0, neuron=SigmaDeltaNeuron(1))),
        (6,),
    )
    plain = NetXNetwork((InputLayer((6,)), _dense(3, 6, 0)), (6,))
    assert drive_for(cuba_in, time_axis=False) == "bias"
    assert drive_for(cuba_in, time_axis=True) == "skip"
    assert drive_for(sd_in, time_axis=True) == "skip"
    with pytest.raises(InputDataError, match="Delta"):
        drive_for(sd_in, time_axis=False)
    with pytest.raises(InputDataError, match="no input neuron"):
        drive_for(plain, time_axis=False)
    # a skipped CUBA input layer gives spikes to the next synapse; a skipped SDNN one graded
    assert [b.binary_input for b in built_layers(cuba_in, "skip", False)] == [True]
    assert [b.binary_input for b in built_layers(sd_in, "skip", False)] == [False]
    assert [b.index for b in built_layers(cuba_in, "bias", False)] == [0, 1]


def test_global_clock_with_resets_equals_the_per_sample_convention():
    """netx's reset_interval = T, reset_offset = 1 on a long stream is the per-sample run; on
    the global clock, one sample padded with its pipeline delay shows the same spikes."""
    net = NetXNetwork(
        (InputLayer((12,)), _dense(10, 12, 0), _dense(6, 10, 1), _dense(4, 6, 2)), (12,)
    )
    rng = np.random.default_rng(0)
    x = (rng.random((3, 8, 12)) < 0.5).astype(np.uint8)
    emu = Emulator(net)
    per_sample = emu.run(x).layers
    depth = net.num_synaptic_layers
    padded = np.concatenate([x, np.zeros((3, depth, 12), np.uint8)], axis=1)
    traces = emu.run_netx(padded, drive="input", timeline=Timeline(8 + depth, 1))
    for k, (ps, tr) in enumerate(zip(per_sample, traces, strict=True)):
        window = tr.messages[:, k + 1 : k + 1 + 8]
        assert torch.equal(window, ps.spikes), f"layer {k}"
    assert sum(int(ps.spikes.sum()) for ps in per_sample) > 0


def test_the_per_sample_emulator_refuses_what_needs_the_global_clock():
    net = NetXNetwork((InputLayer((6,), neuron=LIF), _dense(3, 6, 0)), (6,))
    with pytest.raises(UnsupportedLayerError, match="global clock"):
        Emulator(net).run(np.zeros((1, 4, 6), np.uint8))


def test_bias_drive_checks_lava_s_int16_bias(write_net):
    net = NetXNetwork((InputLayer((6,), neuron=LIF), _dense(3, 6, 0)), (6,))
    with pytest.raises(InputDataError, match="int16"):
        Emulator(net).run_netx(np.full((1, 6), 40000), drive="bias", steps=4)
    with pytest.raises(InputDataError, match="as spikes"):  # skipped CUBA input: spikes only
        Emulator(net).run_netx(np.full((1, 4, 6), 3), drive="skip")


@needs_corpus
@pytest.mark.parametrize("name", SIX)
def test_every_lava_dl_network_reads_and_round_trips(name, write_net):
    net = read_network(LAVADL / f"{name}.net")
    again = read_network(write_net(net))
    if isinstance(net.layers[0], InputLayer):
        assert again == net
    else:  # the writer adds the input layer that slayer's files leave out
        assert again.layers[1:] == net.layers and again.input_shape == net.input_shape


MNIST_TEST = LAVADL.parent / "mnist" / "mnist_test.npz"


@needs_corpus
@pytest.mark.skipif(not MNIST_TEST.is_file(), reason="../shared/data/mnist absent")
def test_bootstrap_mnist_reads_out_by_v_at_its_sample_length(tmp_path, capsys):
    """bootstrap's readout is an Affine block (no neuron group: NetX's default current
    integrator, never spiking): the rule is its v, T its tSample (16). Read by spike count it
    predicted class 0 for every image (about 10%); by v it scores as its tutorial reports."""
    from snn2loihi.app.cli import main

    net = read_network(LAVADL / "bootstrap_mnist.net")
    assert prediction_rule(net) == READOUT_V and net.steps == 16
    out = tmp_path / "e.json"
    argv = ["eval", str(LAVADL / "bootstrap_mnist.net"), "--data", str(MNIST_TEST)]
    assert main([*argv, "--samples", "200", "--json", str(out), "--no-progress"]) == 0
    capsys.readouterr()
    score = json.loads(out.read_text())["scores"]["emulator"]
    assert score["correct"] >= 196  # 98.99% on all 10,000 (docs/deploy.md)


def _write_pool_layer(path: Path) -> None:
    with h5py.File(path, "a") as f:
        g = f["layer"].create_group(str(len(f["layer"])))
        g.create_dataset("type", (1,), "S10", [b"pool"])
        g.create_dataset("shape", data=np.array([3]))


def test_inspect_marks_what_cannot_run_and_run_refuses_it(write_net, tmp_path, capsys, cli_refusal):
    from snn2loihi.app.cli import main

    path = write_net(NetXNetwork((InputLayer((6,)), _dense(3, 6, 0)), (6,)))
    _write_pool_layer(path)
    entries = describe_layers(path)
    assert [e.kind for e in entries] == ["input", "dense", "pool"]
    assert entries[2].record is None and "pool" in entries[2].refused
    assert main(["inspect", str(path)]) == 0
    out = capsys.readouterr().out
    assert "NOT RUNNABLE" in out and "1 of 3 layers cannot run" in out
    x = tmp_path / "x.npy"
    np.save(x, np.zeros((1, 4, 6), np.uint8))
    err = cli_refusal(["run", path, "--input", x, "--out", tmp_path / "o.npy"])
    assert "layer 2" in err and "pool" in err


def test_rf_neurons_are_refused_by_name(write_net, tmp_path, capsys, cli_refusal):
    from snn2loihi.app.cli import main

    path = write_net(NetXNetwork((InputLayer((6,)), _dense(3, 6, 0)), (6,)))
    with h5py.File(path, "a") as f:
        del f["layer/1/neuron/type"]
        f["layer/1/neuron"].create_dataset("type", data="RF_IZ")
    with pytest.raises(UnsupportedLayerError, match=r"layer 1.*RF_IZ.*resonate"):
        read_network(path)
    assert main(["inspect", str(path)]) == 0
    assert "NOT RUNNABLE" in capsys.readouterr().out
    err = cli_refusal(["parity", path, "--steps", "4"])
    assert "layer 1" in err and "RF_IZ" in err


@pytest.mark.cuda
def test_emulator_on_cuda_equals_cpu_on_the_global_clock():
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    net = NetXNetwork(
        (InputLayer((8,), neuron=LIF), _dense(6, 8, 0, delay=np.arange(6) % 3), _dense(3, 6, 1)),
        (8,),
    )
    x = np.random.default_rng(0).integers(0, 60, (4, 8))
    cpu = Emulator(net).run_netx(x, drive="bias", steps=12, record=("u", "v"))
    gpu = Emulator(net, device="cuda").run_netx(x, drive="bias", steps=12, record=("u", "v"))
    for a, b in zip(cpu, gpu, strict=True):
        assert torch.equal(a.messages, b.messages)
        assert all(torch.equal(a.states[k], b.states[k]) for k in a.states)


def test_cli_refuses_what_lava_cannot_drive(write_net, tmp_path, cli_refusal):
    sd_in = write_net(
        NetXNetwork(
            (
                InputLayer((6,), neuron=SigmaDeltaNeuron(0)),
                _dense(3, 6, 0, neuron=SigmaDeltaNeuron(1)),
            ),
            (6,),
        )
    )
    images = tmp_path / "images.npy"
    np.save(images, np.ones((2, 6), np.int64))
    before = images.read_bytes()
    err = cli_refusal(["run", sd_in, "--input", images, "--steps", 4, "--out", tmp_path / "o.npz"])
    assert "Delta" in err
    err = cli_refusal(["parity", sd_in, "--clock", "sample", "--steps", 4, "--samples", 1])
    assert "--clock sample" in err
    cuba_in = write_net(NetXNetwork((InputLayer((6,), neuron=LIF), _dense(3, 6, 0)), (6,)))
    err = cli_refusal(["run", cuba_in, "--input", images, "--out", tmp_path / "o.npz"])
    assert "--steps" in err
    err = cli_refusal(["run", cuba_in, "--input", images, "--steps", 4, "--record", "s,w",
                       "--out", tmp_path / "o.npz"])  # fmt: skip
    assert "'s,w'" in err
    assert images.read_bytes() == before and not (tmp_path / "o.npz").exists()


def test_run_records_on_the_emulator(write_net, tmp_path, capsys):
    from snn2loihi.app.cli import main

    net = write_net(
        NetXNetwork(
            (InputLayer((6,), neuron=LIF), _dense(5, 6, 0, delay=np.arange(5)), _dense(3, 5, 1)),
            (6,),
        )
    )
    images = tmp_path / "images.npy"
    np.save(images, np.random.default_rng(0).integers(0, 60, (2, 6)))
    out = tmp_path / "rec.npz"
    argv = ["run", net, "--input", images, "--steps", 9, "--reset-interval", 4,
            "--record", "s,u,v", "--out", out]  # fmt: skip
    assert main([str(a) for a in argv]) == 0
    assert "drive 'bias'" in capsys.readouterr().out
    rec = np.load(out)
    assert sorted(rec.files) == sorted(f"{k}{i}" for k in "suv" for i in (0, 1, 2))
    assert rec["s0"].shape == (2, 9, 6) and rec["u1"].shape == (2, 9, 5)
    assert rec["v2"].dtype == np.int32 and rec["s1"].any()


def test_sdnn_int32_state_equals_the_int64_path_within_its_bound():
    """Sigma-delta state in int32 without wraps (the emulator's choice when
    int32_safe_bound holds) gives the integers of the int64 path with every wrap."""
    g = torch.Generator().manual_seed(3)
    steps, a_max, bias_max, vth = 12, 2**20, 2**10, 3
    assert int32_safe_bound(a_max, steps, bias_max, vth)
    assert not int32_safe_bound(2**27, steps, bias_max, vth)
    a = torch.randint(-a_max, a_max + 1, (steps, 500), generator=g)
    bias = torch.randint(-bias_max, bias_max + 1, (500,), generator=g)
    wide, narrow = SigmaDeltaState.zeros(a[0]), SigmaDeltaState.zeros(a[0], torch.int32)
    sig_w, sig_n = SigmaDeltaState.zeros(a[0]), SigmaDeltaState.zeros(a[0], torch.int32)
    for t in range(steps):
        m_w, wide = sigma_delta_step(a[t], wide, bias, vth)
        m_n, narrow = sigma_delta_step(a[t].int(), narrow, bias.int(), vth, int32_safe=True)
        assert m_n.dtype == torch.int32 and torch.equal(m_n.long(), m_w)
        for name in ("sigma", "act", "residue"):
            assert torch.equal(getattr(narrow, name).long(), getattr(wide, name))
        s_w, sig_w = sigma_step(a[t], sig_w)
        s_n, sig_n = sigma_step(a[t].int(), sig_n, int32_safe=True)
        assert torch.equal(s_n.long(), s_w)
