"""The CLI contract: parity/run/inspect, exit codes 0/1/2, one-line errors, JSON figures."""

from __future__ import annotations

import json
import subprocess
import sys

import h5py
import numpy as np
import pytest
import torch

from snn2loihi.app.cli import main
from snn2loihi.testing.netgen import SMALL, random_network


@pytest.fixture
def small_net(write_net):
    return write_net(random_network(SMALL, seed=0), "small.net")


@pytest.mark.lava
def test_parity_ok_table_and_json(small_net, tmp_path, capsys):
    out_json = tmp_path / "parity.json"
    code = main(
        [
            "parity",
            str(small_net),
            "--samples",
            "3",
            "--steps",
            "6",
            "--seed",
            "1",
            "--json",
            str(out_json),
        ]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    assert "PARITY OK: 3 samples x 6 steps, 2 layers compared" in out
    data = json.loads(out_json.read_text())
    assert data["equal"] is True and data["samples"] == 3 and data["steps"] == 6
    assert [ly["mismatches"] for ly in data["layers"]] == [0, 0]
    assert all(ly["lava_spikes"] == ly["emulator_spikes"] > 0 for ly in data["layers"])
    for ly in data["layers"]:
        assert f"{ly['lava_spikes']}" in out


@pytest.mark.lava
def test_parity_mismatch_exits_1_and_names_first_mismatch(small_net, tmp_path, capsys, monkeypatch):
    """A deliberately broken emulator (one spike flipped) must be caught and located."""
    from snn2loihi.deploy import emulator

    original = emulator.Emulator.run

    def flipped(self, x, **kw):
        res = original(self, x, **kw)
        res.layers[-1].spikes[1, 2, 3] = ~res.layers[-1].spikes[1, 2, 3]
        return res

    monkeypatch.setattr(emulator.Emulator, "run", flipped)
    code = main(
        [
            "parity",
            str(small_net),
            "--samples",
            "2",
            "--steps",
            "5",
            "--json",
            str(tmp_path / "p.json"),
        ]
    )
    out = capsys.readouterr().out
    assert code == 1
    assert "PARITY FAILED" in out and "sample 1 step 2 neuron (3,)" in out
    data = json.loads((tmp_path / "p.json").read_text())
    assert data["equal"] is False and data["layers"][-1]["mismatches"] == 1
    assert data["layers"][-1]["first_mismatch"] == [1, 2, [3]]


def test_inspect_prints_layers(small_net, capsys):
    assert main(["inspect", str(small_net)]) == 0
    out = capsys.readouterr().out
    assert "conv" in out and "dense" in out and "4x6x6" in out
    assert "2 synapse layers (pipeline delay 2 steps)" in out


def _npy(name: str, array: np.ndarray):
    def prepare(tmp_path, net):
        np.save(tmp_path / name, array)

    return prepare


def _negative_vth(tmp_path, net):
    with h5py.File(net, "a") as f:
        f["layer/1/neuron/vThMant"][()] = -3


def _images(tmp_path, net):
    x = np.random.default_rng(3).integers(0, 256, size=(4, 2, 8, 8), dtype=np.uint8)
    np.save(tmp_path / "x.npy", x)
    np.savez(tmp_path / "d.npz", x=x.transpose(0, 2, 3, 1), y=np.arange(4))


def _empty_npz(tmp_path, net):
    np.savez(tmp_path / "e.npz", x=np.zeros((0, 8, 8, 2), np.uint8), y=np.zeros(0, np.int64))


def _unknown_compression_npz(tmp_path, net):
    """An .npz whose x member names compression method 9 (deflate64), which zipfile cannot read."""
    _images(tmp_path, net)
    data = bytearray((tmp_path / "d.npz").read_bytes())
    for sig, offset in ((b"PK\x03\x04", 8), (b"PK\x01\x02", 10)):  # local and central headers
        at = data.find(sig)
        data[at + offset : at + offset + 2] = (9).to_bytes(2, "little")
    (tmp_path / "c.npz").write_bytes(bytes(data))


def _wide_net(tmp_path, net):
    """A 31 KB network whose input is 1x100000x100000 (two stride-127 convs)."""
    from snn2loihi.netx_io import write_network
    from snn2loihi.testing.netgen import NetSpec, RandomConv

    conv = RandomConv(1, stride=(127, 127))
    spec = NetSpec(input_shape=(1, 100000, 100000), convs=(conv, conv), dense=(10,))
    write_network(random_network(spec, seed=0), tmp_path / "wide.net")


def _linked(kind: str):
    """A .net whose layer 1 weight is a link (never followed) or holds a hard-linked cycle."""

    def prepare(tmp_path, net):
        with h5py.File(net, "a") as f:
            if kind == "hard-cycle":
                f["layer/0/loop"] = f["layer"]
                return
            del f["layer/1/weight"]
            f["layer/1/weight"] = {
                "cycle": h5py.SoftLink("/layer/1/w2"),
                "dangling": h5py.SoftLink("/nowhere"),
                "external": h5py.ExternalLink("gone.h5", "/w"),
            }[kind]
            if kind == "cycle":
                f["layer/1/w2"] = h5py.SoftLink("/layer/1/weight")

    return prepare


RUN = ["run", "NET", "--out", "TMP/o.npy", "--input"]
# (id, preparation of tmp_path and the .net, argv (NET and TMP filled in), message)
BAD_INPUTS = [
    ("missing-net", None, ["inspect", "missing.net"], "missing.net: no such file"),
    ("missing-input", None, [*RUN, "nope.npy"], "nope.npy: no such file"),
    ("zero-steps", None, ["parity", "NET", "--steps", "0"], "0 must be >= 1"),
    ("bad-shape-flag", None, ["parity", "NET", "--input-shape", "a,b"],
     "is not a comma-separated shape"),
    ("wrong-input-shape", _npy("bad.npy", np.zeros((2, 4, 3, 8, 8))), [*RUN, "TMP/bad.npy"],
     "expected (samples, steps, 2, 8, 8)"),
    ("negative-input", _npy("neg.npy", np.full((1, 4, 2, 8, 8), -1)), [*RUN, "TMP/neg.npy"],
     "neg.npy: value -1 at index [0, 0, 0, 0, 0] is not a spike (0/1) or an 8-bit integer"),
    ("fractional-input", _npy("f.npy", np.full((1, 4, 2, 8, 8), 0.5)), [*RUN, "TMP/f.npy"],
     "f.npy: value 0.5 at index [0, 0, 0, 0, 0]"),
    ("nan-input", _npy("n.npy", np.full((1, 4, 2, 8, 8), np.nan)), [*RUN, "TMP/n.npy"],
     "n.npy: value nan at index [0, 0, 0, 0, 0]"),
    ("corrupt-net", _negative_vth, ["inspect", "NET"],
     "layer 1 (conv): field 'neuron/vThMant' = -3"),
    # issue #30: sizes checked before allocating, options checked before any work
    ("run-steps-beyond-memory", _images, [*RUN, "TMP/x.npy", "--steps", "1000000000"],
     "x.npy: 4 images x 1000000000 steps of input (2, 8, 8) need 477 GiB, more than the memory"),
    ("eval-steps-beyond-memory", _images, ["eval", "NET", "--data", "TMP/d.npz", "--steps",
     "1000000000"], "d.npz (all images): 4 images x 1000000000 steps"),
    ("parity-wide-input", _wide_net, ["parity", "TMP/wide.net", "--samples", "1", "--steps", "1"],
     "wide.net: one sample of 1 steps needs about 74.5 GiB for parity"),
    *[(f"timeout-{v}", _images, [*RUN, "TMP/x.npy", "--steps", "2", "--timeout", v],
       f"argument --timeout: {v} must be a finite number of seconds > 0")
      for v in ("nan", "inf", "0", "-5")],
    ("parity-timeout-inf", None, ["parity", "NET", "--timeout", "inf"], "inf must be a finite"),
    # the fuzz round (bench/fuzz_cli.py): an uncaught exception each before
    ("parity-timeout-beyond-timer", None, ["parity", "NET", "--timeout", "1e308"],
     "argument --timeout: 1e308 s is more than the limit of 1000000000 s"),
    ("run-no-samples", _npy("e.npy", np.zeros((0, 4, 2, 8, 8))), [*RUN, "TMP/e.npy"],
     "e.npy: array has shape (0, 4, 2, 8, 8): need at least one sample and step"),
    ("run-no-images", _npy("e.npy", np.zeros((0, 2, 8, 8))), [*RUN, "TMP/e.npy", "--steps", "2"],
     "e.npy: array has shape (0, 2, 8, 8): holds no images"),
    ("eval-no-images", _empty_npz, ["eval", "NET", "--data", "TMP/e.npz", "--steps", "2"],
     "e.npz (all images): holds no images"),
    ("eval-npz-unknown-compression", _unknown_compression_npz, ["eval", "NET", "--data",
     "TMP/c.npz", "--steps", "2"], "c.npz: not a readable .npz archive (That compression method"),
    ("eval-timeout-nan", _images, ["eval", "NET", "--data", "TMP/d.npz", "--steps", "2",
     "--timeout", "nan"], "nan must be a finite"),
    ("record-on-sample-clock", _images, [*RUN, "TMP/x.npy", "--steps", "2", "--record", "s,u,v",
     "--clock", "sample"], "--record needs the global clock"),
    ("reset-interval-on-sample-clock", _images, [*RUN, "TMP/x.npy", "--steps", "2",
     "--reset-interval", "2", "--clock", "sample"], "--reset-interval needs the global clock"),
    ("reset-offset-alone", _images, [*RUN, "TMP/x.npy", "--steps", "2", "--reset-offset", "1"],
     "--reset-offset 1 needs --reset-interval"),
    ("parity-reset-offset-alone", None, ["parity", "NET", "--reset-offset", "0"],
     "--reset-offset 0 needs --reset-interval"),
    ("record-into-npy", _images, [*RUN, "TMP/x.npy", "--steps", "2", "--record", "s"],
     "--out TMP/o.npy: --record writes an .npz archive"),
    *[(f"link-{kind}", _linked(kind), ["inspect", "NET"], words) for kind, words in (
        ("cycle", "'/layer/1/w2' is a soft link to '/layer/1/weight'; links are not followed"),
        ("dangling", "'/layer/1/weight' is a soft link to '/nowhere'"),
        ("external", "'/layer/1/weight' is an external link to gone.h5:/w"),
        ("hard-cycle", "is nested deeper than 8 groups"))],
    ("train-seed-huge", None, ["train", "--seed", "99999999999999999999999", "--out", "TMP/t"],
     "argument --seed: 99999999999999999999999 must be in 0..9223372036854775807"),
    ("train-seed-negative-in-config", None, ["train", "--set", "train.seed=-3", "--out", "TMP/t"],
     "train.seed = -3 must be in [0, 9223372036854775807]"),
    ("demo-seed-huge", None, ["demo", "--seed", "99999999999999999999999", "--out", "TMP/t"],
     "argument --seed: 99999999999999999999999 must be in"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("prepare", "argv", "message"), [pytest.param(*c[1:], id=c[0]) for c in BAD_INPUTS]
)
def test_bad_input_exits_2_with_one_line(prepare, argv, message, small_net, tmp_path, cli_refusal):
    if prepare is not None:
        prepare(tmp_path, small_net)
    fill = {"NET": str(small_net), "TMP": str(tmp_path)}
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file() and not p.is_symlink()}
    err = cli_refusal([fill.get(a, a).replace("TMP", str(tmp_path)) for a in argv])
    assert message.replace("TMP", str(tmp_path)) in err
    assert not (tmp_path / "o.npy").exists() and not (tmp_path / "t").exists()
    after = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file() and not p.is_symlink()}
    assert after == before  # every input byte-identical, nothing written


