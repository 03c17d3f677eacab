"""NIR out and in: export --nir, convert model.nir, the exact round trip, refusals, real libraries."""

from __future__ import annotations

import dataclasses
import json

import h5py
import numpy as np
import pytest
import torch
from nir_library_helpers import (
    accuracy,
    convert_and_parity_cli,
    digits,
    digits_npz,
    train_digits,
)

from snn2loihi.export.errors import NirFormatError, NotDeployableError
from snn2loihi.export.nir_convert import convert_nir, emulator_result
from snn2loihi.export.nir_export import write_nir
from snn2loihi.export.pipeline import deployable_network
from snn2loihi.netx_io import read_network, write_network
from snn2loihi.testing.netgen import SMALL, NetSpec, random_network
from snn2loihi.testing.nirgen import DT
from snn2loihi.testing.nirgen import leaky_output_graph as _leaky_output_graph
from snn2loihi.testing.nirgen import spike_streams as _spike_streams

nir = pytest.importorskip("nir")

SPECS = {
    "small": SMALL,
    "small-readout": dataclasses.replace(SMALL, readout=True),
    "dense-only": NetSpec((40,), (), (12, 5), weight_range=(-90, 120)),
}


@pytest.mark.parametrize("name", list(SPECS))
def test_round_trip_random_networks_exact(tmp_path, name):
    net = dataclasses.replace(random_network(SPECS[name], seed=3), steps=8)  # T recorded
    write_nir(net, tmp_path / "m.nir", steps=8)
    report = convert_nir(tmp_path / "m.nir", tmp_path / "m.net")
    assert read_network(tmp_path / "m.net") == net
    write_network(net, tmp_path / "direct.net")
    assert (tmp_path / "m.net").read_bytes() == (tmp_path / "direct.net").read_bytes()
    assert report["integer_graph_kept"] and report["changes"] == []
    assert report["steps"] == 8


def test_round_trip_trained_model_exact_and_cli(tmp_path):
    import sys

    sys.path.insert(0, "tests")
    from train_helpers import calibrated_model

    from snn2loihi.app.cli import main

    model = calibrated_model("digits", steps=4)
    net = deployable_network(model, 8, "model")
    write_nir(net, tmp_path / "m.nir", steps=4)
    calib, _ = digits_npz(tmp_path, 60)
    rc = main(
        [
            "convert",
            str(tmp_path / "m.nir"),
            "--calib",
            str(calib),
            "--out",
            str(tmp_path / "m.net"),
        ]
    )
    assert rc == 0
    assert read_network(tmp_path / "m.net") == net
    report = (tmp_path / "m.report.md").read_text()
    assert "NIR graph, float reference" in report and "emulator on the exported .net" in report


def _graph(nodes, edges):
    return nir.NIRGraph(nodes=nodes, edges=edges, type_check=False)


def _float_graph(neuron):
    rng = np.random.default_rng(0)
    return _graph(
        {
            "input": nir.Input(input_type=np.array([64])),
            "fc1": nir.Affine(weight=rng.normal(0, 0.3, (16, 64)), bias=np.zeros(16)),
            "lif1": neuron,
            "fc2": nir.Affine(weight=rng.normal(0, 0.3, (10, 16)), bias=np.zeros(10)),
            "li": nir.LI(tau=np.full(10, 1e-3), r=np.full(10, 10.0), v_leak=np.zeros(10)),
            "output": nir.Output(output_type=np.array([10])),
        },
        [("input", "fc1"), ("fc1", "lif1"), ("lif1", "fc2"), ("fc2", "li"), ("li", "output")],
    )


def test_float_graph_changes_are_reported(tmp_path):
    tau = np.linspace(5e-4, 1e-3, 16)  # per-neuron time constants: one decay on Loihi
    lif = nir.LIF(
        tau=tau,
        r=tau / 1e-4,
        v_leak=np.zeros(16),
        v_threshold=np.full(16, 1.0),
        v_reset=np.full(16, 0.1),
    )
    nir.write(tmp_path / "f.nir", _float_graph(lif))
    calib, _ = digits_npz(tmp_path, 50)
    report = convert_nir(tmp_path / "f.nir", tmp_path / "f.net", calib=calib, steps=8)
    text = " ".join(report["changes"])
    assert "per-neuron membrane retention" in text and "v_reset" in text
    acc = report["accuracy"]
    assert {"nir_reference_acc", "loihi_form_float_acc", "emulator_acc"} <= set(acc)
    assert not report["integer_graph_kept"]


def test_refusals_name_the_node(tmp_path):
    lif = nir.LIF(
        tau=np.full(16, 1e-3), r=np.full(16, 10.0), v_leak=np.zeros(16), v_threshold=np.ones(16)
    )
    g = _float_graph(lif)
    g.edges.append(("lif1", "fc1"))  # recurrent edge
    nir.write(tmp_path / "r.nir", g)
    with pytest.raises(NotDeployableError, match="node 'fc1'"):
        convert_nir(tmp_path / "r.nir", tmp_path / "r.net")
    g = _float_graph(lif)  # a cycle without a synapse: no dense_rec form
    g.edges.append(("lif1", "lif1"))
    nir.write(tmp_path / "rec.nir", g)
    with pytest.raises(NotDeployableError, match="node 'lif1' \\(LIF\\): recurrent edge into it"):
        convert_nir(tmp_path / "rec.nir", tmp_path / "r.net")
    g = _float_graph(nir.Delay(delay=np.ones(16)))
    nir.write(tmp_path / "d.nir", g)
    with pytest.raises(NirFormatError, match="node 'lif1' \\(Delay\\)"):
        convert_nir(tmp_path / "d.nir", tmp_path / "d.net")
    assert not (tmp_path / "r.net").exists() and not (tmp_path / "d.net").exists()


