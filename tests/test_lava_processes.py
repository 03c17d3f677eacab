"""No Lava process outlives a run: after success, an error, or a timeout."""

from __future__ import annotations

import os

import numpy as np
import pytest
from process_helpers import as_a_shell_starts_it, lava_processes, reap, wait_for

from snn2loihi.deploy.lava_runner import run_lava
from snn2loihi.errors import LavaRunError, LavaUnavailableError
from snn2loihi.testing.netgen import CIFAR, SMALL, random_network

pytestmark = pytest.mark.lava


def test_timeout_stops_every_lava_process(write_net):
    path = write_net(random_network(CIFAR, seed=0))
    x = (np.random.default_rng(0).random((2, 40, 3, 32, 32)) < 0.3).astype(np.uint8)
    with pytest.raises(LavaRunError, match="exceeded the timeout of 3 s"):
        run_lava(path, x, graded=False, timeout=3)
    assert lava_processes(os.getpid()) == set()


def test_missing_loihi_runtime_is_reported_and_cleaned_up(write_net):
    path = write_net(random_network(SMALL, seed=0))
    with pytest.raises(LavaUnavailableError, match="backend 'loihi2' needs Intel's Loihi runtime"):
        run_lava(path, np.zeros((1, 2, 2, 8, 8), dtype=np.uint8), graded=False, backend="loihi2")
    assert lava_processes(os.getpid()) == set()


def test_ctrl_c_during_a_lava_run_leaves_no_process(write_net):
    """SIGINT to `snn2loihi parity` mid-run: exit 130 and every Lava process is gone."""
    import signal
    import subprocess
    import sys
    import time

    path = write_net(random_network(CIFAR, seed=0))
    proc = subprocess.Popen(
        [sys.executable, "-m", "snn2loihi", "parity", str(path), "--samples", "4", "--steps", "60"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        preexec_fn=as_a_shell_starts_it,
    )
    deadline = time.time() + 120
    while not lava_processes(proc.pid):
        assert proc.poll() is None and time.time() < deadline, "the Lava child never started"
        time.sleep(0.2)
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    try:
        _, err = proc.communicate(timeout=60)
    finally:
        reap(proc)
    assert proc.returncode == 130, err.decode()[-1000:]
    assert b"interrupted" in err and b"Traceback" not in err
    wait_for(lambda: not lava_processes(proc.pid), 10, "Lava processes survived")
