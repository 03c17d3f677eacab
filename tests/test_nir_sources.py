"""NIR graphs written by more libraries' own exporters (issue #32): SpikingJelly and Sinabs
digits networks convert with the float reference equal to the library's accuracy, and pass
``parity`` on Lava; Rockpool's graph converts and passes parity (its exporter's conventions are
not one discretization of NIR's ODEs: docs/nir.md). Each library's cases skip when it is not
installed: Rockpool is in requirements.txt, SpikingJelly and Sinabs are not (docs/nir.md says
why)."""

from __future__ import annotations

import pytest
import torch
from nir_library_helpers import accuracy, convert_and_parity_cli, digits, digits_npz, train_digits

from snn2loihi.export.nir_convert import convert_nir
from snn2loihi.netx_io import read_network

nir = pytest.importorskip("nir")

STEPS = 8


def spikingjelly_digits(tmp_path):
    """Conv2d(1, 4, 3, padding 1) + IFNode, AvgPool2d(2), Flatten, Linear(64, 10) + LIFNode
    (tau 2, hard reset to 0), trained on the output's spike counts over T steps, exported by
    ``spikingjelly.activation_based.nir_exchange.export_to_nir`` (IF ``r = 1/dt``, LIF
    ``tau = 2 dt``, ``dt = 1e-4``: forward Euler, convert's default dialect)."""
    pytest.importorskip(
        "spikingjelly.activation_based.nir_exchange",
        reason="SpikingJelly is not installed (not in requirements.txt, docs/nir.md: "
        "pip install --no-deps spikingjelly==2.0.0 loguru)",
    )
    from spikingjelly.activation_based import functional, layer, neuron
    from spikingjelly.activation_based.nir_exchange import export_to_nir

    torch.manual_seed(0)
    net = torch.nn.Sequential(
        layer.Conv2d(1, 4, 3, padding=1),
        neuron.IFNode(),
        layer.AvgPool2d(2),
        layer.Flatten(),
        layer.Linear(64, 10),
        neuron.LIFNode(tau=2.0),
    )

    def run(x, t):
        functional.reset_net(net)
        return sum(net(x.view(-1, 1, 8, 8)) for _ in range(t))

    ds = digits()
    train_digits(run, net.parameters(), ds.train, STEPS, epochs=15)
    functional.reset_net(net)
    graph = export_to_nir(net, torch.rand(1, 1, 8, 8))
    path = tmp_path / "spikingjelly.nir"
    nir.write(path, graph)
    return path, accuracy(run, ds.val, STEPS)


def sinabs_digits(tmp_path):
    """Conv2d(1, 4, 3, padding 1) + IAF, SumPool2d(2), Flatten, Linear(64, 10) + IAF (one spike
    per step, reset to 0), trained on the output's spike counts, exported by
    ``sinabs.nir.to_nir`` (``IF(r = 1)``: Sinabs' step is ``dt = 1``). Sinabs 3.1.3 leaves the
    Conv2d's ``input_shape`` and the types after it unset, which nir 1.0.8 cannot write: set the
    shape and ``infer_types()`` first."""
    sl = pytest.importorskip(
        "sinabs.layers",
        reason="Sinabs is not installed (not in requirements.txt, docs/nir.md: "
        "pip install --no-deps sinabs==3.1.3 pbr)",
    )
    from sinabs.activation import MembraneReset, SingleSpike
    from sinabs.nir import to_nir

    torch.manual_seed(0)

    def iaf():  # (B * T, ...) in, batch-major
        return sl.IAFSqueeze(num_timesteps=STEPS, spike_fn=SingleSpike, reset_fn=MembraneReset())

    net = torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3, padding=1),
        iaf(),
        sl.SumPool2d(2),
        torch.nn.Flatten(),
        torch.nn.Linear(64, 10),
        iaf(),
    )

    def run(x, t):
        assert t == STEPS
        for m in net:
            if isinstance(m, sl.IAFSqueeze):
                m.reset_states()
        frames = x.view(-1, 1, 1, 8, 8).expand(-1, t, -1, -1, -1).reshape(-1, 1, 8, 8)
        return net(frames).view(-1, t, 10).sum(1)  # spike counts (B, 10)

    ds = digits()
    train_digits(run, net.parameters(), ds.train, STEPS, epochs=10)
    graph = to_nir(net, torch.rand(STEPS, 1, 8, 8))
    graph.nodes["0"].input_shape = (8, 8)
    graph.infer_types()
    path = tmp_path / "sinabs.nir"
    nir.write(path, graph)
    return path, accuracy(run, ds.val, STEPS)


# library -> (make the digits network, convert options)
LIBRARIES = {
    "spikingjelly": (spikingjelly_digits, {}),
    "sinabs": (sinabs_digits, {"dt": 1.0}),
}


@pytest.fixture(scope="module", params=list(LIBRARIES))
def library_net(request, tmp_path_factory):
    """(library, NIR file, the library's own validation accuracy, convert options): trained
    once per module."""
    make, options = LIBRARIES[request.param]
    path, lib_acc = make(tmp_path_factory.mktemp(request.param))
    return request.param, path, lib_acc, options


