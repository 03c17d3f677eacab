"""``snn2loihi convert``: ONNX in, NetX out, with exact parity and refusals by op and node."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from test_export_helpers import assert_exported_parity, onnx_file
from torch import nn

from snn2loihi.app.cli import main
from snn2loihi.export.convert import build_model, onnx_to_model
from snn2loihi.export.errors import NotDeployableError
from snn2loihi.export.exporter import export_checkpoint
from snn2loihi.export.onnx_import import read_onnx
from snn2loihi.netx_io import read_network
from snn2loihi.train.checkpoint import checkpoint_config
from snn2loihi.train.data import load_datasets
from snn2loihi.train.netx_model import to_netx


@pytest.fixture(scope="module")
def onnx_and_calib(tmp_path_factory, digits_run):
    tmp = tmp_path_factory.mktemp("convert")
    ckpt = digits_run / "best.pt"
    export_checkpoint(ckpt, onnx=tmp / "m.onnx")
    state = torch.load(ckpt, weights_only=True)
    _, _, test, _ = load_datasets(checkpoint_config(state).data)
    x = test.x[:200]
    np.savez(tmp / "calib.npz", x=x[:, 0].numpy(), y=test.y[:200].numpy())
    return tmp, tmp / "m.onnx", tmp / "calib.npz"


def test_convert_cli_matches_onnx_and_fires_the_integer_branch_spikes(onnx_and_calib, digits_run):
    ort = pytest.importorskip("onnxruntime")
    from snn2loihi.export.accuracy import load_eval_data
    from snn2loihi.train.config import default_config

    tmp, onnx_path, calib = onnx_and_calib
    out = tmp / "conv.net"
    assert main(
        ["convert", str(onnx_path), "--calib", str(calib), "--out", str(out), "-T", "16"]
    ) in (0,)
    report = json.loads((tmp / "conv.report.json").read_text())
    acc = report["accuracy"]
    assert acc["equal"] and acc["samples"] == 200
    assert acc["emulator_acc"] >= acc["ann_acc"] - 0.1 and acc["ann_acc"] > 0.5

    data = load_eval_data(default_config().data, "train", calib)
    model, ann_acc, _ = onnx_to_model(read_onnx(onnx_path), data, steps=16, percentile=99.9)
    assert ann_acc == acc["ann_acc"]
    assert read_network(out) == to_netx(model)
    assert assert_exported_parity(out, model, data.x[:16]) > 0

    # the rebuilt ANN (before threshold balancing) is the ONNX graph
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    state = torch.load(digits_run / "best.pt", weights_only=True)
    meta = state["metrics"]["model"]
    image = (data.x[:8].double() / 255 - meta["mean"][0]) / meta["std"][0]
    (expected,) = sess.run(None, {"image": image.float().numpy()})
    ann = build_model(read_onnx(onnx_path), (1, 8, 8), 16, (0.0,), (1 / 255,))
    with torch.no_grad():
        got = ann.ann_forward(data.x[:8].float())[0].numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-3, atol=1e-3)


class _MaxPoolNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.fc = nn.Linear(64, 10)

    def forward(self, x):
        return self.fc(torch.flatten(nn.functional.max_pool2d(torch.relu(self.conv(x)), 2), 1))


class _ResidualNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(1, 4, 3, padding=1)
        self.b = nn.Conv2d(4, 4, 3, padding=1)
        self.fc = nn.Linear(256, 10)

    def forward(self, x):
        h = torch.relu(self.a(x))
        return self.fc(torch.flatten(torch.relu(self.b(h) + h), 1))


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize(
    ("module", "words"),
    [(_MaxPoolNet, ["MaxPool", "AveragePool"]), (_ResidualNet, ["Add", "residual"])],
)
def test_unsupported_onnx_ops_are_refused_by_name_and_node(tmp_path, capsys, module, words):
    path = onnx_file(module(), tmp_path / "bad.onnx")
    with pytest.raises(NotDeployableError) as exc:
        read_onnx(path)
    msg = str(exc.value)
    assert "ONNX node '" in msg
    for w in words:
        assert w in msg
    np.savez(tmp_path / "c.npz", x=np.zeros((4, 8, 8), np.uint8), y=np.arange(4))
    args = [
        "convert",
        str(path),
        "--calib",
        str(tmp_path / "c.npz"),
        "--out",
        str(tmp_path / "o.net"),
    ]
    assert main(args) == 2
    assert capsys.readouterr().err.count("\n") == 1
    assert not (tmp_path / "o.net").exists()


def test_onnx_calibration_streams_are_refused_in_one_line(onnx_and_calib, cli_refusal):
    tmp, onnx, _ = onnx_and_calib
    np.savez(tmp / "s.npz", x=np.zeros((3, 4, 1, 8, 8), np.uint8), y=np.zeros(3, np.int64))
    cli_refusal(
        ["convert", onnx, "--calib", tmp / "s.npz", "--out", tmp / "s.net"],
        "s.npz[x]", "streams of shape (3, 4, 1, 8, 8)", "images",
    )  # fmt: skip
