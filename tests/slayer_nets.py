"""Tiny NetX ``.net`` fixtures written by lava-dl's OWN slayer blocks and their ``export_hdf5``.

Test helper (not a test file). :func:`write_slayer_net` builds one of :data:`SLAYER_NETS` with
``lava.lib.dl.slayer`` (lava-dl 0.6.0) the way a lava-dl user does: construct the blocks, run one
forward pass under ``torch.no_grad`` (that sets the neuron shapes and initialises axonal delays),
then ``block.export_hdf5(f['layer'].create_group(str(i)))`` per block. Everything is seeded, and
the global torch RNG state is restored afterwards.

Networks (CHW input shapes; every layer spikes/sends messages for random inputs on Lava):

- ``cuba_input_dense``: cuba.Input -> Dense(16, 12) -> Dense(12, 4); input (16,); drive
  bias or skip_input.
- ``cuba_input_conv``: cuba.Input -> Conv(2, 4, k3, stride 2, pad 1) -> Flatten -> Dense(64, 6);
  input (2, 8, 8); drive bias or skip_input.
- ``cuba_dense_delay``: Dense(16, 12, delay) -> Dense(12, 8, delay) -> Dense(8, 4), no input
  layer; input (16,); drive source.
- ``cuba_recurrent``: cuba.Input without neuron (shape only) -> Recurrent(16, 12) -> Dense(12, 4);
  input (16,); drive source.
- ``sdnn_dense``: sigma_delta.Input -> Dense(16, 12) -> Output(12, 4); input (16,); drive
  skip_input.
- ``sdnn_conv``: sigma_delta.Input -> Conv(2, 4, k3, stride 2, pad 1) -> Flatten ->
  Output(64, 6); input (2, 8, 8); drive skip_input.

What the exports contain (checked on lava-dl 0.6.0):

- every layer: ``type`` (shape (1,), ``|S10``: ``input``/``dense``/``conv``/``flatten``/
  ``dense_rec``) and ``shape`` (int64, CHW or (N,)); dense: ``inFeatures``/``outFeatures`` (int64
  scalars) and ``weight`` (float32, (out, in)); conv: ``weight`` (float32, (out, in, kh, kw)),
  ``inChannels``/``outChannels``/``groups`` (int64 scalars), ``kernelSize``/``stride``/
  ``padding``/``dilation`` (int64, (2,)); flatten: ``type`` and ``shape`` = (C*H*W, 1, 1).
  Weights are integer-valued floats (8-bit mantissa, even values with these settings).
- CUBA neuron group: ``type`` (vlen str ``CUBA``), ``iDecay``, ``vDecay``, ``vThMant``,
  ``refDelay`` (int64 scalars) and ``gradedSpike`` (bool scalar, False). Thresholds here:
  ``vThMant`` 16 (threshold 0.25), ``iDecay`` 1024, ``vDecay`` 123.
- axonal delay (``delay=True``): one float32 dataset ``delay`` of shape (out_features,), integer
  valued (``floor`` of the learnt delay), i.e. ONE delay per neuron of that layer, delaying its
  output spikes in slayer. slayer draws the delays in [0, 1) on the first forward pass (all 0
  after ``floor``), so this module overwrites them with integers 0..:data:`MAX_DELAY`. netx's
  ``create_dense`` expands a (out,)-vector row-wise to the (out, in) ``DelayDense`` matrix
  (``delay[i, j] = d[i]``): it delays the synaptic input of neuron ``i`` instead of its output
  (by reasoning the same trains shifted by ``d[i]`` for zero-bias neurons without reset; not
  compared spike for spike). Lava's output does depend on the delays. A vector whose length
  equals ``in_features`` would be taken as per-input delays instead; the layers here are not
  square so there is no ambiguity.
- ``slayer.block.cuba.Recurrent`` exists and writes ``type`` ``dense_rec`` with ``weight``
  (float32, (out, in)) and ``weight_rec`` (float32, (out, out)) besides the dense fields; netx
  builds it as ``RecurrentDense`` (both matrices share one weight exponent) and runs it.
- SDNN neuron group: ``type`` (vlen str ``SDNN``), ``activation`` (vlen str ``relu``),
  ``vThMant`` (int64; 3 here, threshold 0.05); ``sigma_delta.Output`` writes a ``dense`` layer
  whose neuron group also has ``sigma_output`` (bool True) -> netx builds a ``Sigma`` neuron
  (graded output, no threshold); other SDNN layers become ``SigmaDelta``, the input ``Delta``.
- a slayer ``Input`` block with a neuron writes ``neuron/*`` (no ``weight``/``bias`` here; netx
  would ignore them anyway: its ``Input`` block drops the ``transform``). Without a neuron it
  writes ``type`` and ``shape`` only; such a block must be built with ``delay_shift=False``
  (slayer 0.6 otherwise fails in ``step_delay`` with ``AttributeError: 'NoneType' object has no
  attribute 'persistent_state'``).

How to drive them on Lava (``lava.lib.dl.netx.hdf5.Network(net_config=str(path), ...)``, run for
16 steps with ``Loihi2SimCfg(select_tag='fixed_pt')``; the ``drive`` entry of the returned dict
lists the modes that work, preferred first). Lava's layout is XYZ = reversed CHW:

- :data:`DRIVE_BIAS` (CUBA input neuron): no source; set
  ``net.in_layer.neuron.bias_mant.init = x_xyz`` (integers, e.g. 0..47; added as
  ``bias_mant << 6`` each step, threshold ``vThMant << 6``).
- :data:`DRIVE_SKIP_INPUT`: ``Network(..., skip_layers=1)`` drops the input layer (netx takes its
  shape and message bits) and ``io.source.RingBuffer(data=(W, H, C, T) or (N, T))`` connected to
  ``net.inp`` feeds the first synaptic layer directly: binary 0/1 spikes for CUBA nets; for SDNN
  nets graded integers (the first synapse gets ``input_message_bits=16`` from the skipped
  ``Delta``), in units of 2**-6 like the ``Delta``'s own output (``spike_exp=6``), e.g. 0..255.
- :data:`DRIVE_SOURCE` (no input neuron): a ``RingBuffer`` connected to ``net.inp`` as is.

A source connected to ``net.inp`` of a network whose input layer has a neuron does not compile
on the CPU simulator (netx's ``Input`` block leaves its ``inp`` port unconnected):
``NotImplementedError: No subcompiler exists for the given ProcessModel of type <class
'lava.lib.dl.netx.blocks.models.PyInputModel'>`` (CUBA and SDNN alike). The SDNN input neuron is
a ``Delta`` and has no bias (``AttributeError: 'Delta' object has no attribute 'bias_mant'``),
so SDNN nets can only be fed with :data:`DRIVE_SKIP_INPUT`. With :data:`DRIVE_SKIP_INPUT` the
first synaptic layer receives the source directly (one layer, hence one step of latency, fewer
than behind the input neuron).

netx ignores ``neuron/gradedSpike``: setting it True in every CUBA layer gives the same spikes.
A ``neuron/messageBits`` dataset breaks netx: ``NetDict`` returns a ``NetDict`` for it (not in
its ``array_keys``), the ``Network`` still builds, but ``run`` fails while compiling with
``TypeError: '>' not supported between instances of 'NetDict' and 'int'``
(``lava/lib/dl/netx/blocks/models.py``, ``if proc.output_message_bits > 0``), CUBA and SDNN
alike. Each Lava build + compile + 16-step run took 0.6-1.9 s on 2 shared CPU cores
(up to ~8 s while other jobs loaded them), plus about 5-7 s to import torch/lava in a fresh
process; writing a network takes < 0.05 s.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import h5py
import torch

DRIVE_BIAS = "bias"
DRIVE_SKIP_INPUT = "skip_input"
DRIVE_SOURCE = "source"

STEPS = 8  # time steps of the forward pass run before export
MAX_DELAY = 5  # axonal delays are drawn from 0..MAX_DELAY
SPIKE_RATE = 0.3  # firing probability of the binary forward-pass input (CUBA nets)


def _cuba_params() -> dict:
    """CUBA neuron parameters: low threshold so that random inputs make every layer spike."""
    return {
        "threshold": 0.25,
        "current_decay": 0.25,
        "voltage_decay": 0.03,
        "requires_grad": False,
    }


def _sdnn_params() -> dict:
    """Sigma-delta ReLU neuron parameters with a small delta threshold."""
    return {
        "threshold": 0.05,
        "activation": torch.nn.functional.relu,
        "tau_grad": 0.5,
        "scale_grad": 1,
        "requires_grad": False,
        "shared_param": True,
    }


def _info(shape: tuple, input_neuron: bool, neuron: str, drive: tuple[str, ...]) -> dict:
    return {
        "input_shape": shape,
        "has_input_neuron": input_neuron,
        "neuron": neuron,
        "drive": drive,
    }


def _cuba_input_dense(slayer) -> tuple[list, dict]:
    p = _cuba_params()
    blocks = [
        slayer.block.cuba.Input(p),
        slayer.block.cuba.Dense(p, 16, 12, weight_scale=4),
        slayer.block.cuba.Dense(p, 12, 4, weight_scale=4),
    ]
    return blocks, _info((16,), True, "CUBA", (DRIVE_BIAS, DRIVE_SKIP_INPUT))


def _cuba_input_conv(slayer) -> tuple[list, dict]:
    p = _cuba_params()
    blocks = [
        slayer.block.cuba.Input(p),
        slayer.block.cuba.Conv(p, 2, 4, 3, padding=1, stride=2, weight_scale=4),
        slayer.block.cuba.Flatten(),
        slayer.block.cuba.Dense(p, 4 * 4 * 4, 6, weight_scale=4),
    ]
    return blocks, _info((2, 8, 8), True, "CUBA", (DRIVE_BIAS, DRIVE_SKIP_INPUT))


def _cuba_dense_delay(slayer) -> tuple[list, dict]:
    p = _cuba_params()
    blocks = [
        slayer.block.cuba.Dense(p, 16, 12, weight_scale=4, delay=True),
        slayer.block.cuba.Dense(p, 12, 8, weight_scale=4, delay=True),
        slayer.block.cuba.Dense(p, 8, 4, weight_scale=4),
    ]
    return blocks, _info((16,), False, "CUBA", (DRIVE_SOURCE,))


def _cuba_recurrent(slayer) -> tuple[list, dict]:
    p = _cuba_params()
    blocks = [
        slayer.block.cuba.Input(delay_shift=False),  # no neuron: writes the input shape only
        slayer.block.cuba.Recurrent(_cuba_params(), 16, 12, weight_scale=4),  # mutates its dict
        slayer.block.cuba.Dense(p, 12, 4, weight_scale=4),
    ]
    return blocks, _info((16,), False, "CUBA", (DRIVE_SOURCE,))


def _sdnn_dense(slayer) -> tuple[list, dict]:
    p = _sdnn_params()
    blocks = [
        slayer.block.sigma_delta.Input(p),
        slayer.block.sigma_delta.Dense(p, 16, 12, weight_scale=2),
        slayer.block.sigma_delta.Output(p, 12, 4, weight_scale=2),
    ]
    return blocks, _info((16,), True, "SDNN", (DRIVE_SKIP_INPUT,))


def _sdnn_conv(slayer) -> tuple[list, dict]:
    p = _sdnn_params()
    blocks = [
        slayer.block.sigma_delta.Input(p),
        slayer.block.sigma_delta.Conv(p, 2, 4, 3, padding=1, stride=2, weight_scale=2),
        slayer.block.sigma_delta.Flatten(),
        slayer.block.sigma_delta.Output(p, 4 * 4 * 4, 6, weight_scale=2),
    ]
    return blocks, _info((2, 8, 8), True, "SDNN", (DRIVE_SKIP_INPUT,))


_BUILDERS: dict[str, Callable[..., tuple[list, dict]]] = {
    "cuba_input_dense": _cuba_input_dense,
    "cuba_input_conv": _cuba_input_conv,
    "cuba_dense_delay": _cuba_dense_delay,
    "cuba_recurrent": _cuba_recurrent,
    "sdnn_dense": _sdnn_dense,
    "sdnn_conv": _sdnn_conv,
}

SLAYER_NETS: tuple[str, ...] = tuple(_BUILDERS)


def write_slayer_net(name: str, path: Path, seed: int = 0) -> dict:
    """Write the slayer network ``name`` (one of :data:`SLAYER_NETS`) to ``path`` as NetX HDF5.

    The blocks are built and run forward once on a seeded random input (binary spikes for CUBA
    nets, values in [0, 1) for SDNN nets); axonal delays are then set to seeded integers in
    0..:data:`MAX_DELAY`; the global torch RNG state is left as it was.

    Returns:
        ``{"input_shape": CHW tuple or (N,), "has_input_neuron": bool, "neuron": "CUBA" or
        "SDNN", "drive": tuple of the ways Lava can feed it}`` (see the module docstring).
    """
    if name not in _BUILDERS:
        raise ValueError(f"unknown slayer net {name!r}; expected one of {SLAYER_NETS}")
    from snn2loihi.deploy.lava_compat import install

    install()
    import lava.lib.dl.slayer as slayer

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        blocks, info = _BUILDERS[name](slayer)
        x = torch.rand(1, *info["input_shape"], STEPS)
        if info["neuron"] == "CUBA":
            x = (x < SPIKE_RATE).float()
        with torch.no_grad():
            for block in blocks:
                x = block(x)
            for block in blocks:
                if getattr(block, "delay", None) is not None:
                    delay = block.delay.delay
                    delay.data = torch.randint(0, MAX_DELAY + 1, delay.shape).float()
    with h5py.File(path, "w") as f:
        layers = f.create_group("layer")
        for i, block in enumerate(blocks):
            block.export_hdf5(layers.create_group(str(i)))
    return info