def test_cli_refusal_is_one_line_naming_file_and_node(tmp_path, capsys):
    from snn2loihi.app.cli import main

    lif = nir.LIF(
        tau=np.full(16, 1e-3), r=np.full(16, 10.0), v_leak=np.zeros(16), v_threshold=-np.ones(16)
    )
    nir.write(tmp_path / "t.nir", _float_graph(lif))
    assert main(["convert", str(tmp_path / "t.nir"), "--out", str(tmp_path / "t.net")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert (
        len(err) == 1 and "t.nir" in err[0] and "fc1 -> lif1" in err[0] and "v_threshold" in err[0]
    )
    assert not (tmp_path / "t.net").exists()


def test_pooling_and_scale_fold(tmp_path):
    rng = np.random.default_rng(1)
    g = _graph(
        {
            "input": nir.Input(input_type=np.array([1, 8, 8])),
            "scale": nir.Scale(scale=np.array([2.0])),
            "pool": nir.AvgPool2d(
                kernel_size=np.array([2, 2]), stride=np.array([2, 2]), padding=np.array([0, 0])
            ),
            "conv": nir.Conv2d(
                input_shape=(4, 4),
                weight=rng.normal(0, 1, (3, 1, 3, 3)),
                stride=1,
                padding=1,
                dilation=1,
                groups=1,
                bias=np.zeros(3),
            ),
            "if1": nir.IF(r=np.full(3, 1e4), v_threshold=np.full(3, 0.5)),
            "sum": nir.SumPool2d(
                kernel_size=np.array([2, 2]), stride=np.array([2, 2]), padding=np.array([0, 0])
            ),
            "flat": nir.Flatten(input_type={"input": np.array([3, 2, 2])}, start_dim=0),
            "fc": nir.Affine(weight=rng.normal(0, 1, (10, 12)), bias=np.zeros(10)),
            "out_li": nir.I(r=np.full(10, 1e4)),
            "output": nir.Output(output_type=np.array([10])),
        },
        [
            ("input", "scale"),
            ("scale", "pool"),
            ("pool", "conv"),
            ("conv", "if1"),
            ("if1", "sum"),
            ("sum", "flat"),
            ("flat", "fc"),
            ("fc", "out_li"),
            ("out_li", "output"),
        ],
    )
    nir.write(tmp_path / "p.nir", g)
    calib, _ = digits_npz(tmp_path, 40)
    report = convert_nir(tmp_path / "p.nir", tmp_path / "p.net", calib=calib, steps=8)
    net = read_network(tmp_path / "p.net")
    conv = net.layers[1]
    assert conv.weight.shape == (3, 1, 6, 6) and conv.stride == (2, 2) and conv.padding == (2, 2)
    assert net.layers[3].weight.shape == (10, 48)
    assert report["accuracy"]["loihi_form_float_acc"] == report["accuracy"]["nir_reference_acc"]


def _conv_graph(metadata: dict | None = None):
    """input 1x8x8 -> Conv2d(3, k3) -> IF -> Flatten -> Affine -> I -> output."""
    rng = np.random.default_rng(1)
    side = 6
    g = _graph(
        {
            "input": nir.Input(input_type=np.array([1, 8, 8])),
            "conv": nir.Conv2d(
                input_shape=(8, 8),
                weight=rng.normal(0, 1, (3, 1, 3, 3)),
                stride=1,
                padding=0,
                dilation=1,
                groups=1,
                bias=np.zeros(3),
            ),
            "if1": nir.IF(r=np.full(3, 1e4), v_threshold=np.full(3, 0.5)),
            "flat": nir.Flatten(input_type={"input": np.array([3, side, side])}, start_dim=0),
            "fc": nir.Affine(weight=rng.normal(0, 1, (10, 3 * side * side)), bias=np.zeros(10)),
            "out_li": nir.I(r=np.full(10, 1e4)),
            "output": nir.Output(output_type=np.array([10])),
        },
        [("input", "conv"), ("conv", "if1"), ("if1", "flat"), ("flat", "fc"),
         ("fc", "out_li"), ("out_li", "output")],
    )  # fmt: skip
    g.metadata = metadata or {}
    return g


@pytest.mark.parametrize(
    ("stride", "metadata", "words"),
    [
        (0, None, ("node 'conv' (Conv2d): stride [0.0, 0.0] is not 1 or 2 integers in 1..127",)),
        (1, {"snn2loihi_dt": float("nan")}, ("graph metadata snn2loihi_dt = nan",)),
        (1, {"snn2loihi_dt": float("inf")}, ("graph metadata snn2loihi_dt = inf",)),
        (1, {"snn2loihi_steps": float("nan")}, ("graph metadata snn2loihi_steps = nan",)),
        (1, {"snn2loihi_steps": 2.5}, ("snn2loihi_steps = 2.5 must be an integer",)),
        (1, {"snn2loihi_steps": 1e300}, ("graph metadata snn2loihi_steps = 1e+300 must be in",)),
        (1, {"snn2loihi_steps": 5000}, ("snn2loihi_steps = 5000 must be in 1..4096 (the T a",)),
    ],
)
def test_bad_geometry_and_metadata_are_refused(tmp_path, cli_refusal, stride, metadata, words):
    nir.write(tmp_path / "g.nir", _conv_graph(metadata))
    if stride != 1:  # nir.Conv2d itself divides by the stride: edit the written file
        with h5py.File(tmp_path / "g.nir", "a") as f:
            f["node/nodes/conv/stride"][...] = stride
    before = (tmp_path / "g.nir").read_bytes()
    err = cli_refusal(["convert", tmp_path / "g.nir", "--out", tmp_path / "g.net"])
    assert "g.nir" in err and all(w in err for w in words), err
    assert not (tmp_path / "g.net").exists() and (tmp_path / "g.nir").read_bytes() == before


def test_a_graph_with_valid_metadata_converts(tmp_path):
    nir.write(tmp_path / "g.nir", _conv_graph({"snn2loihi_dt": 1e-4, "snn2loihi_steps": 4}))
    report = convert_nir(tmp_path / "g.nir", tmp_path / "g.net")
    assert read_network(tmp_path / "g.net").layers[1].weight.shape == (3, 1, 3, 3)
    assert report["global_clock"] is None


# -- real libraries -----------------------------------------------------------------------------


def snntorch_digits(tmp_path, steps=8):
    """A 64-32-10 snnTorch Leaky net trained on digits, exported by snnTorch's export_to_nir."""
    snn = pytest.importorskip("snntorch")
    from snntorch import utils
    from snntorch.export_nir import export_to_nir

    torch.manual_seed(0)
    ds = digits()
    lif1 = snn.Leaky(
        beta=torch.full((32,), 0.9),
        threshold=torch.ones(32),
        init_hidden=True,
        reset_mechanism="zero",
    )
    lif2 = snn.Leaky(  # the readout: its membrane at the last step (never reaches 1e3)
        beta=torch.full((10,), 0.9),
        threshold=torch.full((10,), 1e3),
        init_hidden=True,
        output=True,
        reset_mechanism="none",
    )
    net = torch.nn.Sequential(torch.nn.Linear(64, 32), lif1, torch.nn.Linear(32, 10), lif2)

    def run(x, t):
        utils.reset(net)
        for _ in range(t):
            _, mem = net(x)
        return mem

    train_digits(run, net.parameters(), ds.train, steps)
    path = tmp_path / "snntorch.nir"
    nir.write(path, export_to_nir(net, torch.rand(64)))
    return path, accuracy(run, ds.val, steps)


def norse_digits(tmp_path, steps=8):
    """A 64-32-10 Norse LIFCell (CubaLIF) net with an LI readout, exported by norse.to_nir."""
    norse = pytest.importorskip("norse.torch")
    torch.manual_seed(0)
    ds = digits()
    net = norse.SequentialState(
        torch.nn.Linear(64, 32), norse.LIFCell(), torch.nn.Linear(32, 10), norse.LIBoxCell()
    )

    def run(x, t):
        state = None
        for _ in range(t):
            out, state = net(x * 10, state)  # Norse's LIF (dt 1e-3) wants larger currents
        return out

    train_digits(run, net.parameters(), ds.train, steps)
    path = tmp_path / "norse.nir"
    # Norse writes 0-d parameters, which nir.write can only store uncompressed
    nir.write(path, norse.to_nir(net, torch.rand(1, 64)), compression=None)
    return path, accuracy(run, ds.val, steps)


@pytest.mark.parametrize("library", ["snntorch", "norse"])
def test_library_trained_on_digits_converts(tmp_path, library):
    steps = 8
    make, kw = {
        "snntorch": (snntorch_digits, {"readout": "v"}),  # trained on the membrane
        "norse": (norse_digits, {"dialect": "norse", "input_scale": 10 / 255}),
    }[library]
    path, lib_acc = make(tmp_path, steps)
    calib, data = digits_npz(tmp_path, 10**6)
    report = convert_nir(path, tmp_path / "m.net", calib=calib, steps=steps, **kw)
    a = report["accuracy"]
    print(library, lib_acc, a, report["changes"])
    assert lib_acc > 0.8 and a["nir_reference_acc"] > 0.8 and a["emulator_acc"] > 0.8
    assert abs(a["emulator_acc"] - a["nir_reference_acc"]) < 0.05


@pytest.mark.lava
@pytest.mark.multiprocess
@pytest.mark.slow  # about 40 s: two Lava runs plus training both nets
def test_library_networks_pass_parity_on_lava(tmp_path):
    """snnTorch's and Norse's digits nets, converted from their NIR files by ``convert``, pass
    ``parity`` on Lava (issue #13's done criterion), through the CLI."""
    calib, _ = digits_npz(tmp_path, 10**6)
    steps = 8
    for name, make, flags in (
        ("snntorch", snntorch_digits, ("--readout", "v")),
        ("norse", norse_digits, ("--dialect", "norse", "--input-scale", 10 / 255)),
    ):
        path, _ = make(tmp_path, steps)
        convert_and_parity_cli(tmp_path, name, path, calib, steps, *flags)


def snntorch_conv_digits(tmp_path, steps=4, channels=4, epochs=3):
    """Conv2d(1, 4, 3, padding 1) + Leaky, Flatten, Linear + Leaky readout, trained on digits
    (8x8) and exported by snnTorch's export_to_nir. snnTorch needs an unbatched sample (1, 8, 8)
    (NIR's type inference fails on a batched conv input), hence ``Flatten(start_dim=-3)``."""
    snn = pytest.importorskip("snntorch")
    from snntorch import utils
    from snntorch.export_nir import export_to_nir

    torch.manual_seed(0)
    ds = digits()
    shape = (channels, 8, 8)
    lif1 = snn.Leaky(
        beta=torch.full(shape, 0.9),
        threshold=torch.ones(shape),
        init_hidden=True,
        reset_mechanism="zero",
    )
    lif2 = snn.Leaky(
        beta=torch.full((10,), 0.9),
        threshold=torch.full((10,), 1e3),
        init_hidden=True,
        output=True,
        reset_mechanism="none",
    )
    net = torch.nn.Sequential(
        torch.nn.Conv2d(1, channels, 3, padding=1),
        lif1,
        torch.nn.Flatten(start_dim=-3),
        torch.nn.Linear(channels * 64, 10),
        lif2,
    )

    def run(x, t):
        utils.reset(net)
        for _ in range(t):
            _, mem = net(x.view(-1, 1, 8, 8))
        return mem

    train_digits(run, net.parameters(), ds.train, steps, epochs=epochs)
    path = tmp_path / "snntorch_conv.nir"
    nir.write(path, export_to_nir(net, torch.rand(1, 8, 8)))
    return path, accuracy(run, ds.val, steps)


@pytest.mark.lava
@pytest.mark.multiprocess
@pytest.mark.slow  # about 30 s: training, convert, one Lava run
def test_snntorch_conv_network_converts_and_passes_parity_on_lava(tmp_path):
    steps = 4
    path, lib_acc = snntorch_conv_digits(tmp_path, steps)
    calib, _ = digits_npz(tmp_path, 10**6)
    figures, _ = convert_and_parity_cli(tmp_path, "conv", path, calib, steps, "--readout", "v")
    assert [ly["kind"] for ly in figures["layers"]] == ["conv", "dense"]
    net = read_network(tmp_path / "conv.net")
    assert net.input_shape == (1, 8, 8) and net.layers[1].weight.shape == (4, 1, 3, 3)
    report = convert_nir(path, tmp_path / "again.net", calib=calib, steps=steps, readout="v")
    a = report["accuracy"]
    print("snntorch conv", lib_acc, a, report["changes"])
    assert lib_acc > 0.8 and a["emulator_acc"] > 0.8
    assert abs(a["emulator_acc"] - a["nir_reference_acc"]) < 0.05


def snntorch_recurrent_digits(tmp_path, steps=8, epochs=10):
    """64-32-32-10: Linear + Leaky, Linear + RLeaky (all_to_all: a recurrent Linear 32x32),
    Linear + Leaky readout, trained on digits; export_to_nir writes the recurrence as an Affine
    from the LIF back onto itself (``'1.lif' -> '1.w_rec' -> '1.lif'``)."""
    snn = pytest.importorskip("snntorch")
    from snntorch import utils
    from snntorch.export_nir import export_to_nir

    torch.manual_seed(0)
    ds = digits()

    def leaky(n, cls=snn.Leaky, **kw):
        return cls(beta=torch.full((n,), 0.9), threshold=torch.ones(n), init_hidden=True, **kw)

    net = torch.nn.Sequential(
        torch.nn.Linear(64, 32),
        leaky(32, reset_mechanism="zero"),
        torch.nn.Linear(32, 32),
        leaky(32, snn.RLeaky, all_to_all=True, linear_features=32, reset_mechanism="zero"),
        torch.nn.Linear(32, 10),
        snn.Leaky(
            beta=torch.full((10,), 0.9),
            threshold=torch.full((10,), 1e3),
            init_hidden=True,
            output=True,
            reset_mechanism="none",
        ),
    )

    def run(x, t):
        utils.reset(net)
        for _ in range(t):
            _, mem = net(x)
        return mem

    train_digits(run, net.parameters(), ds.train, steps, epochs=epochs)
    path = tmp_path / "snntorch_rec.nir"
    nir.write(path, export_to_nir(net, torch.rand(64)))
    return path, accuracy(run, ds.val, steps)


@pytest.mark.lava
@pytest.mark.multiprocess
@pytest.mark.slow  # about 30 s: training, convert, 2 Lava runs on the global clock
def test_snntorch_recurrent_network_converts_to_dense_rec_and_passes_parity_on_lava(tmp_path):
    steps = 8
    path, lib_acc = snntorch_recurrent_digits(tmp_path, steps)
    calib, _ = digits_npz(tmp_path, 10**6)
    figures, report = convert_and_parity_cli(
        tmp_path, "rec", path, calib, steps, "--readout", "v", samples=2
    )
    net = read_network(tmp_path / "rec.net")
    assert [ly.kind for ly in net.layers] == ["input", "dense", "dense_rec", "dense"]
    assert net.layers[2].weight_rec.shape == (32, 32) and np.any(net.layers[2].weight_rec)
    assert report["global_clock"] == {
        "steps": steps + 3, "reset_interval": steps + 3, "reset_offset": 1, "drive": "input"
    }  # fmt: skip
    a = report["accuracy"]
    print("snntorch recurrent", lib_acc, a)
    assert lib_acc > 0.8 and a["emulator_acc"] > 0.8
    assert abs(a["nir_reference_acc"] - lib_acc) < 0.03  # NIR's recurrence read as snnTorch's
    assert abs(a["emulator_acc"] - a["nir_reference_acc"]) < 0.05


def _recurrent_graph(w_in, w_rec, w_out, bias=None):
    """Input -> Affine -> IF (+ recurrent Linear onto it) -> Affine -> I readout, dt = 1e-4,
    ``r = 1/dt``: integer weights and thresholds are Loihi's integers (kept exactly)."""
    n, m = w_in.shape[0], w_out.shape[0]
    r = np.full(n, 1e4)
    return _graph(
        {
            "input": nir.Input(input_type=np.array([w_in.shape[1]])),
            "fc1": nir.Affine(weight=w_in, bias=np.zeros(n) if bias is None else bias),
            "if1": nir.IF(r=r, v_threshold=np.full(n, 300.0)),
            "rec": nir.Linear(weight=w_rec),
            "fc2": nir.Affine(weight=w_out, bias=np.zeros(m)),
            "out": nir.I(r=np.full(m, 1e4)),
            "output": nir.Output(output_type=np.array([m])),
        },
        [
            ("input", "fc1"),
            ("fc1", "if1"),
            ("if1", "rec"),
            ("rec", "if1"),
            ("if1", "fc2"),
            ("fc2", "out"),
            ("out", "output"),
        ],  # fmt: skip
    )


def test_recurrent_linear_onto_a_neuron_becomes_dense_rec(tmp_path):
    """An integer graph in NIR's recurrent convention is kept exactly as a dense_rec layer; the
    float reference (own spikes of the previous step through W_rec) predicts as the emulator
    does on the global clock."""
    rng = np.random.default_rng(0)
    w_in = rng.integers(-3, 6, (16, 64)).astype(float)
    w_rec = rng.integers(-60, 60, (16, 16)).astype(float)
    w_out = rng.integers(-40, 60, (10, 16)).astype(float)
    nir.write(tmp_path / "r.nir", _recurrent_graph(w_in, w_rec, w_out))
    calib, _ = digits_npz(tmp_path, 60)
    report = convert_nir(
        tmp_path / "r.nir", tmp_path / "r.net", calib=calib, steps=6, input_scale=1.0
    )
    assert report["integer_graph_kept"]
    net = read_network(tmp_path / "r.net")
    rec = net.layers[1]
    assert rec.kind == "dense_rec" and not net.plain
    np.testing.assert_array_equal(rec.weight, w_in)
    np.testing.assert_array_equal(rec.weight_rec, w_rec)
    assert rec.neuron.vth_mant == 300 and net.layers[2].kind == "dense"
    assert report["global_clock"]["steps"] == 6 + 2
    a = report["accuracy"]
    assert a["clock"] == report["global_clock"]
    assert a["prediction_mismatches"] == 0 and a["nir_reference_acc"] == a["emulator_acc"]


def test_recurrence_refusals_name_the_nodes(tmp_path):
    rng = np.random.default_rng(0)
    w_in, w_out = rng.normal(0, 0.3, (16, 64)), rng.normal(0, 0.3, (10, 16))
    calib, _ = digits_npz(tmp_path, 20)
    # float weights on graded pixels (x 1/255) next to recurrent weights: no input weight left
    nir.write(tmp_path / "z.nir", _recurrent_graph(w_in, np.eye(16) * 50, w_out))
    with pytest.raises(NotDeployableError, match="fc1 -> if1'.*rounds to 0"):
        convert_nir(tmp_path / "z.nir", tmp_path / "z.net", calib=calib)
    g = _recurrent_graph(w_in, np.eye(16), w_out)
    g.nodes["rec"] = nir.Linear(weight=np.eye(10))
    g.edges = [e for e in g.edges if "rec" not in e] + [("out", "rec"), ("rec", "out")]
    nir.write(tmp_path / "o.nir", g)  # onto the readout (I): not a spiking neuron
    with pytest.raises(NotDeployableError, match="node 'out' \\(I\\): recurrent edge"):
        convert_nir(tmp_path / "o.nir", tmp_path / "o.net")
    g = _recurrent_graph(w_in, np.ones((16, 8)), w_out)
    nir.write(tmp_path / "s.nir", g)
    with pytest.raises(NotDeployableError, match="node 'rec' \\(Linear\\): weight of shape"):
        convert_nir(tmp_path / "s.nir", tmp_path / "s.net")
    assert not list(tmp_path.glob("*.net"))


@pytest.mark.parametrize("shape", ["conv-stride", "pool-folded", "dense-only"])
def test_export_nir_cli_round_trip_checkpoints(tmp_path, shape, capsys):
    """export CKPT --out a.net --nir a.nir, then convert a.nir: the same .net, bit for bit."""
    import sys

    sys.path.insert(0, "tests")
    from test_export_helpers import random_checkpoint

    from snn2loihi.app.cli import main

    ckpt, _, _ = random_checkpoint(tmp_path, shape)
    a, n, b = tmp_path / "a.net", tmp_path / "a.nir", tmp_path / "b.net"
    assert main(["export", str(ckpt), "--out", str(a), "--nir", str(n), "--no-accuracy"]) == 0
    assert "NIR graph" in capsys.readouterr().out
    assert main(["convert", str(n), "--out", str(b)]) == 0
    assert b.read_bytes() == a.read_bytes()  # the file itself, byte for byte
    assert main(["convert", str(n), "--out", str(b)]) == 2  # exists: --force needed


def test_threshold_node_is_a_neuron_without_memory(tmp_path):
    g = _float_graph(nir.Threshold(threshold=np.full(16, 0.5)))
    nir.write(tmp_path / "t.nir", g)
    calib, _ = digits_npz(tmp_path, 40)
    report = convert_nir(tmp_path / "t.nir", tmp_path / "t.net", calib=calib, steps=6)
    first = read_network(tmp_path / "t.net").synaptic_layers[0][1].neuron
    assert (first.i_decay, first.v_decay) == (4096, 4096)
    assert report["accuracy"]["loihi_form_float_acc"] == report["accuracy"]["nir_reference_acc"]


def test_a_dt_that_overflows_the_float_layers_is_refused(tmp_path, cli_refusal):
    """``--dt 1e308`` made the float layers inf/NaN (numpy warnings, then a weight of -2^63
    refused as out of range): refused naming the options (fuzz round)."""
    nir.write(tmp_path / "g.nir", _conv_graph({}))
    err = cli_refusal(["convert", tmp_path / "g.nir", "--out", tmp_path / "g.net", "--dt", "1e308"])
    assert "--dt 1e+308 and --input-scale 0.00392157 make layer 1" in err, err
    assert "non-finite; give smaller values" in err
    assert not (tmp_path / "g.net").exists()


# -- readouts: a spiking output keeps spiking and predicts by its spike count (issue #32) ------


def _agreement(tmp_path, seed, steps, samples, readout):
    """(share of samples where the converted network's emulator predictions equal the float
    reference of the graph as written, predicting by spike count; the emulator's run; report)."""
    from snn2loihi.export.nir_lower import lower
    from snn2loihi.export.nir_read import read_nir
    from snn2loihi.export.nir_reference import reference_predictions

    path, out = tmp_path / "leaky.nir", tmp_path / f"leaky-{readout}.net"
    nir.write(path, _leaky_output_graph(seed))
    report = convert_nir(path, out, steps=steps, input_scale=1.0, readout=readout, force=True)
    x = _spike_streams(samples, steps, 12, seed)
    graph = lower(read_nir(path), input_scale=1.0, dt=DT).reference
    ref = reference_predictions(graph, x, steps, "count", stream=True).numpy()
    res = emulator_result(out, x, steps, stream=True)[0]
    return float((res.predictions == ref).mean()), res, report


def test_spiking_leaky_output_converts_with_the_spike_count_readout(tmp_path):
    """A recurrent network with a leaky spiking output (beta 0.55), 256 steps, on spike
    inputs: converted as it was trained (spike counts) it agrees with the float graph; read by
    its last v (``--readout v``, convert's rule before issue #32) it agrees far less."""
    from snn2loihi.loihi import VTH_MAX
    from snn2loihi.readout import SPIKE_COUNT, prediction_rule

    steps, samples = 256, 100
    count, res, report = _agreement(tmp_path, 1, steps, samples, "auto")
    net = read_network(tmp_path / "leaky-auto.net")
    assert report["readout"] == "count" and report["prediction"] == SPIKE_COUNT
    assert prediction_rule(net) == SPIKE_COUNT and res.rule == SPIKE_COUNT
    assert net.synaptic_layers[-1][1].neuron.vth_mant < VTH_MAX
    assert not any("read out by its membrane" in c for c in report["changes"])
    assert "max spike count" in (tmp_path / "leaky-auto.report.md").read_text()
    assert res.spikes.sum() > samples  # the output layer spikes
    v, _, report_v = _agreement(tmp_path, 1, steps, samples, "v")
    print(f"agreement with the float graph as written: count {count:.3f}, v {v:.3f}")
    assert report_v["readout"] == "v" and report_v["prediction"] == "readout_v"
    assert any("read out by its membrane" in c for c in report_v["changes"])
    assert count >= 0.85 and count > v


def test_the_report_names_layers_on_a_coarse_threshold_grid(tmp_path, cli_refusal):
    """A layer whose vThMant lands below 64 is named in the report with the measured agreement
    and what sets its scale: here the bound on one step's graded input (up to 255), so 9 weight
    bits change nothing and ``--spike-input`` (the network takes spikes) gives a finer grid."""
    from snn2loihi.export.layer_table import COARSE_VTH_MANT

    path, calib = tmp_path / "r.nir", tmp_path / "s.npz"
    nir.write(path, _leaky_output_graph(0, recurrent=True))
    x = _spike_streams(20, 48, 12, 0)
    np.savez(calib, x=x, y=np.arange(20) % 5)
    out = tmp_path / "r.net"
    report = convert_nir(path, out, calib=calib, input_scale=1.0)
    net = read_network(out)
    vth = {i: ly.neuron.vth_mant for i, ly in net.synaptic_layers}
    assert (
        [c["layer"] for c in report["coarse_grid"]]
        == [i for i, v in vth.items() if v < COARSE_VTH_MANT]
        == [1]
    )
    w = max(abs(net.layers[1].weight).max(), abs(net.layers[1].weight_rec).max())
    assert report["coarse_grid"][0]["weights_set_scale"] is bool(w >= 127) is False
    md = (tmp_path / "r.report.md").read_text()
    assert f"- layer 1: vThMant {vth[1]}: one weight unit is 1/{vth[1]}" in md
    assert "--spike-input if the network takes spikes" in md
    agreement = report["accuracy"]["agreement"]["nir_reference_vs_emulator"]
    assert f"- measured: same prediction as the float reference on {agreement:.4f}" in md
    nine = convert_nir(path, tmp_path / "r9.net", calib=calib, input_scale=1.0, weight_bits=9)
    assert nine["coarse_grid"] == report["coarse_grid"]
    spikes = convert_nir(path, tmp_path / "rs.net", calib=calib, input_scale=1.0, spike_input=True)
    assert spikes["spike_input"] and not spikes["coarse_grid"]
    assert read_network(tmp_path / "rs.net").layers[1].neuron.vth_mant > vth[1]
    x[3, 7, 5] = 2
    np.savez(tmp_path / "g.npz", x=x, y=np.arange(20) % 5)
    argv = ["convert", path, "--out", tmp_path / "g.net", "--calib", tmp_path / "g.npz"]
    cli_refusal(
        [*argv, "--input-scale", 1, "--spike-input"], "g.npz[x]", "value 2 at index [3, 7, 5]"
    )
    assert not (tmp_path / "g.net").exists()


def test_a_coarse_layer_whose_weights_set_its_scale_gets_the_weight_bits_hint():
    from snn2loihi.export.layer_table import coarse_grid_layers
    from snn2loihi.export.report import to_markdown
    from snn2loihi.schema import (
        ConvLayer,
        CubaNeuron,
        DenseLayer,
        InputLayer,
        NetXNetwork,
        Shortcut,
    )

    w = np.arange(-128, 128).reshape(8, 32)  # the 8-bit range, below the 9-bit one
    dense = DenseLayer(shape=(8,), weight=w, neuron=CubaNeuron(4096, 0, 40))
    net = NetXNetwork((InputLayer((32,)), dense), (32,))
    coarse = {"layer": 1, "vth_mant": 40, "weights_set_scale": True, "first": True}
    assert coarse_grid_layers(net, 8) == [coarse]
    assert coarse_grid_layers(net, 9)[0]["weights_set_scale"] is False
    neuron = CubaNeuron(4096, 0, 40)  # a residual layer whose shortcut sets the scale:
    shortcut = Shortcut(source=1, weight=np.full((4, 4, 1, 1), -128), delay=1)
    convs = (
        ConvLayer((4, 4, 4), np.ones((4, 2, 3, 3), np.int64), neuron, padding=(1, 1)),
        ConvLayer((4, 4, 4), np.ones((4, 4, 3, 3), np.int64), neuron, padding=(1, 1),
                  shortcuts=(shortcut,)),
    )  # fmt: skip
    res = NetXNetwork((InputLayer((2, 4, 4)), *convs), (2, 4, 4))
    assert [c["weights_set_scale"] for c in coarse_grid_layers(res, 8)] == [False, True]
    report = {"net": "n.net", "steps": 4, "weight_bits": 8, "input_shape": [32],
              "output_shape": [8], "layers": [], "warnings": [],
              "coarse_grid": coarse_grid_layers(net, 8)}  # fmt: skip
    assert "its largest weight sets its scale: --weight-bits 9 doubles the grid" in to_markdown(
        report
    )


@pytest.mark.parametrize("recurrent", [True, False])
def test_convert_calibrates_on_streams_side_by_side(tmp_path, recurrent, capsys):
    """``--calib`` with streams (N, T, 12): the report puts the float NIR reference, the float
    Loihi form and the emulator side by side, accuracy and per-sample agreement, on the
    streams' own T; a recurrent network's emulator figure runs on the global clock."""
    from snn2loihi.app.cli import main
    from snn2loihi.export.nir_lower import lower
    from snn2loihi.export.nir_read import read_nir
    from snn2loihi.export.nir_reference import reference_predictions

    steps, n = 48, 40
    path, out = tmp_path / "s.nir", tmp_path / "s.net"
    nir.write(path, _leaky_output_graph(2, recurrent=recurrent))
    x = _spike_streams(n, steps, 12, 2)
    y = np.random.default_rng(2).integers(0, 5, n)
    np.savez(tmp_path / "s.npz", x=x, y=y)
    argv = ["convert", path, "--out", out, "--calib", tmp_path / "s.npz", "--input-scale", 1]
    assert main([str(a) for a in argv]) == 0
    printed = capsys.readouterr().out
    acc = json.loads((tmp_path / "s.report.json").read_text())["accuracy"]
    assert read_network(out).steps == steps and acc["input"] == f"streams, T = {steps}"
    lowered = lower(read_nir(path), input_scale=1.0, dt=DT)
    ref = reference_predictions(lowered.reference, x, steps, "count", stream=True).numpy()
    flt = reference_predictions(lowered.loihi, x, steps, "count", stream=True).numpy()
    emu, clock = emulator_result(out, x, steps, stream=True)
    assert (clock is not None) == recurrent and (acc["clock"] == "sample") != recurrent
    assert acc["nir_reference_acc"] == float((ref == y).mean())
    assert acc["loihi_form_float_acc"] == float((flt == y).mean())
    assert acc["emulator_acc"] == float((emu.predictions == y).mean())
    assert acc["agreement"] == {
        "nir_reference_vs_loihi_form": float((ref == flt).mean()),
        "nir_reference_vs_emulator": float((ref == emu.predictions).mean()),
        "loihi_form_vs_emulator": float((flt == emu.predictions).mean()),
    }
    assert f"streams, T = {steps}" in printed and "same prediction: reference/Loihi form" in printed
    assert (
        "- same prediction, NIR float reference / emulator:"
        in (tmp_path / "s.report.md").read_text()
    )


STREAM_CALIB_CASES = {
    "frame_shape": (lambda x, y: (x[..., :11], y), [], ("s.npz", "(11,)")),
    "too_few_steps": (lambda x, y: (x, y), ["--steps", 40], ("s.npz[x]", "T = 32", "40")),
    "fraction": (
        lambda x, y: (np.where(np.arange(12) == 3, 0.5, x), y), [],
        ("s.npz[x]", "value 0.5", "[0, 0, 3]"),
    ),
    "label": (lambda x, y: (x, np.where(y == 1, 7, y)), [], ("s.npz[y]", "label 7", "5 classes")),
}  # fmt: skip


@pytest.mark.parametrize("case", list(STREAM_CALIB_CASES))
def test_bad_calibration_streams_are_one_line(tmp_path, case, cli_refusal):
    make, extra, words = STREAM_CALIB_CASES[case]
    nir.write(tmp_path / "s.nir", _leaky_output_graph(0, recurrent=False))
    x, y = make(_spike_streams(6, 32, 12, 0).astype(np.float64), np.arange(6) % 5)
    np.savez(tmp_path / "s.npz", x=x, y=y)
    argv = ["convert", tmp_path / "s.nir", "--out", tmp_path / "s.net", "--input-scale", 1]
    cli_refusal([*argv, "--calib", tmp_path / "s.npz", *extra], *words)
    assert not (tmp_path / "s.net").exists()


def test_readout_option_cli(tmp_path, cli_refusal, capsys):
    """``convert`` prints the rule and ``inspect`` shows it; ``--readout count`` on a
    non-spiking readout (LI) is refused in one line."""
    from snn2loihi.app.cli import main

    nir.write(tmp_path / "s.nir", _leaky_output_graph(0, recurrent=False))
    assert main(["convert", str(tmp_path / "s.nir"), "--out", str(tmp_path / "s.net"),
                 "--input-scale", "1", "--steps", "32"]) == 0  # fmt: skip
    assert "prediction: max spike count (rule 'spike_count'" in capsys.readouterr().out
    assert main(["inspect", str(tmp_path / "s.net")]) == 0
    out = capsys.readouterr().out
    assert "prediction: max spike count (rule 'spike_count'" in out and "T 32" in out
    lif = nir.LIF(tau=np.full(16, 1e-3), r=np.full(16, 10.0), v_leak=np.zeros(16),
                  v_threshold=np.ones(16))  # fmt: skip
    nir.write(tmp_path / "li.nir", _float_graph(lif))
    err = cli_refusal(["convert", tmp_path / "li.nir", "--out", tmp_path / "li.net",
                       "--readout", "count"])  # fmt: skip
    assert "li.nir" in err and "--readout count" in err and "(fc2 -> li) does not spike" in err
    assert not (tmp_path / "li.net").exists()


def test_a_silent_spiking_output_is_warned_about(tmp_path):
    """snnTorch's membrane-readout idiom (a Leaky output whose threshold is never reached)
    converts by spike count, all class 0: the report says so and names ``--readout v``."""
    lif = nir.LIF(tau=np.full(16, 1e-3), r=np.full(16, 10.0), v_leak=np.zeros(16),
                  v_threshold=np.ones(16))  # fmt: skip
    g = _float_graph(lif)
    g.nodes["li"] = nir.LIF(tau=np.full(10, 1e-3), r=np.full(10, 10.0), v_leak=np.zeros(10),
                            v_threshold=np.full(10, 1e3))  # fmt: skip
    nir.write(tmp_path / "m.nir", g)
    calib, _ = digits_npz(tmp_path, 30)
    report = convert_nir(tmp_path / "m.nir", tmp_path / "m.net", calib=calib, steps=8)
    assert report["readout"] == "count" and report["accuracy"]["output_spikes_per_sample"] == 0
    assert any("never spiked" in w and "--readout v" in w for w in report["warnings"])
    again = convert_nir(tmp_path / "m.nir", tmp_path / "v.net", calib=calib, steps=8, readout="v")
    assert (
        again["prediction"] == "readout_v" and again["accuracy"]["output_spikes_per_sample"] is None
    )
    assert not any("never spiked" in w for w in again["warnings"])


@pytest.mark.lava
@pytest.mark.slow  # about 80 s on a busy 2-core CPU: two Lava runs on the global clock
def test_spike_count_readout_passes_parity_on_lava(tmp_path):
    """A tiny converted recurrent network with the spike-count readout: every layer's spikes
    (the output's included), u and v equal on Lava, and both back ends predict by count."""
    from snn2loihi.deploy.parity import run_parity
    from snn2loihi.deploy.runner import Runner
    from snn2loihi.export.nir_convert import global_clock
    from snn2loihi.readout import SPIKE_COUNT

    steps = 24
    nir.write(tmp_path / "t.nir", _leaky_output_graph(1, hidden=8, classes=3))
    convert_nir(tmp_path / "t.nir", tmp_path / "t.net", steps=steps, input_scale=1.0)
    net = read_network(tmp_path / "t.net")
    clock = global_clock(net, steps)
    x = _spike_streams(3, clock.steps, 12, 0)
    report = run_parity(tmp_path / "t.net", x, clock=clock)
    assert report.equal, report.table()
    assert report.layers[-1].emulator_spikes > 0
    runs = [Runner(net, tmp_path / "t.net", b, clock=clock).run(x) for b in ("lava", "emulator")]
    assert all(r.rule == SPIKE_COUNT for r in runs)
    np.testing.assert_array_equal(runs[0].spikes, runs[1].spikes)
    np.testing.assert_array_equal(runs[0].predictions, runs[1].predictions)
