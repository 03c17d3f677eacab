"""Signals during a Lava run, through the CLI as a user sends them: the command exits with the
signal's code and one line, and no Lava process or temporary folder outlives it."""

from __future__ import annotations

import glob
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
from process_helpers import as_a_shell_starts_it, lava_processes, reap, wait_for

from snn2loihi.testing.netgen import CIFAR, random_network

pytestmark = [pytest.mark.lava, pytest.mark.multiprocess]


def _lava_folders() -> set[str]:
    return set(glob.glob(os.path.join(tempfile.gettempdir(), "snn2loihi-lava-*")))


def _start_lava_run(tmp_path, write_net) -> tuple[subprocess.Popen, set[str], Path]:
    """`snn2loihi run --backend lava` on a long input; returns once the Lava child is running."""
    net = write_net(random_network(CIFAR, seed=0))
    x = tmp_path / "x.npy"
    np.save(x, (np.random.default_rng(0).random((4, 60, 3, 32, 32)) < 0.3).astype(np.uint8))
    folders = _lava_folders()
    cmd = [sys.executable, "-m", "snn2loihi", "run", str(net), "--backend", "lava"]
    proc = subprocess.Popen(
        [*cmd, "--input", str(x), "--out", str(tmp_path / "out.npy")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        preexec_fn=as_a_shell_starts_it,
    )
    wait_for(lambda: lava_processes(proc.pid), 120, "the Lava child never started")
    time.sleep(1.0)  # let Lava fork its workers
    return proc, folders, x


@pytest.mark.parametrize(
    ("sig", "code", "word"),
    [
        (signal.SIGINT, 130, b"interrupted"),
        (signal.SIGTERM, 143, b"SIGTERM"),
        (signal.SIGHUP, 129, b"SIGHUP"),
    ],
)
def test_a_signal_ends_the_run_and_everything_it_started(tmp_path, write_net, sig, code, word):
    proc, folders, x = _start_lava_run(tmp_path, write_net)
    x_bytes = x.read_bytes()
    proc.send_signal(sig)
    try:
        _, err = proc.communicate(timeout=60)
    finally:
        reap(proc)
    lines = err.decode().strip().splitlines()
    assert proc.returncode == code, err.decode()[-2000:]
    assert len(lines) == 1 and word.decode() in lines[0], lines
    wait_for(lambda: not lava_processes(proc.pid), 10, "Lava processes survived")
    assert _lava_folders() - folders == set()
    assert not (tmp_path / "out.npy").exists() and x.read_bytes() == x_bytes


def test_sigkill_of_the_command_takes_its_lava_run_down(tmp_path, write_net):
    """SIGKILL cannot be handled: the Lava child notices that its parent is gone and ends its
    whole process group and removes its run folder."""
    proc, folders, _ = _start_lava_run(tmp_path, write_net)
    ours = _lava_folders() - folders
    assert len(ours) == 1
    proc.kill()
    proc.wait(timeout=30)
    wait_for(lambda: not lava_processes(proc.pid), 20, "Lava processes outlived SIGKILL")
    (folder,) = ours

    def gone() -> bool:  # also under the name the child moves it to before removing it
        return not any(f.startswith(folder) for f in _lava_folders())

    wait_for(gone, 10, "the run folder outlived SIGKILL")
    time.sleep(1.0)  # nothing reappears once the group is gone
    assert gone()


def _our_temporaries() -> set[str]:
    return set(glob.glob(os.path.join(tempfile.gettempdir(), "snn2loihi-*")))


def test_sigkill_of_eval_on_lava_leaves_no_temporary_files(tmp_path):
    """`eval CHECKPOINT --backend lava` exports in memory: the .net goes into each Lava run's
    own folder (which the Lava child removes when its parent is gone), never into a folder of
    the command's own that a SIGKILL would leave behind (issue #30, item 6)."""
    from test_export_helpers import random_checkpoint

    ckpt, _, _ = random_checkpoint(tmp_path, "dense-only")
    before = _our_temporaries()
    cmd = [sys.executable, "-m", "snn2loihi", "eval", str(ckpt), "--backend", "lava"]
    proc = subprocess.Popen([*cmd, "--no-progress"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_for(lambda: lava_processes(proc.pid), 120, "the Lava child never started")
        assert any("snn2loihi-lava-" in p for p in _our_temporaries() - before)
        proc.kill()
        proc.wait(timeout=30)
        wait_for(lambda: not lava_processes(proc.pid), 20, "Lava processes outlived SIGKILL")
        wait_for(lambda: not _our_temporaries() - before, 10, "temporary files outlived SIGKILL")
    finally:
        reap(proc)
    assert ckpt.is_file()
