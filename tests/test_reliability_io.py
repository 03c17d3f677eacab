"""Hostile inputs and outputs through the CLI: forged array headers, oversized .net strings,
outputs that name an input, file modes. Each case: exit 2, one stderr line, inputs untouched."""

from __future__ import annotations

import io
import os
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
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


# Round three (issue #30): special files, inputs named through run folders, explicit data.


@pytest.fixture
def images(tmp_path):
    """Four 2x8x8 images (SMALL's input) as run's .npy and as eval's .npz (x NHWC, y)."""
    x = np.random.default_rng(3).integers(0, 256, size=(4, 2, 8, 8), dtype=np.uint8)
    np.save(tmp_path / "x.npy", x)
    np.savez(tmp_path / "d.npz", x=x.transpose(0, 2, 3, 1), y=np.arange(4))
    return tmp_path / "x.npy", tmp_path / "d.npz"


def _read_fifo(path: Path) -> tuple[threading.Thread, list[bytes]]:
    got: list[bytes] = []

    def read():
        with open(path, "rb") as fh:
            got.append(fh.read())

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    return reader, got


@pytest.fixture
def null_device(tmp_path) -> Path:
    """A character device that discards what is written: a copy of /dev/null (1, 3) made in
    tmp_path (needs root, as CI runs). A regression then replaces the copy, never the machine's
    /dev/null, which no test points a command at."""
    path = tmp_path / "null"
    try:
        os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    except PermissionError:
        pytest.skip("creating a device node needs root")
    return path


@pytest.mark.multiprocess
def test_a_device_output_stays_a_device_after_run(write_net, images, null_device):
    net = write_net(random_network(SMALL, seed=0))
    args = ["--input", images[0], "--steps", 2, "--out", null_device, "--force"]
    res = run_cli("run", net, *args)
    assert res.returncode == 0, res.stderr
    assert stat.S_ISCHR(os.stat(null_device).st_mode)
    assert [p.name for p in null_device.parent.glob(".null.*")] == []


@pytest.mark.multiprocess
def test_standard_output_redirected_into_a_file_is_appended_to(write_net, images, tmp_path):
    """`--out /proc/self/fd/1` (what /dev/stdout links to) with stdout going into a file: the
    array is appended to that file; nothing is renamed in /proc or /dev (/proc refuses it, so a
    regression fails here without touching the machine's /dev/stdout)."""
    net = write_net(random_network(SMALL, seed=0))
    log = tmp_path / "log"
    log.write_bytes(b"kept\n")
    cmd = [sys.executable, "-m", "snn2loihi", "run", str(net), "--input", str(images[0])]
    with open(log, "ab") as out:
        res = subprocess.run(
            [*cmd, "--steps", "2", "--out", "/proc/self/fd/1"], stdout=out, stderr=subprocess.PIPE
        )
    assert res.returncode == 0, res.stderr.decode()[-2000:]
    data = log.read_bytes()
    assert data.startswith(b"kept\n")
    assert np.load(io.BytesIO(data[5:])).shape == (4, 2, 10)


@pytest.mark.parametrize("force", [[], ["--force"]], ids=["plain", "force"])
def test_run_writes_into_a_fifo_without_replacing_it(write_net, images, tmp_path, force):
    from snn2loihi.app.cli import main

    net = write_net(random_network(SMALL, seed=0))
    fifo = tmp_path / "out.fifo"
    os.mkfifo(fifo)
    reader, got = _read_fifo(fifo)
    assert main(["run", str(net), "--input", str(images[0]), "--steps", "2", "--out", str(fifo),
                 *force]) == 0  # fmt: skip
    reader.join(30)
    assert np.load(io.BytesIO(got[0])).shape == (4, 2, 10)
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)


def test_eval_json_writes_into_a_device_without_force(write_net, images, null_device, capsys):
    from snn2loihi.app.cli import main

    net = write_net(random_network(SMALL, seed=0))
    argv = ["eval", str(net), "--data", str(images[1]), "--steps", "2", "--json", str(null_device)]
    assert main(argv) == 0, capsys.readouterr().err
    assert stat.S_ISCHR(os.stat(null_device).st_mode)


def test_a_socket_output_is_refused(write_net, images, tmp_path, cli_refusal):
    net = write_net(random_network(SMALL, seed=0))
    sock = socket.socket(socket.AF_UNIX)
    path = tmp_path / "s.sock"
    sock.bind(str(path))
    try:
        err = cli_refusal(["run", net, "--input", images[0], "--steps", 2, "--out", path])
    finally:
        sock.close()
    assert "s.sock is a socket" in err and stat.S_ISSOCK(os.stat(path).st_mode)