def test_library_network_converts_as_the_library_computes(tmp_path, library_net):
    """The float reference of the graph as written predicts as the library did (so the dialect
    and dt above are the library's), and the integer network stays close to it."""
    library, path, lib_acc, options = library_net
    calib, _ = digits_npz(tmp_path, 10**6)
    report = convert_nir(path, tmp_path / "m.net", calib=calib, steps=STEPS, **options)
    a = report["accuracy"]
    print(library, lib_acc, a, report["changes"])
    assert report["readout"] == "count" and report["changes"] == []
    assert lib_acc > 0.8 and abs(a["nir_reference_acc"] - lib_acc) <= 0.01
    assert abs(a["emulator_acc"] - a["nir_reference_acc"]) < 0.05


@pytest.mark.lava
@pytest.mark.multiprocess
@pytest.mark.slow  # 90-100 s per library on a busy 2-core CPU: training, convert, one Lava run
def test_library_network_passes_parity_on_lava(tmp_path, library_net):
    library, path, _, options = library_net
    calib, _ = digits_npz(tmp_path, 10**6)
    flags = [f"--{k}={v}" for k, v in options.items()]
    figures, _ = convert_and_parity_cli(tmp_path, library, path, calib, STEPS, *flags)
    assert all(ly["emulator_spikes"] > 0 for ly in figures["layers"])  # every layer compared


# -- Rockpool: its graph converts, but its exporter's parameters are not Rockpool's dynamics ---

RP_DT, RP_TAU_SYN, RP_TAU_MEM, RP_TAU_OUT = 1e-3, 5e-3, 20e-3, 10e-3  # seconds


def rockpool_graph(tmp_path):
    """LinearTorch(64, 32) + LIFTorch (CubaLIF), LinearTorch(32, 10, no bias) + ExpSynTorch (LI
    readout), Rockpool's initial weights (seed 0), ``dt = 1 ms``, exported by
    ``rockpool.nn.modules.torch.nir.to_nir`` (its default sample: Input ``(1, 64)``)."""
    pytest.importorskip("rockpool.nn.modules.torch.nir")
    from rockpool.nn.combinators import Sequential
    from rockpool.nn.modules import ExpSynTorch, LIFTorch, LinearTorch
    from rockpool.nn.modules.torch.nir import to_nir

    torch.manual_seed(0)
    net = Sequential(
        LinearTorch((64, 32), has_bias=True),
        LIFTorch(32, tau_mem=RP_TAU_MEM, tau_syn=RP_TAU_SYN, dt=RP_DT),
        LinearTorch((32, 10)),
        ExpSynTorch(10, tau=RP_TAU_OUT, dt=RP_DT),
    )
    for _, p in torch.nn.Module.named_parameters(net):
        p.requires_grad_(False)  # ExpSynTorch exports its tau undetached: nir.write fails
    path = tmp_path / "rockpool.nir"
    nir.write(path, to_nir(net))
    return path


def test_rockpool_graph_converts_as_nir_defines_it(tmp_path):
    """The graph converts at Rockpool's dt (Euler decays of NIR's ODEs), and the gap docs/nir.md
    states holds: Rockpool's LIFTorch integrates a constant input to a v 4.87 times the one its
    exported CubaLIF reaches (``w_in`` left at 1 while Rockpool adds the whole input to its
    current every step; ``r = tau_mem exp(-dt/tau_mem) / dt``)."""
    from snn2loihi.export.nir_lower import lower
    from snn2loihi.export.nir_read import read_nir

    path = rockpool_graph(tmp_path)  # skips without Rockpool
    from rockpool.nn.modules import LIFTorch

    report = convert_nir(path, tmp_path / "rp.net", steps=STEPS, dt=RP_DT)
    assert report["readout"] == "v"
    net = read_network(tmp_path / "rp.net")
    hidden, out = net.layers[1].neuron, net.layers[2].neuron
    assert (hidden.i_decay, hidden.v_decay) == (819, 205)  # 4096 dt / tau_syn, 4096 dt / tau_mem
    assert (out.i_decay, out.v_decay) == (4096, 410)
    ly = lower(read_nir(path), dt=RP_DT).reference[0]  # the CubaLIF as NIR defines it
    v_nir = ly.g_u[0] * ly.g_v[0] / ((1 - ly.a_u[0]) * (1 - ly.a_v[0]))  # per unit of input
    lif = LIFTorch(1, tau_mem=RP_TAU_MEM, tau_syn=RP_TAU_SYN, threshold=1e9, dt=RP_DT)
    with torch.no_grad():
        _, _, record = lif(torch.ones(1, 1000, 1), record=True)
    assert float(record["vmem"][0, -1, 0]) / v_nir == pytest.approx(4.87, abs=0.01)


@pytest.mark.lava
@pytest.mark.multiprocess
@pytest.mark.slow  # about 90 s on a busy 2-core CPU: convert, one Lava run
def test_rockpool_graph_passes_parity_on_lava(tmp_path):
    path = rockpool_graph(tmp_path)
    calib, _ = digits_npz(tmp_path, 10**6)
    figures, _ = convert_and_parity_cli(tmp_path, "rockpool", path, calib, STEPS, f"--dt={RP_DT}")
    assert [ly["kind"] for ly in figures["layers"]] == ["dense", "dense"]
