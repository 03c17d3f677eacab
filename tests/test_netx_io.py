"""NetX HDF5 writer/reader: exact round trip, NetX can load our files, and specific errors."""

from __future__ import annotations

import dataclasses

import h5py
import numpy as np
import pytest

from snn2loihi.errors import NetXFormatError, NetXValidationError, UnsupportedLayerError
from snn2loihi.netx_io import read_network, write_network
from snn2loihi.schema import CubaNeuron, DenseLayer, InputLayer, NetXNetwork
from snn2loihi.testing.netgen import CIFAR, SMALL, NetSpec, RandomConv, random_network


def _replace_layer(net, index, **changes):
    layers = list(net.layers)
    layers[index] = dataclasses.replace(layers[index], **changes)
    return dataclasses.replace(net, layers=tuple(layers))


@pytest.mark.parametrize(
    "spec", [SMALL, CIFAR, NetSpec((30,), (), (8, 4))], ids=["small", "cifar", "dense"]
)
def test_round_trip_is_exact(spec, write_net):
    net = random_network(spec, seed=1)
    back = read_network(write_net(net))
    assert back == net
    for a, b in zip(back.layers, net.layers, strict=True):
        if getattr(a, "weight", None) is not None:
            assert a.weight.dtype == np.int64 and np.array_equal(a.weight, b.weight)


def test_round_trip_geometry_and_no_bias(write_net):
    spec = NetSpec(
        (4, 9, 7), (RandomConv(6, kernel=(3, 2), stride=(2, 1), padding=(1, 0), groups=2),), (5,)
    )
    net = random_network(spec, seed=2)
    net = _replace_layer(net, 1, bias=None)
    assert read_network(write_net(net)) == net


def test_steps_round_trip_and_bad_values_are_refused(tmp_path, write_net):
    """The root attribute ``steps`` (T the network was trained for) reads back exactly; a file
    without it reads as None; out-of-range or non-integer values are refused naming it."""
    net = dataclasses.replace(random_network(SMALL, seed=0), steps=4)
    path = write_net(net)
    back = read_network(path)
    assert back == net and back.steps == 4
    assert read_network(write_net(random_network(SMALL, seed=0))).steps is None
    for bad in (0, 4097, -1, 2.5, True, b"4"):
        with h5py.File(path, "a") as f:
            f.attrs["steps"] = bad
        with pytest.raises(
            NetXFormatError, match=r"root attribute 'steps' = .* must be an integer"
        ):
            read_network(path)
    with pytest.raises(NetXFormatError, match="'steps' = 0"):
        write_network(dataclasses.replace(net, steps=0), tmp_path / "zero.net")
    assert not (tmp_path / "zero.net").exists()


def test_slayer_sample_length_is_t_when_the_file_has_no_steps(write_net, caplog):
    """slayer's ``simulation/tSample`` (steps of ``Ts = 1``) gives T where ``steps`` is absent;
    ``steps`` wins; a tSample that is not a whole T of unit steps is ignored with a warning."""
    path = write_net(random_network(SMALL, seed=0))

    def with_simulation(t_sample, ts=1):
        with h5py.File(path, "a") as f:
            if "simulation" in f:
                del f["simulation"]
            f.create_dataset("simulation/Ts", data=ts)
            f.create_dataset("simulation/tSample", data=t_sample)
        return read_network(path).steps

    assert with_simulation(16) == 16 and with_simulation(np.float64(64.0)) == 64
    for t_sample, ts in ((2.5, 1), (0, 1), (5000, 1), (16, 0.5)):
        caplog.clear()
        assert with_simulation(t_sample, ts) is None
        assert "simulation/tSample" in caplog.text and "--steps" in caplog.text
    with h5py.File(path, "a") as f:
        f.attrs["steps"] = 4
    assert with_simulation(16) == 4


def test_written_file_loads_in_netx(write_net):
    from snn2loihi.deploy.lava_compat import import_netx

    netx = import_netx()
    net = dataclasses.replace(random_network(SMALL, seed=0), steps=4)  # a root attribute too
    path = write_net(net)
    lava_net = netx.hdf5.Network(net_config=str(path))
    assert len(lava_net.layers) == 2
    assert lava_net.inp.shape == (8, 8, 2) and lava_net.out.shape == (10,)


