"""Small NIR graphs for tests and benchmarks of ``snn2loihi convert``: the snnTorch-style
recurrent network with a leaky spiking output of issue #32, and random spike streams for it."""

from __future__ import annotations

import numpy as np

DT = 1e-4  # snnTorch's step: r = tau_mem/dt and w_in = tau_syn/dt give unit gains


def cuba_lif(n, alpha, beta, threshold=1.0):
    """snnTorch's ``Synaptic(alpha, beta)`` as its exporter writes it: ``I = alpha I + W.s``,
    ``v = beta v + I``, spike above ``threshold``, reset to 0."""
    import nir

    tau_syn, tau_mem = DT / (1 - alpha), DT / (1 - beta)
    return nir.CubaLIF(
        tau_syn=np.full(n, tau_syn), tau_mem=np.full(n, tau_mem), r=np.full(n, tau_mem / DT),
        v_leak=np.zeros(n), v_threshold=np.full(n, threshold), w_in=np.full(n, tau_syn / DT),
        v_reset=np.zeros(n),
    )  # fmt: skip


def leaky_output_graph(seed, n_in=12, hidden=32, classes=5, recurrent=True):
    """The issue's kind of network: spike input (12 channels) -> Affine -> CubaLIF (alpha 0.8,
    beta 0.9, with a recurrent Linear onto it) -> Affine -> CubaLIF output (alpha 0.5, beta
    0.55) whose spike counts are the class scores. Random weights that keep both layers firing
    on random input spikes."""
    import nir

    rng = np.random.default_rng(seed)
    nodes = {
        "input": nir.Input(input_type=np.array([n_in])),
        "fc1": nir.Affine(weight=rng.normal(0.1, 0.5, (hidden, n_in)), bias=np.zeros(hidden)),
        "lif1": cuba_lif(hidden, 0.8, 0.9),
        "fc2": nir.Affine(weight=rng.normal(0, 0.25, (classes, hidden)), bias=np.zeros(classes)),
        "out": cuba_lif(classes, 0.5, 0.55),
        "output": nir.Output(output_type=np.array([classes])),
    }
    edges = [("input", "fc1"), ("fc1", "lif1"), ("lif1", "fc2"), ("fc2", "out"), ("out", "output")]
    if recurrent:
        nodes["rec"] = nir.Linear(weight=rng.normal(0, 0.2, (hidden, hidden)))
        edges += [("lif1", "rec"), ("rec", "lif1")]
    return nir.NIRGraph(nodes=nodes, edges=edges, type_check=False)


def spike_streams(n, steps, channels, seed):
    """(n, steps, channels) 0/1 spikes, each sample with its own rate per channel."""
    rng = np.random.default_rng(seed)
    rates = rng.uniform(0.02, 0.3, (n, 1, channels))
    return (rng.random((n, steps, channels)) < rates).astype(np.uint8)
