"""``snn2loihi export``: files written, overwrite refusal, bad checkpoints, ONNX round trip."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from test_export_helpers import random_checkpoint
from train_helpers import digits_like_batch

from snn2loihi.app.cli import main
from snn2loihi.netx_io import read_network
from snn2loihi.train.netx_model import to_netx


def test_export_writes_net_and_reports(tmp_path, capsys):
    ckpt, model, _ = random_checkpoint(tmp_path, "conv-stride")
    out = tmp_path / "out" / "model.net"
    assert main(["export", str(ckpt), "--out", str(out), "--samples", "40"]) == 0
    assert read_network(out) == to_netx(model)
    report = json.loads((tmp_path / "out" / "model.report.json").read_text())
    md = (tmp_path / "out" / "model.report.md").read_text()
    kinds = [r["type"] for r in report["layers"]]
    assert kinds == ["input", "conv", "conv", "flatten", "dense", "dense"]
    conv = report["layers"][1]
    assert conv["weight_shape"] == [8, 1, 3, 3] and conv["scale"] > 0
    assert conv["clipped_weights"] == 0 and conv["headroom"]["input_max"] == 255
    assert report["layers"][-1]["vth_mant"] == 2**17 - 1
    assert report["accuracy"]["samples"] == 40 and report["accuracy"]["equal"]
    assert "## Headroom" in md and "emulator on the exported .net" in md
    assert "integer SNN" in capsys.readouterr().out
    assert not list(out.parent.glob(".*.tmp"))


def test_second_export_needs_force(tmp_path, capsys):
    ckpt, _, _ = random_checkpoint(tmp_path, "dense-only")
    out = tmp_path / "model.net"
    assert main(["export", str(ckpt), "--out", str(out), "--no-accuracy"]) == 0
    before = out.read_bytes()
    capsys.readouterr()
    assert main(["export", str(ckpt), "--out", str(out), "--no-accuracy"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--force" in err and "model.net" in err
    assert out.read_bytes() == before
    assert main(["export", str(ckpt), "--out", str(out), "--no-accuracy", "--force"]) == 0


def test_data_override_from_npz(tmp_path):
    ckpt, _, _ = random_checkpoint(tmp_path, "dense-only")
    x = digits_like_batch(12).numpy()[:, 0]  # NHW
    np.savez(tmp_path / "d.npz", x=x, y=np.arange(12) % 10)
    out = tmp_path / "m.net"
    args = ["export", str(ckpt), "--out", str(out), "--data", str(tmp_path / "d.npz")]
    assert main(args) == 0
    acc = json.loads((tmp_path / "m.report.json").read_text())["accuracy"]
    assert acc["data"].endswith("d.npz") and acc["equal"]


def test_onnx_round_trip_matches_pytorch(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    from snn2loihi.export.onnx_export import normalize_images

    for shape in ("conv-stride", "pool-folded"):
        ckpt, model, _ = random_checkpoint(tmp_path, shape)
        onnx_path = tmp_path / f"{shape}.onnx"
        assert main(["export", str(ckpt), "--onnx", str(onnx_path)]) == 0
        x = digits_like_batch(7)
        with torch.no_grad():
            expected = model.ann_forward(x.float())[0].numpy()
        sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
        (got,) = sess.run(None, {"image": normalize_images(model, x).numpy()})
        assert got.shape == (7, 10)
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


def test_unavailable_config_data_is_reported_not_fatal(tmp_path):
    from snn2loihi.export.exporter import export_checkpoint

    ckpt, _, _ = random_checkpoint(tmp_path, "dense-only")
    state = torch.load(ckpt, weights_only=True)
    state["config"]["data"].update(dataset="mnist", root=str(tmp_path / "no-mnist"))
    torch.save(state, ckpt)
    report = export_checkpoint(ckpt, tmp_path / "m.net")
    assert report["accuracy"] is None and "mnist" in report["accuracy_skipped"]
    assert "not measured" in (tmp_path / "m.report.md").read_text()


def _nan_weight_checkpoint(tmp_path):
    ckpt, _, _ = random_checkpoint(tmp_path, "conv-stride")
    state = torch.load(ckpt, weights_only=True)
    state["model"]["layers.1.weight"][0, 0, 1, 2] = float("nan")
    torch.save(state, ckpt)
    return ckpt


def _bytes_checkpoint(content: bytes):
    def make(tmp_path):
        (tmp_path / "bad.pt").write_bytes(content)
        return tmp_path / "bad.pt"

    return make


def _good_checkpoint(tmp_path):
    return random_checkpoint(tmp_path, "dense-only")[0]


# (id, checkpoint maker, arguments after `export CKPT` (TMP = tmp_path), words in the error)
BAD_EXPORTS = [
    ("empty-file", _bytes_checkpoint(b""), ["--out", "TMP/m.net"], ["bad.pt"]),
    ("not-a-checkpoint", _bytes_checkpoint(b"not a checkpoint at all"), ["--out", "TMP/m.net"],
     ["bad.pt"]),
    ("truncated-zip", _bytes_checkpoint(b"PK\x03\x04truncated zip"), ["--out", "TMP/m.net"],
     ["bad.pt"]),
    ("missing-checkpoint", lambda tmp_path: tmp_path / "none.pt", ["--out", "TMP/m.net"],
     ["none.pt", "does not exist"]),
    ("no-output-named", _good_checkpoint, [], ["--out"]),
    ("missing-data-file", _good_checkpoint, ["--out", "TMP/m.net", "--data", "TMP/missing.npz"],
     ["missing.npz"]),
    ("nan-weight", _nan_weight_checkpoint, ["--out", "TMP/m.net", "--onnx", "TMP/m.onnx"],
     ["'layers.1.weight' = nan at index (0, 0, 1, 2)", "CKPT"]),
]  # fmt: skip


@pytest.mark.parametrize(
    ("make", "args", "words"), [pytest.param(*case[1:], id=case[0]) for case in BAD_EXPORTS]
)
def test_bad_export_exits_2_with_one_line_and_writes_nothing(
    tmp_path, cli_refusal, make, args, words
):
    ckpt = make(tmp_path)
    before = sorted(p.name for p in tmp_path.iterdir())
    err = cli_refusal(["export", str(ckpt), *(a.replace("TMP", str(tmp_path)) for a in args)])
    for word in words:
        assert word.replace("CKPT", str(ckpt)) in err
    assert sorted(p.name for p in tmp_path.iterdir()) == before, "nothing may be written"