@pytest.mark.multiprocess
def test_python_dash_m_entry_point(small_net):
    proc = subprocess.run(
        [sys.executable, "-m", "snn2loihi", "inspect", str(small_net)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0 and "pipeline delay" in proc.stdout
    proc = subprocess.run(
        [sys.executable, "-m", "snn2loihi", "bogus"], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 2 and "invalid choice" in proc.stderr


@pytest.mark.cuda
def test_emulator_cuda_device_matches_cpu_when_available(small_net):
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    from snn2loihi.deploy.emulator import Emulator

    x = (np.random.default_rng(0).random((4, 8, 2, 8, 8)) < 0.3).astype(np.uint8)
    cpu = Emulator(small_net).run(x, record_state=True)
    gpu = Emulator(small_net, device="cuda").run(x, record_state=True)
    for a, b in zip(cpu.layers, gpu.layers, strict=True):
        assert torch.equal(a.spikes, b.spikes) and torch.equal(a.v, b.v)


@pytest.mark.parametrize(
    "command", ["train", "export", "convert", "run", "parity", "inspect", "demo"]
)
def test_every_subcommand_help_shows_an_example(command, capsys):
    with pytest.raises(SystemExit) as exc:
        main([command, "--help"])
    assert exc.value.code == 0
    assert f"snn2loihi {command}" in capsys.readouterr().out.split("example", 1)[1]


@pytest.mark.parametrize(
    ("argv", "old", "new", "dest", "shown"),
    [
        (["train"], "--data-root", "--data", "data_root", "--data DATA"),
        (["export", "c.pt"], "--data-split", "--split", "data_split", "--split {val,test,train}"),
    ],
)
def test_one_spelling_per_idea_and_the_old_one_still_parses(argv, old, new, dest, shown):
    """The data is --data and the split --split in every command; the old spellings parse to
    the same value but are not shown in --help."""
    import argparse

    from snn2loihi.app.cli import build_parser

    parser = build_parser()
    assert getattr(parser.parse_args([*argv, old, "test"]), dest) == "test"
    assert getattr(parser.parse_args([*argv, new, "test"]), dest) == "test"
    assert getattr(parser.parse_args(argv), dest) == {"train": None, "export": "val"}[argv[0]]
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    text = sub.choices[argv[0]].format_help()
    assert shown in text and old not in text


def test_cli_reference_doc_is_current():
    from pathlib import Path

    from snn2loihi.app.cli import reference_markdown

    doc = Path(__file__).resolve().parents[1] / "docs" / "cli.md"
    assert doc.read_text() == reference_markdown(), "docs/cli.md is stale: run `make docs`"


def test_emulator_run_is_repeatable(small_net, tmp_path):
    """Same file, same input: the same spikes, byte for byte (seeded inputs are repeatable too)."""
    from snn2loihi.deploy.inputs import random_spikes

    x = random_spikes(3, 6, (2, 8, 8), seed=5)
    assert np.array_equal(x, random_spikes(3, 6, (2, 8, 8), seed=5))
    np.save(tmp_path / "x.npy", x)
    outs = []
    for k in range(2):
        out = tmp_path / f"o{k}.npy"
        argv = ["run", str(small_net), "--backend", "emulator", "--input", str(tmp_path / "x.npy")]
        assert main([*argv, "--out", str(out)]) == 0
        outs.append(out.read_bytes())
    assert outs[0] == outs[1] and np.load(tmp_path / "o0.npy").any()


@pytest.mark.slow
@pytest.mark.lava
def test_parity_is_repeatable(small_net, tmp_path):
    reports = []
    for k in range(2):
        out = tmp_path / f"p{k}.json"
        argv = ["parity", str(small_net), "--samples", "2", "--steps", "4", "--seed", "3"]
        assert main([*argv, "--json", str(out)]) == 0
        reports.append(json.loads(out.read_text()))
    assert reports[0] == reports[1] and reports[0]["equal"]
