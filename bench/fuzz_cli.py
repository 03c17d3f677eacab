"""Fuzz round of the CLI: generated cases across the commands, checked against the CLI's promises.

    .venv/bin/python bench/fuzz_cli.py --cases 600 --seed 0

Each case runs one ``snn2loihi`` command (in-process through ``snn2loihi.app.cli.main``; a
subprocess only for ``demo``, whose accepted values would start a long run) on tiny inputs made
once per round: the sklearn digits as ``.npz``, a 1-epoch checkpoint of a one-conv network,
random ``.net`` files of ``snn2loihi.testing.netgen``, and the ONNX and NIR exports of the
checkpoint. The families are numeric options (NaN, inf, 0, negative, 2^63, text, huge shapes),
mutated ``.net`` files (dropped, retyped, reshaped and extreme fields, links, compression, byte
flips, truncation), mutated ``.npy``/``.npz`` inputs, mutated ONNX, NIR and checkpoint files,
and output paths (existing files, folders, an input, missing folders, a FIFO). The invariants:

- exit 0 or 2; 1 only where a check genuinely fails (a parity mismatch); never an uncaught
  exception (a traceback);
- on exit 2, exactly one stderr line, naming the file or the value that was refused;
- every input byte-identical afterwards;
- no temporary file left in the case's folder, in the private ``TMPDIR`` or ``/tmp/snn2loihi-*``.

A value that is accepted and runs past the case's limit (``train --epochs 2^63-1``) is stopped
there and recorded with exit -1; that is not a finding.

The results (cases per family, exits, time, and every case that broke an invariant, with its
command line) go to ``bench/results/fuzz_cli.json`` (``--results``). Exit status 0 when nothing
was found. ``generate_cases`` and ``run_case`` are also used by ``tests/test_fuzz_cli.py`` on a
small seeded slice.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from harness import machine, write_result

ROOT = Path(__file__).resolve().parents[1]
TEMP_MARKS = ("snn2loihi-", ".tmp")

# Values for options that take a number (the first few are valid somewhere).
NUMBERS = [
    "1", "2", "0", "-1", "-0", "nan", "NaN", "inf", "-inf", "1e308", "1e999", "0.5", "1.5",
    str(2**63), str(2**63 - 1), str(-(2**63)), str(2**64), "1e-300", "", "abc", "0x10", "1_0",
    " 3", "3 ", "٣",
]  # fmt: skip


@dataclass
class Case:
    family: str
    argv: list[str]
    inputs: list[Path] = field(default_factory=list)  # must stay byte-identical
    folder: Path | None = None  # checked for temporary leftovers
    names: list[str] = field(default_factory=list)  # one must appear in a refusal line
    subprocess: bool = False
    timeout: float = 120.0
    exit1_ok: bool = False  # a check that can genuinely fail (parity)

    def record(self) -> dict:
        return {"family": self.family, "argv": self.argv}


# ------------------------------------------------------------------------------------ fixtures
def _quiet_main(argv: list[str]) -> tuple[int, str, str]:
    """``main(argv)`` in-process with stdout/stderr captured (logging rebound to the capture)."""
    from snn2loihi.app.cli import main

    out, err = io.StringIO(), io.StringIO()
    for name in ("", "snn2loihi.progress"):  # handlers bound to an earlier stream
        lg = logging.getLogger(name)
        for h in list(lg.handlers):
            lg.removeHandler(h)
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 2
    return code, out.getvalue(), err.getvalue()


def make_fixtures(work: Path) -> dict:
    """The tiny inputs every case starts from (made once; copied into each case's folder)."""
    import h5py  # noqa: F401 - fail early when missing
    from sklearn.datasets import load_digits

    from snn2loihi.netx_io import write_network
    from snn2loihi.testing.netgen import GEOMETRY, SMALL, random_network

    fx = work / "fixtures"
    fx.mkdir(parents=True)
    d = load_digits()
    x = np.round(d.images * (255 / 16)).astype(np.uint8)
    np.savez(fx / "digits.npz", x=x[:64], y=d.target[:64])
    write_network(random_network(SMALL, seed=1), fx / "small.net")
    write_network(random_network(GEOMETRY, seed=2), fx / "geometry.net")
    rng = np.random.default_rng(0)
    np.save(fx / "spikes.npy", (rng.random((2, 4, 2, 8, 8)) < 0.3).astype(np.uint8))
    np.save(fx / "images.npy", rng.integers(0, 256, (3, 2, 8, 8), dtype=np.uint8))
    np.save(fx / "labels.npy", np.array([1, 2, 3]))
    run = fx / "ckpt"
    code, _, err = _quiet_main(
        ["train", "--epochs", "1", "--steps", "2", "--set", "model.arch='custom'",
         "--set", "model.convs=['8']", "--set", "model.dense=[]", "--out", str(run),
         "--no-progress"]
    )  # fmt: skip
    if code != 0:
        raise SystemExit(f"fixture checkpoint: exit {code}: {err}")
    shutil.copy(run / "last.pt", fx / "model.pt")
    code, _, err = _quiet_main(
        ["export", str(fx / "model.pt"), "--out", str(fx / "model.net"), "--onnx",
         str(fx / "model.onnx"), "--nir", str(fx / "model.nir"), "--samples", "16"]
    )  # fmt: skip
    if code != 0:
        raise SystemExit(f"fixture export: exit {code}: {err}")
    return {p.name: p for p in fx.iterdir() if p.is_file()} | {"run": run}


# ----------------------------------------------------------------------------------- mutations
def _flip_bytes(src: Path, dst: Path, rng: np.random.Generator) -> str:
    data = bytearray(src.read_bytes())
    k = int(rng.integers(1, 9))
    for i in rng.integers(0, len(data), k):
        data[int(i)] ^= int(rng.integers(1, 256))
    dst.write_bytes(bytes(data))
    return f"flip {k} bytes"


def _truncate(src: Path, dst: Path, rng: np.random.Generator) -> str:
    data = src.read_bytes()
    n = int(rng.integers(0, len(data)))
    dst.write_bytes(data[:n])
    return f"truncate to {n}"


def _h5_datasets(path: Path) -> list[str]:
    import h5py

    names: list[str] = []
    with h5py.File(path, "r") as f:
        f.visit(lambda n: names.append(n) if isinstance(f[n], h5py.Dataset) else None)
    return names


EXTREMES = [np.nan, np.inf, -np.inf, 0, -1, 2**31, 2**62, -(2**62), 1e300, 0.5, 255, 256]


def mutate_h5(src: Path, dst: Path, rng: np.random.Generator) -> str:
    """One structural mutation of an HDF5 file (.net or .nir)."""
    import h5py

    shutil.copy(src, dst)
    names = _h5_datasets(dst)
    op = str(
        rng.choice(
            ["drop", "retype", "reshape", "extreme", "string", "softlink", "dangling",
             "external", "hardcycle", "gzip-huge", "empty", "attr", "flip", "truncate",
             "scalar", "group"]
        )
    )  # fmt: skip
    if op == "flip":
        return _flip_bytes(src, dst, rng)
    if op == "truncate":
        return _truncate(src, dst, rng)
    name = str(rng.choice(names)) if names else ""
    with h5py.File(dst, "r+") as f:
        if op == "drop" and name:
            del f[name]
        elif op == "retype" and name:
            old = f[name][()]
            del f[name]
            kind = str(rng.choice(["f4", "f8", "u1", "i1", "S8", "bool", "c8"]))
            try:
                f[name] = np.asarray(old).astype(kind) if kind != "S8" else np.bytes_(b"x")
            except (TypeError, ValueError):
                f[name] = np.float32(1.5)
        elif op == "reshape" and name:
            old = np.asarray(f[name][()])
            del f[name]
            shape = tuple(int(s) for s in rng.integers(0, 4, int(rng.integers(0, 4))))
            f[name] = np.resize(old if old.dtype.kind in "iufb" else np.zeros(1), shape)
        elif op == "extreme" and name:
            old = np.asarray(f[name][()])
            del f[name]
            value = EXTREMES[int(rng.integers(len(EXTREMES)))]
            f[name] = np.full(old.shape if old.dtype.kind in "iufb" else (), value)
        elif op == "string" and name:
            del f[name]
            f[name] = np.bytes_(bytes(rng.integers(0, 256, int(rng.integers(0, 400)), np.uint8)))
        elif op == "softlink" and name:
            del f[name]
            f[name] = h5py.SoftLink("/" + name.rsplit("/", 1)[0])
        elif op == "dangling" and name:
            del f[name]
            f[name] = h5py.SoftLink("/nowhere")
        elif op == "external" and name:
            del f[name]
            f[name] = h5py.ExternalLink(str(src), "/" + name)
        elif op == "hardcycle":
            grp = next((k for k in f.keys() if isinstance(f[k], h5py.Group)), None)
            if grp is not None:
                f[grp]["loop"] = f[grp]
        elif op == "gzip-huge" and name:
            del f[name]
            n = int(rng.choice([2**20, 2**24, 2**27 + 1]))
            f.create_dataset(name, shape=(n,), dtype="i1", compression="gzip", fillvalue=1)
        elif op == "empty" and name:
            del f[name]
            f[name] = np.zeros((0,), np.int64)
        elif op == "attr":
            f.attrs[str(rng.choice(["steps", "dt", "version"]))] = EXTREMES[
                int(rng.integers(len(EXTREMES)))
            ]
        elif op == "scalar" and name:
            del f[name]
            f[name] = np.int64(int(rng.integers(-(2**40), 2**40)))
        elif op == "group" and name:
            del f[name]
            f.create_group(name)
    return f"{op} {name}".strip()


def mutate_npz(src: Path, dst: Path, rng: np.random.Generator) -> str:
    """One mutation of an ``.npz`` of images (x) and labels (y)."""
    with np.load(src) as z:
        arrays = {k: z[k] for k in z.files}
    op = str(
        rng.choice(
            ["nan", "float", "shape", "labels", "drop", "pickle", "empty", "big", "flip",
             "truncate", "forged", "wide", "negative-label", "int64", "bool"]
        )
    )  # fmt: skip
    if op == "flip":
        return _flip_bytes(src, dst, rng)
    if op == "truncate":
        return _truncate(src, dst, rng)
    x, y = arrays["x"], arrays["y"]
    if op == "nan":
        x = x.astype(np.float32)
        x.flat[0] = np.nan
    elif op == "float":
        x = x.astype(np.float64) + 0.5
    elif op == "shape":
        x = x.reshape(x.shape[0], -1)[:, : int(rng.integers(1, 64))]
    elif op == "labels":
        y = y[: int(rng.integers(0, len(y)))]
    elif op == "drop":
        arrays.pop(str(rng.choice(["x", "y"])))
    elif op == "pickle":
        np.savez(dst, x=np.array([{"a": 1}], dtype=object), y=y)
        return op
    elif op == "empty":
        x, y = x[:0], y[:0]
    elif op == "big":
        x = np.zeros((4, 300, 300), np.uint8)
        y = y[:4]
    elif op == "forged":
        buf = io.BytesIO()
        np.lib.format.write_array_header_1_0(
            buf, {"descr": "|u1", "fortran_order": False, "shape": (10**7, 8, 8)}
        )
        with zipfile.ZipFile(dst, "w") as zf:
            zf.writestr("x.npy", buf.getvalue() + b"\0" * 64)
            yb = io.BytesIO()
            np.save(yb, y)
            zf.writestr("y.npy", yb.getvalue())
        return op
    elif op == "wide":
        x = x.astype(np.uint16) * 300
    elif op == "negative-label":
        y = y.copy()
        y[0] = -5
    elif op == "int64":
        y = y.astype(np.float64) + 0.25
    elif op == "bool":
        x = x > 128
    if op != "drop":
        arrays["x"], arrays["y"] = x, y
    np.savez(dst, **arrays)
    return op


def mutate_npy(src: Path, dst: Path, rng: np.random.Generator) -> str:
    a = np.load(src)
    op = str(
        rng.choice(
            ["nan", "negative", "fraction", "big", "shape", "object", "forged", "truncate",
             "empty", "int64", "float16", "rank"]
        )
    )  # fmt: skip
    if op == "truncate":
        return _truncate(src, dst, rng)
    if op == "nan":
        a = a.astype(np.float32)
        a.flat[int(rng.integers(a.size))] = np.nan
    elif op == "negative":
        a = a.astype(np.int16)
        a.flat[0] = -1
    elif op == "fraction":
        a = a.astype(np.float64) + 0.5
    elif op == "big":
        a = a.astype(np.int32)
        a.flat[0] = 2**31 - 1
    elif op == "shape":
        a = a.reshape(-1)[: int(rng.integers(1, a.size))]
    elif op == "object":
        np.save(dst, np.array([None, 1], dtype=object), allow_pickle=True)
        return op
    elif op == "forged":
        buf = io.BytesIO()
        np.lib.format.write_array_header_1_0(
            buf, {"descr": "<f8", "fortran_order": False, "shape": (10**6, 10**6)}
        )
        dst.write_bytes(buf.getvalue() + b"\0" * 64)
        return op
    elif op == "empty":
        a = a[:0]
    elif op == "int64":
        a = a.astype(np.int64)
    elif op == "float16":
        a = a.astype(np.float16)
    elif op == "rank":
        a = a[None, None]
    np.save(dst, a)
    return op


def mutate_onnx(src: Path, dst: Path, rng: np.random.Generator) -> str:
    import onnx
    from onnx import numpy_helper

    op = str(rng.choice(["flip", "truncate", "init", "drop-node", "optype", "input", "nan"]))
    if op == "flip":
        return _flip_bytes(src, dst, rng)
    if op == "truncate":
        return _truncate(src, dst, rng)
    m = onnx.load(str(src))
    g = m.graph
    if op in ("init", "nan") and g.initializer:
        k = int(rng.integers(len(g.initializer)))
        t = numpy_helper.to_array(g.initializer[k]).copy()
        if op == "nan":
            t = t.astype(np.float32)
            t.flat[0] = [np.nan, np.inf, 1e30, -1e20][int(rng.integers(4))]
        else:
            t = np.resize(t, tuple(int(s) for s in rng.integers(0, 5, int(rng.integers(0, 4)))))
        g.initializer[k].CopyFrom(numpy_helper.from_array(t, g.initializer[k].name))
        op = f"{op} {g.initializer[k].name}"
    elif op == "drop-node" and g.node:
        del g.node[int(rng.integers(len(g.node)))]
    elif op == "optype" and g.node:
        g.node[int(rng.integers(len(g.node)))].op_type = str(
            rng.choice(["Relu", "Conv", "Gemm", "MaxPool", "Sigmoid", "Loop"])
        )
    elif op == "input":
        dims = g.input[0].type.tensor_type.shape.dim
        if dims:
            dims[int(rng.integers(len(dims)))].dim_value = int(rng.choice([0, 1, 3, 2**31, 100000]))
    onnx.save(m, str(dst))
    return op


def mutate_checkpoint(src: Path, dst: Path, rng: np.random.Generator) -> str:
    import torch

    op = str(rng.choice(["flip", "truncate", "nan", "drop", "config", "shape", "empty"]))
    if op == "flip":
        return _flip_bytes(src, dst, rng)
    if op == "truncate":
        return _truncate(src, dst, rng)
    if op == "empty":
        dst.write_bytes(b"")
        return op
    ck = torch.load(src, weights_only=True)
    sd = ck.get("model") if isinstance(ck.get("model"), dict) else None
    if sd is None:
        sd = next((v for v in ck.values() if isinstance(v, dict) and v), {})
    keys = [k for k, v in sd.items() if hasattr(v, "dtype") and v.is_floating_point()]
    if op == "nan" and keys:
        k = str(rng.choice(keys))
        sd[k] = sd[k].clone()
        sd[k].view(-1)[0] = float(rng.choice([np.nan, np.inf, -1e30, 0.0, -1.0]))
        op = f"nan {k}"
    elif op == "drop" and keys:
        k = str(rng.choice(keys))
        del sd[k]
        op = f"drop {k}"
    elif op == "shape" and keys:
        k = str(rng.choice(keys))
        sd[k] = torch.zeros(3, 1)
        op = f"shape {k}"
    elif op == "config":
        for key, value in ck.items():
            if isinstance(value, str) and "[" in value:
                ck[key] = value.replace("steps", "stepz").replace("= 2", "= -2")
                break
            if isinstance(value, dict) and key != "model":
                ck[key] = {**value, "steps": float("nan")}
                break
    torch.save(ck, dst)
    return op


# ---------------------------------------------------------------------------------- generation
def _pick(rng: np.random.Generator, seq):
    return seq[int(rng.integers(len(seq)))]


# families whose accepted values start Lava, a subprocess or a training run (slow)
SLOW_FAMILIES = frozenset(
    {"lava", "numbers-parity", "numbers-demo", "numbers-train", "config-train"}
)


def generate_cases(
    fx: dict, work: Path, n: int, seed: int, exclude: frozenset = frozenset()
) -> list[Case]:
    """``n`` cases, deterministic in ``seed``, none of the families ``exclude``; each gets its
    own folder under ``work/cases``."""
    rng = np.random.default_rng(seed)
    families = [
        ("numbers-run", 14), ("numbers-eval", 8), ("numbers-parity", 3),
        ("numbers-export", 6), ("numbers-convert", 8), ("numbers-train", 6),
        ("numbers-demo", 2), ("shapes", 5), ("net-inspect", 12), ("net-run", 10),
        ("net-eval", 3), ("npz-eval", 5), ("npz-export", 3), ("npz-convert", 4),
        ("npy-run", 6), ("onnx-convert", 6), ("nir-convert", 6), ("ckpt-export", 4),
        ("ckpt-eval", 3), ("outputs", 8), ("config-train", 4), ("lava", 1),
    ]  # fmt: skip
    families = [(name, w) for name, w in families if name not in exclude]
    weights = np.array([w for _, w in families], float)
    weights /= weights.sum()
    cases = []
    for k in range(n):
        fam = families[int(rng.choice(len(families), p=weights))][0]
        folder = work / "cases" / f"{k:04d}"
        folder.mkdir(parents=True)
        case = _make_case(fam, fx, folder, rng)
        case.folder = folder
        cases.append(case)
    return cases


def _copy(fx: dict, name: str, folder: Path, as_name: str | None = None) -> Path:
    dst = folder / (as_name or name)
    shutil.copy(fx[name], dst)
    return dst


def _make_case(fam: str, fx: dict, d: Path, rng: np.random.Generator) -> Case:
    num = _pick(rng, NUMBERS)
    out = d / "o.npy"
    if fam == "numbers-run":
        net = _copy(fx, "small.net", d)
        x = _copy(fx, _pick(rng, ["spikes.npy", "images.npy"]), d)
        opt = _pick(rng, ["--steps", "--timeout", "--reset-interval", "--reset-offset"])
        argv = ["run", str(net), "--backend", "emulator", "--input", str(x), "--out", str(out)]
        if opt in ("--reset-interval", "--reset-offset"):
            argv += ["--clock", "global"]
            if opt == "--reset-offset":
                argv += ["--reset-interval", "2"]
        if x.name == "images.npy" and opt != "--steps":
            argv += ["--steps", "2"]
        return Case(fam, [*argv, opt, num], [net, x], names=[num, opt, x.name])
    if fam == "numbers-eval":
        src = _pick(rng, ["model.net", "model.pt"])
        net = _copy(fx, src, d)
        data = _copy(fx, "digits.npz", d)
        opt = _pick(rng, ["--steps", "--samples", "--batch-size", "--timeout"])
        argv = ["eval", str(net), "--data", str(data), "--no-progress", "--json", str(d / "e.json")]
        if opt != "--samples":
            argv += ["--samples", "8"]
        return Case(fam, [*argv, opt, num], [net, data], names=[num, opt])
    if fam == "numbers-parity":
        net = _copy(fx, "small.net", d)
        opt = _pick(rng, ["--samples", "--steps", "--seed", "--rate", "--timeout"])
        # parity with valid numbers starts Lava: make every parity case fail before it
        # by giving the emulator-only refusal a chance, or skip Lava with a bad shape.
        argv = ["parity", str(net), opt, num, "--json", str(d / "p.json")]
        return Case(fam, argv, [net], names=[num, opt, opt.lstrip("-")], timeout=300, exit1_ok=True)
    if fam == "numbers-export":
        ck = _copy(fx, "model.pt", d)
        opt = _pick(rng, ["--samples"])
        argv = ["export", str(ck), "--out", str(d / "m.net"), opt, num]
        return Case(fam, argv, [ck], names=[num, opt])
    if fam == "numbers-convert":
        src = _pick(rng, ["model.onnx", "model.nir"])
        model = _copy(fx, src, d)
        calib = _copy(fx, "digits.npz", d)
        opt = _pick(rng, ["--steps", "--percentile", "--weight-bits", "--mean", "--std",
                          "--dt", "--input-scale"])  # fmt: skip
        argv = ["convert", str(model), "--calib", str(calib), "--out", str(d / "m.net"), opt, num]
        return Case(fam, argv, [model, calib], names=[num, opt])
    if fam == "numbers-train":
        opt = _pick(rng, ["--steps", "--epochs", "--seed", "--set train.lr=", "--set train.batch_size=",
                          "--set model.threshold=", "--set data.val_fraction="])  # fmt: skip
        base = ["train", "--set", "model.arch='custom'", "--set", "model.convs=['8']",
                "--set", "model.dense=[]", "--out", str(d / "run"), "--no-progress"]  # fmt: skip
        if opt != "--epochs":
            base += ["--epochs", "1"]
        if opt.startswith("--set"):
            argv = [*base, "--set", opt.split(" ", 1)[1] + num]
        else:
            argv = [*base, opt, num]
        return Case(fam, argv, [], names=[num, opt.split(" ")[-1].rstrip("=")], timeout=120)
    if fam == "numbers-demo":
        opt = _pick(rng, ["--steps", "--epochs", "--seed", "--samples"])
        bad = _pick(rng, ["nan", "inf", "-1", "0", str(2**63), "abc", "1e999", ""])
        if opt == "--seed" and bad == "0":
            bad = "-1"
        argv = ["demo", "--out", str(d / "demo"), "--no-progress", opt, bad]
        return Case(fam, argv, [], names=[bad, opt], subprocess=True, timeout=60)
    if fam == "shapes":
        net = _copy(fx, "small.net", d)
        shape = _pick(rng, ["0,8,8", "2,8,8", "1", "100000,100000,100000", "2,8", "-1,8,8",
                            "nan", "2,8,8,8", "", ",", str(2**63) + ",1,1"])  # fmt: skip
        cmd = _pick(rng, ["inspect", "run"])
        argv = [cmd, str(net), "--input-shape", shape]
        if cmd == "run":
            x = _copy(fx, "spikes.npy", d)
            argv += ["--backend", "emulator", "--input", str(x), "--out", str(out)]
        return Case(fam, argv, [net], names=[shape, "--input-shape", net.name])
    if fam in ("net-inspect", "net-run", "net-eval"):
        src = _pick(rng, ["small.net", "geometry.net", "model.net"])
        net = d / "m.net"
        how = mutate_h5(fx[src], net, rng)
        if fam == "net-inspect":
            argv = ["inspect", str(net)]
            inputs = [net]
        elif fam == "net-run":
            shape = {"small.net": (2, 8, 8), "geometry.net": (4, 9, 7), "model.net": (1, 8, 8)}
            x = d / "x.npy"
            np.save(x, (rng.random((1, 3, *shape[src])) < 0.3).astype(np.uint8))
            argv = ["run", str(net), "--backend", "emulator", "--input", str(x), "--out", str(out)]
            inputs = [net, x]
        else:
            data = _copy(fx, "digits.npz", d)
            argv = ["eval", str(net), "--data", str(data), "--samples", "8", "--steps", "2",
                    "--no-progress"]  # fmt: skip
            inputs = [net, data]
        return Case(f"{fam}", argv, inputs, names=[net.name, how, *(p.name for p in inputs)])
    if fam in ("npz-eval", "npz-export", "npz-convert"):
        data = d / "d.npz"
        how = mutate_npz(fx["digits.npz"], data, rng)
        if fam == "npz-eval":
            model = _copy(fx, _pick(rng, ["model.net", "model.pt"]), d)
            argv = ["eval", str(model), "--data", str(data), "--samples", "8", "--no-progress"]
        elif fam == "npz-export":
            model = _copy(fx, "model.pt", d)
            argv = ["export", str(model), "--out", str(d / "m2.net"), "--data", str(data)]
        else:
            model = _copy(fx, _pick(rng, ["model.onnx", "model.nir"]), d)
            argv = ["convert", str(model), "--calib", str(data), "--out", str(d / "m2.net")]
        return Case(fam, argv, [model, data], names=[data.name, how])
    if fam == "npy-run":
        src = _pick(rng, ["spikes.npy", "images.npy"])
        x = d / "x.npy"
        how = mutate_npy(fx[src], x, rng)
        net = _copy(fx, "small.net", d)
        argv = ["run", str(net), "--backend", "emulator", "--input", str(x), "--out", str(out)]
        if src == "images.npy":
            argv += ["--steps", "2"]
            if rng.random() < 0.5:
                lab = d / "l.npy"
                mutate_npy(fx["labels.npy"], lab, rng)
                argv += ["--labels", str(lab)]
        return Case(fam, argv, [net, x], names=[x.name, "l.npy", how])
    if fam == "onnx-convert":
        model = d / "m.onnx"
        how = mutate_onnx(fx["model.onnx"], model, rng)
        calib = _copy(fx, "digits.npz", d)
        argv = ["convert", str(model), "--calib", str(calib), "--out", str(d / "m.net")]
        return Case(fam, argv, [model, calib], names=[model.name, how])
    if fam == "nir-convert":
        model = d / "m.nir"
        how = mutate_h5(fx["model.nir"], model, rng)
        calib = _copy(fx, "digits.npz", d)
        argv = ["convert", str(model), "--out", str(d / "m.net"), "--calib", str(calib)]
        return Case(fam, argv, [model, calib], names=[model.name, how])
    if fam in ("ckpt-export", "ckpt-eval"):
        ck = d / "m.pt"
        how = mutate_checkpoint(fx["model.pt"], ck, rng)
        if fam == "ckpt-export":
            argv = ["export", str(ck), "--out", str(d / "m.net"), "--samples", "8"]
        else:
            data = _copy(fx, "digits.npz", d)
            argv = ["eval", str(ck), "--data", str(data), "--samples", "8", "--no-progress"]
        return Case(fam, argv, [ck], names=[ck.name, how])
    if fam == "outputs":
        net = _copy(fx, "small.net", d)
        x = _copy(fx, "spikes.npy", d)
        kind = _pick(rng, ["exists", "folder", "input", "missing-dir", "fifo", "link-to-input",
                           "dot", "exists-force", "net-out-exists", "json-folder"])  # fmt: skip
        target = d / "o.npy"
        extra: list[str] = []
        if kind == "exists":
            target.write_bytes(b"keep")
        elif kind == "exists-force":
            target.write_bytes(b"replace")
            extra = ["--force"]
        elif kind == "folder":
            target.mkdir()
        elif kind == "input":
            target = x
        elif kind == "missing-dir":
            target = d / "no" / "such" / "o.npy"
        elif kind == "fifo":
            target = d / "fifo.npy"
            os.mkfifo(target)
            return Case(fam, ["inspect", str(net)], [net], names=[kind])  # never opened
        elif kind == "link-to-input":
            target = d / "ln.npy"
            target.symlink_to(x)
        elif kind == "dot":
            target = d
        elif kind == "net-out-exists":
            ck = _copy(fx, "model.pt", d)
            (d / "m.net").write_bytes(b"keep")
            argv = ["export", str(ck), "--out", str(d / "m.net"), "--no-accuracy"]
            return Case(fam, argv, [ck, d / "m.net"], names=["m.net"])
        elif kind == "json-folder":
            data = _copy(fx, "digits.npz", d)
            (d / "j").mkdir()
            argv = ["eval", str(net), "--data", str(data), "--json", str(d / "j"),
                    "--samples", "4", "--steps", "2", "--no-progress", "--input-shape", "2,8,8"]  # fmt: skip
            return Case(fam, argv, [net, data], names=["j"])
        argv = ["run", str(net), "--backend", "emulator", "--input", str(x), "--out", str(target),
                *extra]  # fmt: skip
        inputs = [net, x] + ([target] if kind == "exists" else [])
        return Case(fam, argv, inputs, names=[target.name, str(target), kind])
    if fam == "config-train":
        cfg = d / "c.toml"
        text = _pick(
            rng,
            ["[train]\nlr = nan\n", "[train]\nepochs = -1\n", "[model]\narch = 3\n",
             "[train\n", "\xff\xfe", "[train]\nseed = 9223372036854775808\n",
             "[data]\nval_fraction = 1.5\n", "[model]\nconvs = ['0']\n",
             "[model]\nconvs = ['8x0']\n", "[bogus]\nx = 1\n", "[train]\nlr = inf\n",
             "[train]\nbatch_size = 0\n", "[model]\nthreshold = -1\n"],
        )  # fmt: skip
        cfg.write_bytes(text.encode("latin-1"))
        argv = ["train", "-c", str(cfg), "--epochs", "1", "--out", str(d / "run"), "--no-progress"]
        keys = [ln.split("=")[0].strip() for ln in text.splitlines() if "=" in ln]
        section = text.split("]")[0].lstrip("[") if "]" in text else ""
        keys = [f"{section}.{k}" for k in keys] + ["section"]
        return Case(fam, argv, [cfg], names=[cfg.name, *keys], timeout=120)
    if fam == "lava":
        net = _copy(fx, "small.net", d)
        x = _copy(fx, "spikes.npy", d)
        argv = ["run", str(net), "--backend", "lava", "--input", str(x), "--out", str(out),
                "--timeout", _pick(rng, ["600", "nan", "0", "-1", "inf"])]  # fmt: skip
        return Case(fam, argv, [net, x], names=["--timeout", "timeout"], timeout=600)
    raise ValueError(fam)


# ------------------------------------------------------------------------------------- running
def _digest(p: Path) -> str | None:
    if p.is_symlink() or not p.is_file():
        return None
    return hashlib.sha256(p.read_bytes()).hexdigest()


def _temporaries(folder: Path) -> list[str]:
    if not folder.exists():
        return []
    return sorted(
        str(p.relative_to(folder))
        for p in folder.rglob("*")
        if any(m in p.name for m in TEMP_MARKS)
    )


def _run_subprocess(case: Case) -> tuple[int | None, str, str]:
    try:
        res = subprocess.run(
            [sys.executable, "-m", "snn2loihi", *case.argv],
            capture_output=True,
            text=True,
            timeout=case.timeout,
            start_new_session=True,
        )
    except subprocess.TimeoutExpired as exc:
        return None, exc.stdout or "", exc.stderr or ""
    return res.returncode, res.stdout, res.stderr


class _CaseTimeout(Exception):
    pass


def _alarm(signum, frame):
    raise _CaseTimeout


def run_case(case: Case) -> dict:
    """Run ``case``; return its record with ``problems`` (empty when every invariant held)."""
    tmp = Path(tempfile.gettempdir())
    temps_before = set(tmp.glob("snn2loihi-*"))
    before = {p: _digest(p) for p in case.inputs}
    folder_temps = set(_temporaries(case.folder)) if case.folder else set()
    t0 = time.monotonic()
    problems = []
    crash = None
    if case.subprocess:
        code, out, err = _run_subprocess(case)
        if code is None:  # accepted (e.g. --epochs 2^63): killed at the case's limit
            code = -1
    else:
        uses_alarm = "--timeout" in case.argv
        old = None if uses_alarm else signal.signal(signal.SIGALRM, _alarm)
        if not uses_alarm:
            signal.alarm(int(case.timeout))
        try:
            code, _, err = _quiet_main(case.argv)
        except _CaseTimeout:  # accepted (e.g. --epochs 2^63-1): stopped at the case's limit
            code, err = -1, ""
        except BaseException as exc:  # noqa: BLE001 - the finding
            if isinstance(exc, KeyboardInterrupt):
                raise
            code, err = 1, ""
            crash = "".join(traceback.format_exception(exc))[-3000:]
            problems.append(f"uncaught {type(exc).__name__}: {exc}"[:500])
        finally:
            if not uses_alarm:
                signal.alarm(0)
                signal.signal(signal.SIGALRM, old)
    if code == -1 and case.subprocess:  # killed: its Lava child removes its folder once it
        for _ in range(60):  # sees the parent gone (it polls); give it that time
            if not set(tmp.glob("snn2loihi-*")) - temps_before:
                break
            time.sleep(0.5)
    seconds = time.monotonic() - t0
    if code not in (0, 2, -1) and not (code == 1 and case.exit1_ok and not crash):
        if not crash:
            problems.append(f"exit {code}")
    if "Traceback" in err:
        problems.append("traceback on stderr")
    lines = err.strip().splitlines()
    if code == 2:
        if len(lines) != 1:
            problems.append(f"{len(lines)} stderr lines on refusal")
        text = err.lower()
        words = [w for w in case.names if w and w.strip()]
        if words and not any(w.lower().strip() in text for w in words):
            problems.append("refusal names none of " + ", ".join(map(repr, words)))
    changed = [str(p.name) for p, h in before.items() if _digest(p) != h]
    if changed:
        problems.append(f"inputs changed: {changed}")
    left = sorted(set(_temporaries(case.folder)) - folder_temps) if case.folder else []
    if code == -1:  # killed: a train lock file may stay (flock is gone with the process)
        left = [p for p in left if not p.endswith(".snn2loihi-train.lock")]
    left += [str(p) for p in set(tmp.glob("snn2loihi-*")) - temps_before]
    if left:
        problems.append(f"temporary files left: {left}")
    rec = case.record() | {
        "exit": code,
        "seconds": round(seconds, 2),
        "stderr": lines[-1][:300] if lines else "",
        "problems": problems,
    }
    if crash:
        rec["traceback"] = crash
    return rec


def fuzz(n: int, seed: int, work: Path, *, families: set[str] | None = None) -> list[dict]:
    fx = make_fixtures(work)
    cases = generate_cases(fx, work, n, seed)
    if families is not None:
        cases = [c for c in cases if c.family in families]
    return [run_case(c) for c in cases]


def summarize(records: list[dict]) -> dict:
    fams: dict[str, dict] = {}
    for r in records:
        f = fams.setdefault(r["family"], {"cases": 0, "exit": {}, "found": 0, "seconds": 0.0})
        f["cases"] += 1
        f["exit"][str(r["exit"])] = f["exit"].get(str(r["exit"]), 0) + 1
        f["found"] += bool(r["problems"])
        f["seconds"] = round(f["seconds"] + r["seconds"], 1)
    return dict(sorted(fams.items()))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cases", type=int, default=600)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--results", type=Path, default=ROOT / "bench" / "results" / "fuzz_cli.json")
    p.add_argument("--keep", action="store_true", help="keep the work folder")
    p.add_argument("--all", action="store_true", help="record every case, not only findings")
    args = p.parse_args()
    work = Path(tempfile.mkdtemp(prefix="fuzz-cli-"))
    private = work / "TMPDIR"
    private.mkdir()
    os.environ["TMPDIR"] = tempfile.tempdir = str(private)
    t0 = time.monotonic()
    try:
        records = fuzz(args.cases, args.seed, work)
        leftovers = sorted(p.name for p in private.glob("snn2loihi-*"))
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    found = [r for r in records if r["problems"]]
    out = {
        "command": f"python bench/fuzz_cli.py --cases {args.cases} --seed {args.seed}",
        "machine": machine(),
        "cases": len(records),
        "seconds": round(time.monotonic() - t0, 1),
        "families": summarize(records),
        "found": found,
        "temporary_leftovers": leftovers,
    }
    if args.all:
        out["records"] = records
    write_result(args.results, out)
    print(json.dumps({k: out[k] for k in ("cases", "seconds")} | {"found": len(found)}))
    for r in found:
        print(json.dumps({k: r[k] for k in ("family", "argv", "exit", "problems", "stderr")}))
    return 0 if not found and not leftovers else 1


if __name__ == "__main__":
    sys.exit(main())
