"""Lava's process graph of a residual network (the superset of NetX, docs/netx-format.md), built
here because lava-dl's ``netx.hdf5.Network`` cannot: the chain of layers as netx builds each one
(its own ``create_conv``/``create_dense`` on the file's groups, connected as its ``_create``
connects them), plus each shortcut: the source layer's spikes through ``delay`` relays and a
``lava.proc.conv`` synapse into the residual layer's neuron ``a_in``, where Lava sums it with the
layer's own synapse.

A relay is a 1x1 identity ``Conv`` into a memoryless ``LIF`` (``du = 4095``: ``u = a << 6``;
``dv = 4096``: ``v = u``; ``vth = 0``) that fires exactly when its input spiked: the spikes one
step later, nothing else. Runs inside the Lava child only (imports Lava lazily).
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from snn2loihi.errors import LavaRunError
from snn2loihi.schema import ConvLayer, DenseLayer, FlattenLayer, NetXNetwork, Shortcut


def lava_conv_weight(weight: np.ndarray) -> np.ndarray:
    """PyTorch's (Cout, Cin/groups, kH, kW) cross-correlation kernel as netx hands it to
    ``lava.proc.conv``: flipped, in Lava's (Cout, kW, kH, Cin/groups) order."""
    return np.ascontiguousarray(np.asarray(weight)[:, :, ::-1, ::-1].transpose((0, 3, 2, 1)))


def _xy(pair: tuple[int, int]) -> tuple[int, int]:
    """An (H, W) pair in Lava's (X, Y) order."""
    return (int(pair[1]), int(pair[0]))


def _xyz(shape: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(int(d) for d in reversed(shape))


class ResidualNetwork:
    """The built graph as the Lava driver uses a netx ``Network``: ``layers`` (one block per
    conv/dense layer, ``.neuron`` its neuron process), ``inp`` (the first block's input port),
    ``run``, ``stop`` and ``runtime``; ``shortcut_synapses``: the shortcuts' ``Conv`` processes
    (relays excluded)."""

    def __init__(self, layers: list, shortcut_synapses: list):
        self.layers = layers
        self.shortcut_synapses = shortcut_synapses
        self.inp = layers[0].inp

    @property
    def runtime(self):
        return getattr(self.layers[0], "runtime", None)

    def run(self, **kwargs) -> None:
        self.layers[0].run(**kwargs)

    def stop(self) -> None:
        self.layers[0].stop()


def _relay(port, shape_xyz: tuple[int, ...]):
    """``port``'s spikes one step later: a 1x1 identity conv into a memoryless LIF that
    fires on any input. Returns the LIF's spike port."""
    from lava.proc.conv.process import Conv
    from lava.proc.lif.process import LIF

    channels = shape_xyz[-1]
    eye = np.eye(channels, dtype=np.int64).reshape(channels, 1, 1, channels)
    syn = Conv(weight=eye, input_shape=shape_xyz)
    neuron = LIF(shape=shape_xyz, du=4095, dv=4096, vth=0, bias_mant=0, bias_exp=0)
    port.connect(syn.s_in)
    syn.a_out.connect(neuron.a_in)
    return neuron.s_out


def _connect_shortcut(sc: Shortcut, source, target, source_shape, path: Path, index: int):
    """``source`` block's spikes through ``sc.delay`` relays and the shortcut's conv synapse
    into ``target`` block's neurons."""
    from lava.proc.conv.process import Conv

    in_xyz = _xyz(source_shape)
    port = source.out
    for _ in range(sc.delay):
        port = _relay(port, in_xyz)
    syn = Conv(
        weight=lava_conv_weight(sc.weight),
        input_shape=in_xyz,
        padding=_xy(sc.padding),
        stride=_xy(sc.stride),
        dilation=_xy(sc.dilation),
        groups=int(sc.groups),
    )
    if tuple(syn.a_out.shape) != tuple(target.neuron.a_in.shape):
        raise LavaRunError(
            f"{path}: layer {index}: shortcut output {syn.a_out.shape} does not fit the "
            f"neurons {target.neuron.a_in.shape}"
        )
    port.connect(syn.s_in)
    syn.a_out.connect(target.neuron.a_in)
    return syn


def build_residual_network(
    path: Path, net: NetXNetwork, *, graded: bool, reset_interval: int, reset_offset: int
) -> ResidualNetwork:
    """The per-sample graph of the residual file ``path`` (records ``net``): every conv/dense
    layer as netx builds it (``LIFReset`` with netx's reset offsets: layer j at
    ``reset_offset + 1 + j``), chained as netx chains them, and every shortcut."""
    from snn2loihi.deploy.lava_compat import import_netx
    from snn2loihi.loihi import GRADED_MESSAGE_BITS

    netx = import_netx()
    create, NetDict = netx.hdf5.Network, netx.utils.NetDict
    blocks: dict[int, object] = {}
    layers: list = []
    bits = GRADED_MESSAGE_BITS if graded else 0
    offset = reset_offset + 1  # netx: time starts from 1 in hardware
    flatten_next = False
    with h5py.File(path, "r") as f:
        for i, ly in enumerate(net.layers):
            config = NetDict(f=f["layer"][str(i)])
            reset = dict(reset_interval=reset_interval, reset_offset=offset, spike_exp=6)
            if isinstance(ly, FlattenLayer):
                flatten_next = True
                continue
            if isinstance(ly, ConvLayer):
                in_xyz = layers[-1].shape if layers else _xyz(net.input_shape)
                block, _ = create.create_conv(
                    layer_config=config, input_shape=in_xyz, input_message_bits=bits, **reset
                )
            elif isinstance(ly, DenseLayer):
                block, _ = create.create_dense(
                    layer_config=config, input_message_bits=bits, **reset
                )
            else:
                continue  # the input layer (no neuron: validated as a plain network)
            if layers:
                out = layers[-1].out
                if flatten_next and isinstance(ly, DenseLayer):
                    out = out.transpose([2, 1, 0]).flatten()
                out.connect(block.inp)
            flatten_next = False
            layers.append(block)
            blocks[i] = block
            bits = block.output_message_bits
            offset += 1
    shortcut_synapses = [
        _connect_shortcut(
            sc, blocks[sc.source], blocks[i], tuple(net.layers[sc.source].shape), path, i
        )
        for i, ly in enumerate(net.layers)
        for sc in getattr(ly, "shortcuts", ())
    ]
    return ResidualNetwork(layers, shortcut_synapses)