def test_large_weights_are_compressed_and_read_back_exactly_by_us_and_netx(write_net):
    """Weights of >= COMPRESS_MIN_VALUES values are gzip datasets; both readers see the integers."""
    from snn2loihi.deploy.lava_compat import import_netx
    from snn2loihi.netx_io import COMPRESS_MIN_VALUES

    spec = dataclasses.replace(SMALL, dense=(40, 10))  # dense 4*8*8 -> 40: 10,240 weights
    net = random_network(spec, seed=3)
    path = write_net(net)
    dense = [k for k, ly in enumerate(net.layers) if isinstance(ly, DenseLayer)]
    with h5py.File(path) as f:
        big, small = (f[f"layer/{k}/weight"] for k in dense)
        assert big.size >= COMPRESS_MIN_VALUES and big.compression == "gzip"
        assert small.size < COMPRESS_MIN_VALUES and small.compression is None
    assert read_network(path) == net
    lava_net = import_netx().hdf5.Network(net_config=str(path))
    w = np.asarray(lava_net.layers[1].synapse.weights.init).astype(np.int64)
    ours = net.layers[dense[0]].weight.astype(np.int64)  # NetX may rescale by a power of two
    assert w.shape == ours.shape
    np.testing.assert_array_equal(w * np.abs(ours).max(), ours * np.abs(w).max())


def test_slayer_style_fields_are_read(tmp_path):
    """Strings as S10 (1,) or variable length, scalars as (1,) arrays, float weights with integer values."""
    path = tmp_path / "hand.net"
    with h5py.File(path, "w") as f:
        g0 = f.create_group("layer/0")
        g0.create_dataset("type", (1,), "S10", [b"input"])
        g0.create_dataset("shape", data=[6])
        g1 = f.create_group("layer/1")
        g1.create_dataset("type", data="dense")
        g1.create_dataset("shape", data=[3])
        g1.create_dataset("weight", data=np.arange(-9, 9, dtype=np.float32).reshape(3, 6) * 2)
        g1.create_dataset("neuron/type", data="CUBA")
        g1.create_dataset("neuron/iDecay", data=[4096])
        g1.create_dataset("neuron/vDecay", data=np.array([0.0]))
        g1.create_dataset("neuron/vThMant", data=np.int32(100))
    net = read_network(path)
    assert net.input_shape == (6,)
    dense = net.layers[1]
    assert isinstance(dense, DenseLayer) and dense.neuron == CubaNeuron(4096, 0, 100)
    assert dense.weight.dtype == np.int64 and dense.weight[0, 0] == -18 and dense.bias is None


# ------------------------------------------------------------------------------ errors
def test_missing_file(tmp_path):
    with pytest.raises(NetXFormatError, match="no such file"):
        read_network(tmp_path / "nope.net")


def test_not_hdf5_and_truncated(tmp_path, write_net):
    junk = tmp_path / "junk.net"
    junk.write_bytes(b"definitely not hdf5" * 10)
    with pytest.raises(NetXFormatError, match="not a readable HDF5 file"):
        read_network(junk)
    good = write_net(random_network(SMALL, seed=0)).read_bytes()
    cut = tmp_path / "cut.net"
    cut.write_bytes(good[: len(good) // 2])
    with pytest.raises(NetXFormatError, match=r"cut\.net"):
        read_network(cut)


def test_gap_in_layer_names(tmp_path, write_net):
    path = write_net(random_network(SMALL, seed=0))
    with h5py.File(path, "a") as f:
        f.move("layer/3", "layer/7")
    with pytest.raises(NetXFormatError, match=r"named 0\.\.3 without gaps; found \['7'\]"):
        read_network(path)


@pytest.mark.parametrize("kind", ["pool", "average", "concat", "convT"])
def test_refused_layer_types_are_named(kind, write_net):
    path = write_net(random_network(SMALL, seed=0))
    with h5py.File(path, "a") as f:
        del f["layer/2/type"]
        f["layer/2"].create_dataset("type", (1,), "S10", [kind.encode()])
    with pytest.raises(
        UnsupportedLayerError, match=rf"layer 2: layer type '{kind}' cannot run on NetX"
    ):
        read_network(path)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        (
            "weight",
            300,
            r"layer 1 \(conv\): field 'weight' value 300 at index \(0, 0, 0, 0\) is outside",
        ),
        (
            "bias",
            -5000,
            r"layer 1 \(conv\): field 'bias' value -5000 at index \(0,\) is outside the hardware range \[-4096, 4095\]",
        ),
        (
            "neuron/vThMant",
            2**17,
            r"layer 1 \(conv\): field 'neuron/vThMant' = 131072 is outside \[0, 131071\]",
        ),
        ("neuron/iDecay", 5000, r"field 'neuron/iDecay' = 5000 is outside \[0, 4096\]"),
    ],
)
def test_out_of_range_values_name_layer_field_value(field, value, message, write_net):
    path = write_net(random_network(SMALL, seed=0))
    with h5py.File(path, "a") as f:
        ds = f[f"layer/1/{field}"]
        if ds.shape:
            data = ds[()]
            data.flat[0] = value
            ds[...] = data
        else:
            ds[()] = value
    with pytest.raises(NetXValidationError, match=message):
        read_network(path)


