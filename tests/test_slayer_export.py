"""Networks written by lava-dl's own slayer ``export_hdf5`` load through our reader and match Lava."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch

from snn2loihi.deploy.lava_compat import install
from snn2loihi.deploy.parity import run_parity
from snn2loihi.netx_io import read_network
from snn2loihi.schema import ConvLayer, DenseLayer, FlattenLayer

pytestmark = pytest.mark.lava


def _slayer_blocks(seed: int):
    install()
    import lava.lib.dl.slayer as slayer

    torch.manual_seed(seed)
    params = {
        "threshold": 0.5,
        "current_decay": 0.25,
        "voltage_decay": 0.03,
        "requires_grad": False,
    }
    return torch.nn.ModuleList(
        [
            slayer.block.cuba.Conv(params, 2, 4, 3, weight_scale=3),
            slayer.block.cuba.Conv(params, 4, 6, 3, stride=2, padding=1, weight_scale=3),
            slayer.block.cuba.Flatten(),
            slayer.block.cuba.Dense(params, 6 * 4 * 4, 10, weight_scale=3),
        ]
    )


def _export(blocks, path, in_shape):
    x = (torch.rand(1, *in_shape, 4) < 0.3).float()
    with torch.no_grad():
        for b in blocks:
            x = b(x)
    with h5py.File(path, "w") as f:
        g = f.create_group("layer")
        for i, b in enumerate(blocks):
            b.export_hdf5(g.create_group(str(i)))


@pytest.mark.parametrize("seed", [0, 1])
def test_slayer_export_reads_and_matches_lava(tmp_path, seed):
    path = tmp_path / "slayer.net"
    _export(_slayer_blocks(seed), path, (2, 10, 10))
    net = read_network(path, input_shape=(2, 10, 10))
    kinds = [type(ly) for ly in net.layers]
    assert kinds == [ConvLayer, ConvLayer, FlattenLayer, DenseLayer]
    assert net.layers[0].neuron.i_decay == 1024 and net.layers[0].neuron.vth_mant == 32
    assert all(
        int(ly.weight.min()) >= -256 and int(ly.weight.max()) <= 254
        for _, ly in net.synaptic_layers
    )
    x = (np.random.default_rng(seed).random((3, 8, 2, 10, 10)) < 0.4).astype(np.uint8)
    report = run_parity(path, x, input_shape=(2, 10, 10))
    assert report.equal, report.table()
    assert sum(ly.lava_spikes for ly in report.layers) > 0
