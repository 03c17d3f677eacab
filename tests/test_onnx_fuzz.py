"""Property-based fuzzing of the ONNX importer: every mutated model converts or fails with our error.

A tiny valid CNN (input affine, Conv, BatchNormalization, Relu, strided Conv, Clip, Flatten,
Gemm, MatMul + Add) is mutated at the graph level (initializers dropped, renamed, reshaped,
retyped or poisoned with NaN/inf; ops swapped; nodes deleted or reordered; dangling inputs;
attributes and the graph input changed) and at the byte level (truncation, flipped bytes).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from snn2loihi.errors import NetXValidationError, Snn2LoihiError  # noqa: E402
from snn2loihi.export.convert import convert_onnx  # noqa: E402
from snn2loihi.export.errors import CheckpointError, NotDeployableError  # noqa: E402
from snn2loihi.export.onnx_import import SUPPORTED_OPS, read_onnx  # noqa: E402
from snn2loihi.netx_io import read_network  # noqa: E402


def _tensor(name: str, value) -> TensorProto:
    return numpy_helper.from_array(np.asarray(value, dtype=np.float32), name)


def tiny_cnn() -> onnx.ModelProto:
    """1x4x4 -> conv 2 (+BN, ReLU) -> conv 3 stride 2 (Clip) -> Gemm 5 (ReLU) -> MatMul+Add 3."""
    rng = np.random.default_rng(0)

    def rand(name, shape, scale=0.3):
        return _tensor(name, rng.standard_normal(shape) * scale)

    inits = [
        _tensor("gain", np.full((1, 1, 1, 1), 255.0)),
        rand("w0", (2, 1, 3, 3), 0.01),
        rand("b0", (2,)),
        _tensor("bn_s", [1.0, 0.8]),
        rand("bn_b", (2,), 0.1),
        rand("bn_m", (2,), 0.1),
        _tensor("bn_v", [1.5, 0.7]),
        rand("w1", (3, 2, 3, 3)),
        rand("b1", (3,)),
        _tensor("lo", 0.0),
        _tensor("hi", 1e3),
        rand("wg", (5, 12)),
        rand("bg", (5,)),
        rand("wm", (5, 3)),
        rand("bm", (3,)),
    ]
    conv = dict(kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    nodes = [
        helper.make_node("Mul", ["image", "gain"], ["x0"], name="affine"),
        helper.make_node("Conv", ["x0", "w0", "b0"], ["c0"], name="conv0", **conv),
        helper.make_node(
            "BatchNormalization", ["c0", "bn_s", "bn_b", "bn_m", "bn_v"], ["n0"], name="bn0"
        ),
        helper.make_node("Relu", ["n0"], ["r0"], name="relu0"),
        helper.make_node("Conv", ["r0", "w1", "b1"], ["c1"], name="conv1", strides=[2, 2], **conv),
        helper.make_node("Clip", ["c1", "lo", "hi"], ["r1"], name="clip1"),
        helper.make_node("Flatten", ["r1"], ["f"], name="flat", axis=1),
        helper.make_node("Gemm", ["f", "wg", "bg"], ["g"], name="fc", transB=1),
        helper.make_node("Relu", ["g"], ["r2"], name="relu2"),
        helper.make_node("MatMul", ["r2", "wm"], ["m"], name="readout"),
        helper.make_node("Add", ["m", "bm"], ["logits"], name="bias"),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 1, 4, 4])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 3])],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


_GOOD = tiny_cnn().SerializeToString()


@pytest.fixture(scope="module")
def calib(tmp_path_factory) -> Path:
    """Calibration images for the tiny CNN (12 random 4x4 images, 3 classes)."""
    path = tmp_path_factory.mktemp("onnx-calib") / "calib.npz"
    np.savez(
        path,
        x=np.random.default_rng(1).integers(0, 256, (12, 4, 4)).astype(np.uint8),
        y=np.arange(12) % 3,
    )
    return path


@pytest.fixture(scope="module")
def fuzz_dir(tmp_path_factory) -> Path:
    """One folder for all examples of the fuzz test (emptied before each example)."""
    return tmp_path_factory.mktemp("onnx-fuzz")


N_INITS, N_NODES = 15, 11
OPS = [
    *SUPPORTED_OPS,
    "MaxPool",
    "Add",
    "Mul",
    "Identity",
    "Sigmoid",
    "Constant",
    "Reshape",
    "Bogus",
]
ATTRS = ["strides", "pads", "kernel_shape", "group", "dilations", "transB", "axis", "alpha"]
SPECIAL = [float("nan"), float("inf"), -float("inf"), 1e30, -1e30, 0.0, -1.0, 1e-30]
DIMS = st.lists(st.integers(-2, 13), max_size=5)
ATTR_VALUES = st.one_of(
    st.integers(-3, 5),
    st.floats(allow_nan=True),
    st.lists(st.integers(-2, 4), min_size=1, max_size=5),
)
GRAPH_MUTATIONS = st.one_of(
    st.tuples(st.just("drop_init"), st.integers(0, N_INITS - 1)),
    st.tuples(st.just("rename_init"), st.integers(0, N_INITS - 1), st.sampled_from(["z", "w1"])),
    st.tuples(st.just("dims"), st.integers(0, N_INITS - 1), DIMS),
    st.tuples(st.just("reshape"), st.integers(0, N_INITS - 1), DIMS),
    st.tuples(st.just("dtype"), st.integers(0, N_INITS - 1), st.integers(0, 26)),
    st.tuples(
        st.just("value"), st.integers(0, N_INITS - 1), st.integers(0, 99), st.sampled_from(SPECIAL)
    ),
    st.tuples(st.just("op"), st.integers(0, N_NODES - 1), st.sampled_from(OPS)),
    st.tuples(st.just("delete_node"), st.integers(0, N_NODES - 1)),
    st.tuples(st.just("swap_nodes"), st.integers(0, N_NODES - 1), st.integers(0, N_NODES - 1)),
    st.tuples(
        st.just("add_input"), st.integers(0, N_NODES - 1), st.sampled_from(["ghost", "w0", ""])
    ),
    st.tuples(st.just("no_output"), st.integers(0, N_NODES - 1)),
    st.tuples(st.just("attr"), st.integers(0, N_NODES - 1), st.sampled_from(ATTRS), ATTR_VALUES),
    st.tuples(st.just("to_constant"), st.integers(0, N_INITS - 1)),
    st.tuples(
        st.just("input_dims"),
        st.lists(st.one_of(st.integers(-1, 9), st.just("H")), max_size=5),
    ),
    st.tuples(st.just("input_type"), st.integers(0, 16)),
)
BYTE_MUTATIONS = st.one_of(
    st.none(),
    st.tuples(st.just("truncate"), st.floats(0, 1)),
    st.tuples(st.just("flip"), st.floats(0, 1), st.integers(1, 255)),
)


def _pick(items, i: int):
    return items[i % len(items)] if len(items) else None


def _set_values(t: TensorProto, value: np.ndarray) -> None:
    t.CopyFrom(numpy_helper.from_array(value, t.name))


def _mutate_init(graph, kind: str, t: TensorProto, args) -> None:
    if kind == "drop_init":
        graph.initializer.remove(t)
    elif kind == "rename_init":
        t.name = args[0]
    elif kind == "dims":
        del t.dims[:]
        t.dims.extend(args[0])
    elif kind == "reshape":
        shape = [max(d, 0) for d in args[0]]
        _set_values(t, np.full(shape, 0.25, np.float32))
    elif kind == "dtype":
        t.data_type = args[0]
    elif kind == "value":
        try:
            value = numpy_helper.to_array(t).astype(np.float32).copy()
        except (ValueError, TypeError):
            return  # an earlier mutation made the tensor undecodable: keep it so
        if value.size:
            value.reshape(-1)[args[0] % value.size] = args[1]
        _set_values(t, value)
    elif kind == "to_constant":
        graph.initializer.remove(t)
        node = helper.make_node("Constant", [], [t.name], value=t, name=f"const_{t.name}")
        graph.node.insert(0, node)


def _mutate_node(graph, kind: str, node, args) -> None:
    if kind == "op":
        node.op_type = args[0]
    elif kind == "delete_node":
        graph.node.remove(node)
    elif kind == "swap_nodes":
        j = args[0] % len(graph.node)
        i = list(graph.node).index(node)
        a, b = onnx.NodeProto(), onnx.NodeProto()
        a.CopyFrom(graph.node[i])
        b.CopyFrom(graph.node[j])
        graph.node[i].CopyFrom(b)
        graph.node[j].CopyFrom(a)
    elif kind == "add_input":
        node.input.append(args[0])
    elif kind == "no_output":
        del node.output[:]
    elif kind == "attr":
        name, value = args
        for a in [a for a in node.attribute if a.name == name]:
            node.attribute.remove(a)
        node.attribute.append(helper.make_attribute(name, value))


def _mutate_graph(model, mutation) -> None:
    kind, *args = mutation
    graph = model.graph
    dim = graph.input[0].type.tensor_type
    if kind == "input_dims":
        dim.shape.Clear()
        for d in args[0]:
            new = dim.shape.dim.add()
            if isinstance(d, str):
                new.dim_param = d
            else:
                new.dim_value = d
    elif kind == "input_type":
        dim.elem_type = args[0]
    elif kind in ("op", "delete_node", "swap_nodes", "add_input", "no_output", "attr"):
        node = _pick(graph.node, args[0])
        if node is not None:
            _mutate_node(graph, kind, node, args[1:])
    else:
        t = _pick(graph.initializer, args[0])
        if t is not None:
            _mutate_init(graph, kind, t, args[1:])


def _mutated_bytes(mutations, byte_mutation) -> bytes:
    model = onnx.ModelProto()
    model.ParseFromString(_GOOD)
    for m in mutations:
        _mutate_graph(model, m)
    data = model.SerializeToString()
    if byte_mutation is None or not data:
        return data
    kind, where, *value = byte_mutation
    pos = min(int(where * len(data)), len(data) - 1)
    if kind == "truncate":
        return data[:pos]
    flipped = bytearray(data)
    flipped[pos] ^= value[0]
    return bytes(flipped)


def test_the_unmutated_model_converts(tmp_path, calib):
    path = tmp_path / "good.onnx"
    path.write_bytes(_GOOD)
    report = convert_onnx(path, calib, tmp_path / "good.net", steps=4)
    assert report["accuracy"]["equal"]
    assert read_network(tmp_path / "good.net").num_synaptic_layers == 4


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(GRAPH_MUTATIONS, min_size=1, max_size=3), BYTE_MUTATIONS)
def test_mutated_onnx_converts_or_raises_our_error(calib, fuzz_dir, mutations, byte_mutation):
    for leftover in fuzz_dir.iterdir():
        leftover.unlink()
    path = fuzz_dir / "fuzz.onnx"
    path.write_bytes(_mutated_bytes(mutations, byte_mutation))
    out = fuzz_dir / "fuzz.net"
    try:
        report = convert_onnx(path, calib, out, steps=4)
    except Snn2LoihiError as exc:
        assert str(exc) and "\n" not in str(exc), "errors must be one line"
        assert sorted(p.name for p in fuzz_dir.iterdir()) == ["fuzz.onnx"], (
            "a refused model must leave nothing (no .net, no report, no temporary file)"
        )
        return
    net = read_network(out)
    assert net.num_synaptic_layers >= 1
    # what converts is deployable: the emulator on the file fires the integer branch's spikes
    assert report["accuracy"]["equal"], report["accuracy"]
    assert report["accuracy"]["samples"] == 12


def test_node_refusals_of_convert_name_the_file(tmp_path, calib):
    m = tiny_cnn()
    next(n for n in m.graph.node if n.op_type == "Relu").op_type = "Sigmoid"
    path = _write(tmp_path, m)
    with pytest.raises(NotDeployableError) as exc:
        convert_onnx(path, calib, tmp_path / "m.net")
    assert str(exc.value).startswith(f"'{path}': ONNX node"), str(exc.value)


def _write(tmp_path, model) -> Path:
    path = tmp_path / "m.onnx"
    path.write_bytes(model.SerializeToString())
    return path


def _init(model, name: str) -> TensorProto:
    return next(t for t in model.graph.initializer if t.name == name)


@pytest.mark.parametrize(
    ("name", "value", "words"),
    [
        ("w1", float("nan"), ["initializer 'w1'", "nan", "index (0, 0, 0, 0)"]),
        ("bg", float("inf"), ["initializer 'bg'", "inf", "index (0,)"]),
        ("wm", -1e30, ["initializer 'wm'", "-1e+30"]),
    ],
)
def test_non_finite_weights_are_refused_naming_initializer_and_value(tmp_path, name, value, words):
    model = tiny_cnn()
    t = _init(model, name)
    a = numpy_helper.to_array(t).copy()
    a.reshape(-1)[0] = value
    _set_values(t, a)
    path = _write(tmp_path, model)
    with pytest.raises(CheckpointError) as exc:
        read_onnx(path)
    for w in [str(path), *words]:
        assert w in str(exc.value)


def test_specific_refusals_name_node_initializer_and_value(tmp_path):
    cases = []
    m = tiny_cnn()
    _set_values(_init(m, "w1"), np.ones((3, 18), np.float32))
    cases.append((m, CheckpointError, ["node 'conv1' (Conv)", "'w1'", "(3, 18)"]))
    m = tiny_cnn()
    _set_values(_init(m, "bn_v"), np.array([1.0, -4.0], np.float32))
    cases.append((m, CheckpointError, ["node 'bn0'", "'bn_v' = -4.0", "index 1"]))
    m = tiny_cnn()
    m.graph.initializer.remove(_init(m, "wg"))
    cases.append((m, CheckpointError, ["node 'fc' (Gemm)", "input 1 'wg'", "missing initializer"]))
    m = tiny_cnn()
    _init(m, "bg").data_type = TensorProto.STRING
    cases.append((m, CheckpointError, ["initializer 'bg'", "STRING"]))
    m = tiny_cnn()
    _set_values(_init(m, "wm"), np.ones((5, 3), np.int64))
    cases.append((m, CheckpointError, ["node 'readout' (MatMul)", "'wm' is int64", "float"]))
    m = tiny_cnn()
    m.graph.input[0].type.tensor_type.shape.dim[2].dim_param = "H"
    cases.append((m, NotDeployableError, ["graph input 'image'", "'H'", "fixed"]))
    m = tiny_cnn()
    m.graph.input[0].type.tensor_type.shape.dim.pop()
    cases.append((m, NotDeployableError, ["graph input 'image'", "rank 3"]))
    for model, error, words in cases:
        with pytest.raises(error) as exc:
            read_onnx(_write(tmp_path, model))
        for w in words:
            assert w in str(exc.value), (words, str(exc.value))


def test_names_with_control_characters_are_refused_on_one_line(tmp_path):
    model = tiny_cnn()
    model.graph.node[1].name = "conv0\nInjected: line"
    with pytest.raises(CheckpointError, match=r"node 1 name 'conv0\\nInjected: line' has control"):
        read_onnx(_write(tmp_path, model))


def test_absurd_sizes_are_refused_before_decoding(tmp_path, monkeypatch):
    from snn2loihi.export import onnx_checks

    model = tiny_cnn()
    t = _init(model, "wg")
    del t.dims[:]
    t.dims.extend([1 << 20, 1 << 20])  # 2^40 values declared; the data is not even there
    with pytest.raises(CheckpointError, match=r"initializer 'wg' has dims \[1048576, 1048576\]"):
        read_onnx(_write(tmp_path, model))
    monkeypatch.setattr(onnx_checks, "MAX_NODES", 5)
    with pytest.raises(CheckpointError, match="11 nodes, more than the 5 allowed"):
        read_onnx(_write(tmp_path, tiny_cnn()))


def test_external_data_is_refused_without_reading_it(tmp_path):
    model = tiny_cnn()
    t = _init(model, "wg")
    t.ClearField("raw_data")
    t.data_location = TensorProto.EXTERNAL
    entry = t.external_data.add()
    entry.key, entry.value = "location", "../../etc/passwd"
    with pytest.raises(CheckpointError, match="initializer 'wg' keeps its data in an external"):
        read_onnx(_write(tmp_path, model))


def test_all_zero_dense_weights_are_refused_before_the_headroom_check(tmp_path, calib):
    model = tiny_cnn()
    _set_values(_init(model, "wm"), np.zeros((5, 3), np.float32))
    with pytest.raises(
        NetXValidationError, match=r"m.onnx: layer \d \(dense\): field 'weight' is all zero"
    ):
        convert_onnx(_write(tmp_path, model), calib, tmp_path / "o.net", steps=4)
    assert not (tmp_path / "o.net").exists()


@pytest.mark.parametrize(
    ("options", "needle"),
    [
        (["--percentile", "150"], r"--percentile 150\.0 must be in \(0, 100\]"),
        (["--percentile", "nan"], r"--percentile nan"),
        (["-T", str(2**63)], r"--steps 9223372036854775808 must be in 1\.\.4096"),
        (["--std", "1e-300"], r"layer 1: the folded (weight|bias) is not finite .*--mean/--std"),
        (["--std", "0"], r"--std\[0\] = 0\.0 must be finite and > 0"),
        (["--mean", "nan"], r"--mean\[0\] = nan must be finite"),
        (["--mean", "0.1,0.2"], r"--mean 0\.1,0\.2: give one value per channel .* \(1\)"),
        # the fuzz round: an overflowing fold printed numpy warnings, then a bias of -2^63
        (
            ["--mean", "1e308"],
            r"--mean \[1e\+308\] and --std \[1\.0\] with the graph's input affine give a non-fin",
        ),
    ],
)
def test_convert_options_are_checked_up_front(tmp_path, capsys, calib, options, needle):
    import re

    from snn2loihi.app.cli import main

    out = tmp_path / "o.net"
    path = _write(tmp_path, tiny_cnn())
    argv = ["convert", str(path), "--calib", str(calib), "--out", str(out), "-T", "4"]
    assert main(argv + options) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and re.search(needle, err), err
    assert not out.exists()


def test_calibration_images_of_the_wrong_shape_are_refused_from_their_header(tmp_path, cli_refusal):
    """A small .npz that deflates to 80 MiB of images the ONNX input cannot take: refused from
    the member's header, before it is decompressed (issue #30, item 5)."""
    import tracemalloc

    calib = tmp_path / "bomb.npz"
    np.savez_compressed(calib, x=np.zeros((20000, 64, 64), np.uint8), y=np.zeros(20000, int))
    assert calib.stat().st_size < 2**20
    path = _write(tmp_path, tiny_cnn())
    tracemalloc.start()
    try:
        err = cli_refusal(["convert", path, "--calib", calib, "--out", tmp_path / "o.net"])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert "bomb.npz: images are (1, 64, 64) (C, H, W), the ONNX input" in err, err
    assert peak < 2**24, f"peak {peak / 2**20:.0f} MiB"
    assert not (tmp_path / "o.net").exists()
