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


@pytest.mark.parametrize(
    "content", [b"", b"not a checkpoint at all", b"PK\x03\x04truncated zip"], ids=str
)
def test_corrupt_checkpoint_is_one_line_exit_2(tmp_path, capsys, content):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(content)
    assert main(["export", str(bad), "--out", str(tmp_path / "m.net")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "bad.pt" in err and "Traceback" not in err
    assert not (tmp_path / "m.net").exists()


def test_missing_checkpoint_and_missing_outputs(tmp_path, capsys):
    assert main(["export", str(tmp_path / "none.pt"), "--out", str(tmp_path / "m.net")]) == 2
    assert "does not exist" in capsys.readouterr().err
    ckpt, _, _ = random_checkpoint(tmp_path, "dense-only")
    assert main(["export", str(ckpt)]) == 2
    assert "--out" in capsys.readouterr().err


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


def test_bad_data_file_fails_before_anything_is_written(tmp_path, capsys):
    ckpt, _, _ = random_checkpoint(tmp_path, "dense-only")
    out = tmp_path / "m.net"
    args = ["export", str(ckpt), "--out", str(out), "--data", str(tmp_path / "missing.npz")]
    assert main(args) == 2
    assert "missing.npz" in capsys.readouterr().err
    assert not out.exists()


def test_unavailable_config_data_is_reported_not_fatal(tmp_path):
    from snn2loihi.export.exporter import export_checkpoint

    ckpt, _, _ = random_checkpoint(tmp_path, "dense-only")
    state = torch.load(ckpt, weights_only=True)
    state["config"]["data"].update(dataset="mnist", root=str(tmp_path / "no-mnist"))
    torch.save(state, ckpt)
    report = export_checkpoint(ckpt, tmp_path / "m.net")
    assert report["accuracy"] is None and "mnist" in report["accuracy_skipped"]
    assert "not measured" in (tmp_path / "m.report.md").read_text()


def test_nan_weight_checkpoint_exits_2_naming_the_parameter(tmp_path, capsys):
    ckpt, _, _ = random_checkpoint(tmp_path, "conv-stride")
    state = torch.load(ckpt, weights_only=True)
    state["model"]["layers.1.weight"][0, 0, 1, 2] = float("nan")
    torch.save(state, ckpt)
    out = tmp_path / "m.net"
    assert main(["export", str(ckpt), "--out", str(out), "--onnx", str(tmp_path / "m.onnx")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "'layers.1.weight' = nan at index (0, 0, 1, 2)" in err and str(ckpt) in err
    assert not out.exists() and not (tmp_path / "m.onnx").exists()
