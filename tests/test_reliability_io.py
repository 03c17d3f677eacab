"""Hostile inputs and outputs through the CLI: forged array headers, oversized .net strings,
outputs that name an input, file modes. Each case: exit 2, one stderr line, inputs untouched."""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest
from cli_helpers import refused, run_cli, snapshot
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_export_helpers import random_checkpoint

from snn2loihi.arrays import load_npy, load_npz
from snn2loihi.atomic import atomic_path
from snn2loihi.deploy.parity import LayerParity, merge_layer
from snn2loihi.errors import InputDataError
from snn2loihi.testing.netgen import SMALL, random_network

HUGE = (10**6, 10**6)  # 931 GiB of uint8


def forged_npy(shape=HUGE, dtype="|u1", payload: bytes = b"\0" * 64) -> bytes:
    """An .npy whose header claims ``shape`` but which holds only ``payload``."""
    buf = io.BytesIO()
    header = {"descr": dtype, "fortran_order": False, "shape": shape}
    np.lib.format.write_array_header_1_0(buf, header)
    return buf.getvalue() + payload


def forged_npz(path: Path, **members: bytes) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(f"{name}.npy", data)
    return path


@pytest.mark.multiprocess
def test_run_refuses_a_forged_npy_header_before_allocating(write_net, tmp_path):
    net = write_net(random_network(SMALL, seed=0))
    (tmp_path / "x.npy").write_bytes(forged_npy((10**5, 1000, 2, 8, 8)))
    before = snapshot(tmp_path)
    res = run_cli("run", net, "--input", tmp_path / "x.npy", "--out", tmp_path / "o.npy")
    refused(res, "x.npy", "header claims (100000, 1000, 2, 8, 8)", "only 64 bytes")
    assert snapshot(tmp_path) == before


@pytest.mark.multiprocess
def test_convert_and_export_refuse_forged_npz_members(tmp_path):
    calib = forged_npz(tmp_path / "c.npz", x=forged_npy(), y=forged_npy((10**6,), "<i8"))
    res = run_cli("convert", tmp_path / "none.onnx", "--calib", calib, "--out", tmp_path / "m.net")
    assert res.returncode == 2  # the missing ONNX or the npz, either way one line
    assert len(res.stderr.strip().splitlines()) == 1
    ckpt, _, _ = random_checkpoint(tmp_path, "dense-only")
    before = snapshot(tmp_path)
    res = run_cli("export", ckpt, "--out", tmp_path / "m.net", "--data", calib)
    refused(res, "c.npz[x]", "header claims (1000000, 1000000)")
    assert snapshot(tmp_path) == before


def test_an_array_beyond_the_memory_budget_is_refused(tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((4, 2, 2, 8, 8), np.uint8))
    os.environ["SNN2LOIHI_MEMORY_BUDGET"] = "100"
    try:
        with pytest.raises(InputDataError, match="needs 1,024 bytes, more than the memory budget"):
            load_npy(tmp_path / "x.npy")
    finally:
        del os.environ["SNN2LOIHI_MEMORY_BUDGET"]