def test_non_integer_and_nan_weights(write_net):
    path = write_net(random_network(SMALL, seed=0))
    with h5py.File(path, "a") as f:
        w = f["layer/3/weight"][()].astype(np.float32)
        del f["layer/3/weight"]
        w[0, 0] = 1.5
        f["layer/3"].create_dataset("weight", data=w)
    with pytest.raises(
        NetXFormatError, match=r"layer 3 \(dense\): field 'weight' holds the non-integer value 1.5"
    ):
        read_network(path)
    with h5py.File(path, "a") as f:
        f["layer/3/weight"][0, 0] = np.nan
    with pytest.raises(NetXFormatError, match="NaN or infinite"):
        read_network(path)


def test_wrong_conv_shape_and_missing_fields(write_net):
    path = write_net(random_network(SMALL, seed=0))
    with h5py.File(path, "a") as f:
        f["layer/1/shape"][...] = [4, 5, 5]
    with pytest.raises(
        NetXValidationError,
        match=r"layer 1 \(conv\): field 'shape' = \(4, 5, 5\) but input \(2, 8, 8\) gives \(4, 6, 6\)",
    ):
        read_network(path)
    with h5py.File(path, "a") as f:
        f["layer/1/shape"][...] = [4, 6, 6]
        del f["layer/1/stride"]
    with pytest.raises(NetXFormatError, match=r"layer 1 \(conv\): field 'stride' is missing"):
        read_network(path)


def test_writer_refuses_invalid_network_and_writes_nothing(tmp_path):
    net = random_network(SMALL, seed=0)
    bad = _replace_layer(net, 3, weight=np.full((10, 144), 999))
    target = tmp_path / "bad.net"
    with pytest.raises(
        NetXValidationError, match=r"bad\.net: layer 3 \(dense\): field 'weight' value 999"
    ):
        write_network(bad, target)
    assert list(tmp_path.iterdir()) == []


def test_writer_does_not_overwrite_without_permission(tmp_path):
    net = random_network(SMALL, seed=0)
    target = write_network(net, tmp_path / "a.net")
    with pytest.raises(FileExistsError, match="--force"):
        write_network(net, target, overwrite=False)


def test_slayer_file_without_input_layer_needs_input_shape(tmp_path):
    net = random_network(SMALL, seed=0)
    path = tmp_path / "noinput.net"
    write_network(net, path)
    with h5py.File(path, "a") as f:  # drop the input layer and renumber, as slayer writes it
        del f["layer/0"]
        for i in (1, 2, 3):
            f.move(f"layer/{i}", f"layer/{i - 1}")
    with pytest.raises(NetXValidationError, match=r"no input layer.*--input-shape"):
        read_network(path)
    back = read_network(path, input_shape=(2, 8, 8))
    assert back.layers == net.layers[1:]


def test_dense_after_conv_needs_flatten():
    net = random_network(SMALL, seed=0)
    no_flatten = NetXNetwork(
        layers=(net.layers[0], net.layers[1], net.layers[3]), input_shape=(2, 8, 8)
    )
    from snn2loihi.validate import validate_network

    with pytest.raises(
        NetXValidationError, match=r"layer 2 \(dense\): field 'type' follows a CHW layer"
    ):
        validate_network(no_flatten, "x.net")
    assert isinstance(net.layers[0], InputLayer)


def test_h5py_failures_while_describing_layers_become_format_errors(write_net, monkeypatch):
    """A corrupt object header makes h5py raise KeyError when a field is opened (fuzz round)."""
    from snn2loihi import netx_io

    path = write_net(random_network(SMALL))

    def corrupt(*args):
        raise KeyError("Unable to synchronously open object (ran off end of input buffer)")

    monkeypatch.setattr(netx_io, "_read_layer", corrupt)
    with pytest.raises(NetXFormatError, match="corrupt or unreadable HDF5 content .KeyError"):
        netx_io.describe_layers(path)