def _run_folder(tmp_path, name: str) -> Path:
    """A run folder holding a checkpoint as last.pt (and its config.toml)."""
    ckpt, _, _ = random_checkpoint(tmp_path / name, "dense-only")
    ckpt.rename(ckpt.parent / "last.pt")
    return ckpt.parent


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["export", "RUN", "--out", "RUN/last.pt", "--force"], ("--out", "(run folder")),
        (["export", "RUN/", "--onnx", "RUN/last.pt", "--force"], ("--onnx", "(run folder")),
        (["export", "RUN/../r/", "--nir", "LINK", "--force"], ("--nir", "(run folder")),
        (["export", "RUN/last.pt", "--out", "HARD", "--force"], ("--out", "hard.pt")),
        (["eval", "RUN", "--json", "RUN/last.pt"], ("--json", "(run folder")),
        (["eval", "RUN", "--plot", "LINK"], ("--plot", "(run folder")),
    ],
)
def test_the_file_a_run_folder_names_is_an_input(tmp_path, cli_refusal, argv, words):
    run = _run_folder(tmp_path, "r")
    (tmp_path / "link.pt").symlink_to(run / "last.pt")
    os.link(run / "last.pt", tmp_path / "hard.pt")
    fill = {"LINK": str(tmp_path / "link.pt"), "HARD": str(tmp_path / "hard.pt")}
    before = snapshot(tmp_path)
    err = cli_refusal([fill.get(a, a.replace("RUN", str(run))) for a in argv])
    assert all(w in err for w in words) and "is the input" in err and "last.pt" in err, err
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize(
    ("data", "extra", "words"),
    [
        ("x.npy", [], ("x.npy", "a .net does not name a data set")),
        ("folder", [], ("folder", "a .net does not name a data set")),
        ("NET", [], (".net", "cannot be read")),
        ("d.npz", ["--dataset", "mnist"], ("d.npz", "not a folder")),
        ("missing.npz", [], ("missing.npz", "no such .npz file")),
    ],
)
def test_eval_never_replaces_explicit_data_by_a_default(
    write_net, images, tmp_path, cli_refusal, data, extra, words
):
    net = write_net(random_network(SMALL, seed=0))
    (tmp_path / "folder").mkdir()
    path = str(net) if data == "NET" else str(tmp_path / data)
    err = cli_refusal(["eval", net, "--steps", 4, "--data", path, *extra])
    assert all(w in err for w in words), err


def test_eval_of_a_digits_checkpoint_refuses_a_data_folder(tmp_path, cli_refusal):
    ckpt, _, _ = random_checkpoint(tmp_path, "dense-only")
    (tmp_path / "folder").mkdir()
    err = cli_refusal(["eval", ckpt, "--data", tmp_path / "folder"])
    assert "folder" in err and "digits reads no --data" in err, err


def test_parity_timeout_bounds_the_whole_command(write_net, cli_refusal):
    """--timeout covers drawing the input and the emulator, not only Lava (which this test,
    unmarked `lava`, would fail on reaching)."""
    net = write_net(random_network(SMALL, seed=0))
    t0 = time.monotonic()
    err = cli_refusal(["parity", net, "--samples", 300000, "--steps", 16, "--timeout", 0.5])
    assert "exceeded the --timeout of 0.5 s and was stopped" in err and net.name in err, err
    assert time.monotonic() - t0 < 15
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)