def test_pickled_and_missing_arrays_are_named(tmp_path):
    np.save(tmp_path / "o.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(InputDataError, match="holds Python objects"):
        load_npy(tmp_path / "o.npy")
    np.savez(tmp_path / "d.npz", x=np.zeros(3))
    with pytest.raises(InputDataError, match=r"no array 'y' \(it holds x\)"):
        load_npz(tmp_path / "d.npz", ("x", "y"))


DTYPES = st.sampled_from(["|u1", "<i8", "<f4", "|b1", "|O", "<U5", "|V3", ">i2"])
SHAPES = st.lists(st.integers(0, 10**7), max_size=5).map(tuple)


@settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(dtype=DTYPES, shape=SHAPES, payload=st.binary(max_size=256), cut=st.integers(0, 300))
def test_fuzzed_npy_and_npz_load_or_fail_with_our_error(tmp_path, dtype, shape, payload, cut):
    data = forged_npy(shape, dtype, payload)[: cut + 10 if cut < 300 else None]
    (tmp_path / "f.npy").write_bytes(data)
    forged_npz(tmp_path / "f.npz", x=data)
    for load in (
        lambda: load_npy(tmp_path / "f.npy"),
        lambda: load_npz(tmp_path / "f.npz", ("x",)),
    ):
        try:
            load()
        except InputDataError:
            pass


def _net_with_string(tmp_path, field: str, make) -> Path:
    path = tmp_path / "s.net"
    from snn2loihi.netx_io import write_network

    write_network(random_network(SMALL, seed=0), path)
    with h5py.File(path, "a") as f:
        del f[field]
        make(f, field)
    return path


def _huge_string(f, key):  # 100 GB of one-byte strings, in a file of a few kB
    f.create_dataset(key, shape=(10**11,), dtype="S1", chunks=(4096,))


@pytest.mark.parametrize("field", ["layer/1/type", "layer/1/neuron/type"])
@pytest.mark.parametrize(
    ("make", "words"),
    [
        # a subprocess: a reader that forgot the limit would take the test runner down with it
        pytest.param(
            _huge_string, "expected one string", marks=pytest.mark.multiprocess, id="huge"
        ),
        pytest.param(
            lambda f, k: f.create_dataset(k, shape=(), dtype=np.dtype("S1000000")),
            "longer than the limit",
            id="long",
        ),
        pytest.param(
            lambda f, k: f.create_dataset(k, data=np.array([b"conv", b"dense"])),
            "expected one string",
            id="two",
        ),
    ],
)
def test_inspect_refuses_oversized_string_fields_before_reading(
    tmp_path, field, make, words, cli_refusal
):
    path = _net_with_string(tmp_path, field, make)
    assert path.stat().st_size < 2**20
    before = path.read_bytes()
    expected = ("s.net", field.split("/")[-1] if "neuron" not in field else "neuron/type", words)
    if make is _huge_string:
        refused(run_cli("inspect", path), *expected)
    else:
        cli_refusal(["inspect", path], *expected)
    assert path.read_bytes() == before


@pytest.mark.parametrize("case", ["out_is_checkpoint", "out_is_onnx", "report_exists"])
def test_export_never_overwrites_its_inputs_or_reports(tmp_path, case, cli_refusal):
    ckpt, _, _ = random_checkpoint(tmp_path, "dense-only")
    if case == "out_is_checkpoint":
        args, words = ["--out", ckpt, "--force"], ("--out", "is the input checkpoint")
    elif case == "out_is_onnx":
        args, words = (
            ["--out", tmp_path / "same", "--onnx", tmp_path / "same"],
            ("--onnx", "is also --out"),
        )
    else:
        (tmp_path / "m.report.md").write_text("mine")
        args, words = ["--out", tmp_path / "m.net"], ("m.report.md exists (use --force",)
    before = snapshot(tmp_path)
    cli_refusal(["export", ckpt, *args], *words)
    assert snapshot(tmp_path) == before


def test_atomic_outputs_honour_the_umask(tmp_path):
    old = os.umask(0o027)
    try:
        with atomic_path(tmp_path / "a.bin") as tmp:
            tmp.write_bytes(b"x")
    finally:
        os.umask(old)
    assert (tmp_path / "a.bin").stat().st_mode & 0o777 == 0o640
    with atomic_path(tmp_path / "b.bin") as tmp:
        tmp.write_bytes(b"x")
    assert (tmp_path / "b.bin").stat().st_mode & 0o777 == 0o666 & ~old


HUGE_PARITY = ["--samples", "1000000000", "--steps", "1000"]


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--seed", "-1"], ("--seed -1 must be >= 0",)),
        (["--device", "banana"], ("--device banana", "not a device")),
        # a subprocess: a check that came too late would allocate terabytes in the test runner
        pytest.param(HUGE_PARITY, ("more than the memory budget",), marks=pytest.mark.multiprocess),
        (["--steps", "1e9"], ("--steps", "1e9")),
    ],
)
def test_parity_options_are_checked_before_work(write_net, args, words, cli_refusal):
    net = write_net(random_network(SMALL, seed=0))
    if args == HUGE_PARITY:
        refused(run_cli("parity", net, *args), *words)
    else:
        cli_refusal(["parity", net, *args], *words)


def test_cuda_without_a_gpu_is_one_line(write_net, tmp_path, cli_refusal):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    net = write_net(random_network(SMALL, seed=0))
    np.save(tmp_path / "x.npy", np.zeros((1, 2, 2, 8, 8), np.uint8))
    argv = ["run", net, "--input", tmp_path / "x.npy", "--device", "cuda"]
    cli_refusal([*argv, "--out", tmp_path / "o.npy"], "--device cuda", "no CUDA GPU")


def test_merged_chunks_keep_the_first_mismatch_of_the_whole_run():
    a = LayerParity(1, "conv", [4], 10, 10, 0, None)
    b = LayerParity(1, "conv", [4], 7, 8, 1, [1, 2, [3]])
    c = LayerParity(1, "conv", [4], 5, 6, 2, [0, 0, [0]])
    merged = merge_layer(merge_layer(merge_layer(None, a, 0), b, 4), c, 8)
    assert (merged.lava_spikes, merged.emulator_spikes, merged.mismatches) == (22, 24, 3)
    assert merged.first_mismatch == [5, 2, [3]]
