"""``convert`` with general geometry: kernel 5 / stride 2 / pads 0, AveragePool before a strided
conv, GlobalAveragePool + Gemm, auto_pad; refusals of what one square NetX conv cannot express."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from test_export_helpers import assert_exported_parity, onnx_file
from torch import nn

from snn2loihi.export.convert import build_model, convert_onnx
from snn2loihi.export.errors import NotDeployableError
from snn2loihi.export.onnx_import import read_onnx
from snn2loihi.netx_io import read_network

onnx = pytest.importorskip("onnx")
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


class GeometryCnn(nn.Module):
    """1x16x16 -> conv 5x5/2 pads 0 (6x6) -> avg pool 2 (3x3) -> conv 3x3/2 pads 1 (2x2)
    -> global average pool -> Gemm 10."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(1, 12, 5, stride=2, padding=0)
        self.c2 = nn.Conv2d(12, 24, 3, stride=2, padding=1)
        self.fc = nn.Linear(24, 10)

    def forward(self, x):
        h = F.avg_pool2d(torch.relu(self.c1(x)), 2)
        h = F.adaptive_avg_pool2d(torch.relu(self.c2(h)), 1)
        return self.fc(torch.flatten(h, 1))


def _digits16():
    """sklearn digits as uint8 16x16 images (each pixel doubled): (train x, y), (test x, y)."""
    from snn2loihi.train.config import default_config
    from snn2loihi.train.data import load_datasets

    train, _, test, _ = load_datasets(default_config().data)
    up = [d.x.repeat_interleave(2, 2).repeat_interleave(2, 3) for d in (train, test)]
    return (up[0], train.y), (up[1], test.y)