def test_a_large_float_field_is_checked_in_blocks(tmp_path):
    """A gzip-compressed float64 weight of 2**23 values (a few KB on disk): read and checked a
    block at a time, so the peak is the int64 result plus one block, not several full-size
    temporaries; the fraction in its last block is still found and named."""
    import tracemalloc

    from snn2loihi.errors import NetXFormatError
    from snn2loihi.netx_io import read_network, write_network

    path = write_network(random_network(SMALL, seed=0), tmp_path / "w.net")
    with h5py.File(path, "a") as f:  # a conv weight: its size is not bounded from the header
        del f["layer/1/weight"]
        ds = f.create_dataset("layer/1/weight", (2**13, 2**10), "f8", compression="gzip")
        ds[-1, -1] = 0.5
    assert path.stat().st_size < 2**20
    tracemalloc.start()
    try:
        with pytest.raises(NetXFormatError, match="'weight' holds the non-integer value 0.5"):
            read_network(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1.5 * 2**26, f"peak {peak / 2**20:.0f} MiB for a 64 MiB result"


def test_an_integer_field_is_widened_in_blocks(tmp_path):
    """An int32 field of 2**23 values becomes its int64 result a block at a time: no full-size
    int32 copy on top of the result (the peak was 1.5x the result)."""
    import tracemalloc

    from snn2loihi.netx_io import _LayerReader

    with h5py.File(tmp_path / "f.h5", "w") as f:
        f.create_dataset("w", (2**13, 2**10), "i4", compression="gzip", fillvalue=-7)
        tracemalloc.start()
        try:
            out = _LayerReader(f, tmp_path / "f.h5", 0, "dense").array("w")
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert out.dtype == np.int64 and out.shape == (2**13, 2**10) and (out == -7).all()
    assert peak < 1.2 * 2**26, f"peak {peak / 2**20:.0f} MiB for a 64 MiB result"


def test_an_oversized_dense_weight_is_refused_from_its_header(tmp_path, cli_refusal):
    """inspect of a 28 KB .net whose gzip-compressed int8 dense weight holds 2**24 values for a
    10 x 144 layer: refused before reading (it became a 128 MiB int64 array, read twice)."""
    import tracemalloc

    from snn2loihi.netx_io import write_network

    path = write_network(random_network(SMALL, seed=0), tmp_path / "w.net")
    with h5py.File(path, "a") as f:
        del f["layer/3/weight"]
        f.create_dataset("layer/3/weight", (2**14, 2**10), "i1", compression="gzip", fillvalue=1)
    tracemalloc.start()
    try:
        err = cli_refusal(["inspect", path])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert "layer 3 (dense): field 'weight' has shape (16384, 1024), 16777216 values for 10 " in err
    assert "x 144 inputs of the previous layer (refused before reading)" in err
    assert peak < 2**23, f"peak {peak / 2**20:.0f} MiB"


def test_a_net_field_beyond_the_memory_budget_is_refused_before_reading(tmp_path, monkeypatch):
    from snn2loihi.errors import NetXFormatError
    from snn2loihi.netx_io import read_network, write_network

    path = write_network(random_network(SMALL, seed=0), tmp_path / "w.net")
    monkeypatch.setenv("SNN2LOIHI_MEMORY_BUDGET", "1000")  # layer 1's weight needs 576 bytes
    with pytest.raises(
        NetXFormatError,
        match=r"layer 3 \(dense\): field 'weight' \(10, 144\) needs 11,520 bytes, more than",
    ):
        read_network(path)


@pytest.mark.parametrize(
    "argv",
    [
        ["export", "CKPT", "--out", "DATA", "--force"],
        ["export", "CKPT", "--out", "TMP/m.net", "--onnx", "DATA", "--force"],
        ["eval", "CKPT", "--json", "DATA"],
    ],
)
def test_the_data_files_of_a_checkpoints_config_are_inputs(tmp_path, cli_refusal, argv):
    from test_export_helpers import save_model_checkpoint
    from train_helpers import calibrated_model, small_config

    x = np.random.default_rng(0).integers(0, 256, (40, 8, 8), dtype=np.uint8)
    np.savez(tmp_path / "train.npz", x=x, y=np.arange(40) % 10)
    config = small_config(
        tmp_path, "data.dataset='npz'", f"data.train={str(tmp_path / 'train.npz')!r}"
    )
    ckpt = save_model_checkpoint(tmp_path / "c.pt", calibrated_model(), config, (1, 8, 8))
    fill = {"CKPT": str(ckpt), "DATA": str(tmp_path / "train.npz")}
    before = snapshot(tmp_path)
    err = cli_refusal([fill.get(a, a.replace("TMP", str(tmp_path))) for a in argv])
    assert "train.npz is the input" in err and "data.train" in err, err
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("command", ["export", "eval"])
def test_data_images_of_the_wrong_shape_are_refused_from_their_header(
    write_net, tmp_path, cli_refusal, command
):
    """A 100 KB .npz of 80 MiB of images the network cannot take: export --data and eval
    --data refuse it from the member's header, before decompressing it (issue #30, item 5)."""
    import tracemalloc

    bomb = tmp_path / "bomb.npz"
    np.savez_compressed(bomb, x=np.zeros((20000, 64, 64), np.uint8), y=np.zeros(20000, int))
    assert bomb.stat().st_size < 2**20
    if command == "export":
        ckpt, _, _ = random_checkpoint(tmp_path, "dense-only")
        argv, words = ["export", ckpt, "--out", tmp_path / "m.net", "--data", bomb], "expects"
    else:
        net = write_net(random_network(SMALL, seed=0))
        argv, words = ["eval", net, "--data", bomb, "--steps", 2], "the network takes (2, 8, 8)"
    before = snapshot(tmp_path)
    tracemalloc.start()
    try:
        err = cli_refusal(argv)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert "bomb.npz" in err and "images have shape (1, 64, 64)" in err and words in err, err
    assert peak < 2**24, f"peak {peak / 2**20:.0f} MiB"
    assert snapshot(tmp_path) == before