@pytest.fixture(scope="module")
def trained_cnn(tmp_path_factory):
    """GeometryCnn trained briefly on pixel inputs / 255 (about 3 s); ONNX and calib.npz."""
    tmp = tmp_path_factory.mktemp("geometry")
    torch.set_num_threads(1)
    torch.manual_seed(0)
    (x, y), (xt, yt) = _digits16()
    model = GeometryCnn()
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(8):
        for idx in torch.randperm(len(x)).split(64):
            loss = F.cross_entropy(model(x[idx].float() / 255), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    calib = tmp / "calib.npz"
    np.savez(calib, x=xt[:200, 0].numpy(), y=yt[:200].numpy())
    return model.eval(), onnx_file(model, tmp / "cnn.onnx", shape=(1, 1, 16, 16)), calib, tmp


def test_geometry_cnn_is_read_as_pooled_strided_convs(trained_cnn):
    model, path, _, _ = trained_cnn
    net = read_onnx(path)
    got = [(ly.kind, ly.weight.shape, ly.stride, ly.padding, ly.pool) for ly in net.layers]
    assert got == [
        ("conv", (12, 1, 5, 5), 2, 0, 1),
        ("conv", (24, 12, 3, 3), 2, 1, 2),
        ("dense", (10, 24 * 2 * 2), 1, 0, 1),  # global pool folded into the dense weight
    ]
    ann = build_model(net, (1, 16, 16), 16, (0.0,), (1.0,))  # graph input = pixel / 255
    x = torch.randint(0, 256, (8, 1, 16, 16)).float()
    with torch.no_grad():
        torch.testing.assert_close(ann.ann_forward(x)[0], model(x / 255), rtol=1e-4, atol=1e-4)


def test_geometry_cnn_converts_close_to_the_ann_with_exact_parity(trained_cnn):
    _, path, calib, tmp = trained_cnn
    out = tmp / "cnn.net"
    report = convert_onnx(path, calib, out, steps=16)
    acc = report["accuracy"]
    assert acc["ann_acc"] > 0.7, acc
    assert acc["equal"] and acc["emulator_acc"] >= acc["ann_acc"] - 0.1, acc
    assert json.loads((tmp / "cnn.report.json").read_text())["accuracy"] == acc
    net = read_network(out)
    assert [ly.weight.shape[2:] for _, ly in net.synaptic_layers[:2]] == [(5, 5), (6, 6)]
    from snn2loihi.export.accuracy import load_eval_data
    from snn2loihi.export.convert import onnx_to_model
    from snn2loihi.train.config import default_config

    data = load_eval_data(default_config().data, "train", calib)
    model, _, _ = onnx_to_model(read_onnx(path), data, steps=16, percentile=99.9)
    assert assert_exported_parity(out, model, data.x[:8]) > 0


class _PoolBeforeDense(nn.Module):
    """Overlapping AveragePool 3x3/2 and a non-global pool before Flatten + Gemm, on 1x9x7."""

    def __init__(self):
        super().__init__()
        self.c = nn.Conv2d(1, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 4 * 3, 10)

    def forward(self, x):
        return self.fc(torch.flatten(F.avg_pool2d(torch.relu(self.c(x)), 3, stride=2), 1))


def test_overlapping_pool_before_gemm_folds_exactly(tmp_path):
    torch.manual_seed(1)
    module = _PoolBeforeDense().eval()
    net = read_onnx(onnx_file(module, tmp_path / "p.onnx", (1, 1, 9, 7)))
    assert net.layers[1].weight.shape == (10, 4 * 9 * 7)
    ann = build_model(net, (1, 9, 7), 4, (0.0,), (1.0,))
    x = torch.rand(4, 1, 9, 7, dtype=torch.float64).float() * 255
    with torch.no_grad():
        torch.testing.assert_close(ann.ann_forward(x)[0], module(x / 255), rtol=1e-4, atol=1e-4)


def _conv_onnx(tmp_path, conv_attrs: dict, shape=(1, 1, 8, 8), pool: dict | None = None):
    """image -> [AveragePool] -> Conv 'conv' (4 channels) -> Relu -> Flatten -> Gemm 'fc'."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    k = conv_attrs.pop("kernel", (3, 3))
    cin = shape[1] // conv_attrs.get("group", 1)
    w = numpy_helper.from_array(rng.standard_normal((4, cin, *k)).astype(np.float32), "w")
    nodes, src = [], "image"
    if pool is not None:
        nodes.append(helper.make_node("AveragePool", [src], ["pooled"], name="pool", **pool))
        src = "pooled"
    nodes += [
        helper.make_node("Conv", [src, "w"], ["c"], name="conv", **conv_attrs),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node("Flatten", ["r"], ["f"], name="flat", axis=1),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", *shape[1:]])],
        [helper.make_tensor_value_info("f", TensorProto.FLOAT, ["N", "F"])],
        [w],
    )
    path = tmp_path / "c.onnx"
    path.write_bytes(
        helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()
    )
    return path


@pytest.mark.parametrize(
    ("attrs", "words"),
    [
        (dict(dilations=[2, 2], pads=[2, 2, 2, 2]), ["'conv' (Conv)", "dilations [2, 2]"]),
        (dict(group=2, pads=[1, 1, 1, 1]), ["'conv' (Conv)", "group 2"]),
        (dict(pads=[0, 0, 1, 1]), ["'conv' (Conv)", "pads [0, 0, 1, 1]", "asymmetric"]),
        (dict(pads=[1, 2, 1, 2]), ["'conv' (Conv)", "pads [1, 2, 1, 2]", "H and W"]),
        (dict(kernel=(3, 5), pads=[1, 2, 1, 2]), ["'conv' (Conv)", "kernel 3x5"]),
        (dict(strides=[1, 2]), ["'conv' (Conv)", "strides [1, 2]"]),
        (dict(auto_pad="SAME_UPPER", kernel=(2, 2)), ["'conv' (Conv)", "SAME_UPPER", "asymmetric"]),
    ],
)
def test_conv_geometry_refusals_name_node_and_value(tmp_path, attrs, words):
    shape = (1, 2, 8, 8) if attrs.get("group") else (1, 1, 8, 8)
    with pytest.raises(NotDeployableError) as exc:
        read_onnx(_conv_onnx(tmp_path, attrs, shape))
    for w in words:
        assert w in str(exc.value), str(exc.value)


@pytest.mark.parametrize(
    ("attrs", "pad"),
    [
        (dict(auto_pad="SAME_UPPER", kernel=(5, 5)), 2),
        (dict(auto_pad="SAME_LOWER", kernel=(3, 3), strides=[2, 2]), None),
        (dict(auto_pad="VALID", kernel=(5, 5)), 0),
        (dict(kernel=(1, 1)), 0),
    ],
)
def test_auto_pad_and_default_pads(tmp_path, attrs, pad):
    """SAME with an even total pads symmetrically; 3x3/2 on 8 pads 1 total: refused."""
    path = _conv_onnx(tmp_path, attrs)
    if pad is None:
        with pytest.raises(NotDeployableError, match="SAME_LOWER pads 1 rows/columns"):
            read_onnx(path)
        return
    assert read_onnx(path).layers[0].padding == pad


@pytest.mark.parametrize(
    ("pool", "shape", "words"),
    [
        (
            dict(kernel_shape=[2, 2], strides=[2, 2]),
            (1, 1, 9, 9),
            ["'conv' (Conv)", "'pool'", "input size 9", "padding 1"],
        ),
        (
            dict(kernel_shape=[3, 3], strides=[2, 2]),
            (1, 1, 9, 9),
            ["'conv' (Conv)", "'pool' (3x3, strides 2,2)"],
        ),
        (
            dict(kernel_shape=[2, 2], strides=[2, 2], pads=[1, 1, 1, 1]),
            (1, 1, 8, 8),
            ["'pool' (AveragePool)", "padded"],
        ),
        (
            dict(kernel_shape=[2, 2], strides=[2, 2], ceil_mode=1),
            (1, 1, 8, 8),
            ["'pool' (AveragePool)", "ceil_mode"],
        ),
    ],
)
def test_pool_refusals_name_node_and_sizes(tmp_path, pool, shape, words):
    path = _conv_onnx(tmp_path, dict(pads=[1, 1, 1, 1]), shape, pool)
    with pytest.raises(NotDeployableError) as exc:
        read_onnx(path)
    for w in words:
        assert w in str(exc.value), str(exc.value)


def test_pool_before_conv_on_odd_input_with_no_padding_is_accepted(tmp_path):
    path = _conv_onnx(
        tmp_path, dict(strides=[2, 2]), (1, 1, 9, 9), dict(kernel_shape=[2, 2], strides=[2, 2])
    )
    layer = read_onnx(path).layers[0]
    assert (layer.pool, layer.stride, layer.padding) == (2, 2, 0)
