"""SIGKILL during training loses at most the current epoch; --resume continues; no torn files."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from snn2loihi.train.checkpoint import load_checkpoint
from snn2loihi.train.factory import model_from_checkpoint
from snn2loihi.train.run_folder import LOCK_FILE

pytestmark = [pytest.mark.multiprocess, pytest.mark.timeout(600)]

TRAIN = [sys.executable, "-m", "snn2loihi", "train", "--no-progress"]
KILL_AFTER_EPOCH = 1  # SIGKILL once the checkpoint of this epoch is on disk


def _wait_for_checkpoint(proc: subprocess.Popen, path, epoch: int, timeout: float) -> int:
    """Poll (bounded) until ``path`` holds a checkpoint of ``epoch`` or later; return its epoch.
    Checkpoints are renamed into place, so whatever is at ``path`` is complete."""
    deadline = time.monotonic() + timeout
    while True:
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        assert time.monotonic() < deadline, f"no checkpoint of epoch {epoch} within {timeout} s"
        if path.exists():
            saved = load_checkpoint(path)["epoch"]
            if saved >= epoch:
                return saved
        time.sleep(0.05)


def test_sigkill_mid_epoch_then_resume(tmp_path):
    out = tmp_path / "run"
    cmd = [*TRAIN, "--epochs", "40", "--out", str(out), "--set", "train.num_threads=1"]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True
    )
    try:
        # the next epoch is under way (or best.pt is being written) when the kill lands
        seen = _wait_for_checkpoint(proc, out / "last.pt", KILL_AFTER_EPOCH, timeout=240)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    finals = {p.name for p in out.iterdir() if not p.name.startswith(".")}
    assert {"last.pt", "best.pt", "config.toml"} <= finals
    torn = {p.name for p in out.iterdir() if p.name.startswith(".")} - {LOCK_FILE}
    assert all(name.endswith(".tmp") for name in torn), f"unexpected hidden files {torn}"
    saved = load_checkpoint(out / "last.pt")["epoch"]
    assert KILL_AFTER_EPOCH <= seen <= saved < 39, "the kill must land mid-run"
    for name in ("last.pt", "best.pt"):
        state = load_checkpoint(out / name)  # complete and loadable with weights_only=True
        model_from_checkpoint(state)  # and the weights fit the model the config describes
        assert state["epoch"] <= saved
        assert [h["epoch"] for h in state["metrics"]["history"]] == list(range(state["epoch"] + 1))
    resumed = subprocess.run(
        [*TRAIN, "--resume", str(out), "--epochs", str(saved + 3)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    summary = json.loads(resumed.stdout.strip().splitlines()[-1])
    assert summary["epoch"] == saved + 2
    state = load_checkpoint(out / "last.pt")
    assert state["epoch"] == saved + 2
    assert [h["epoch"] for h in state["metrics"]["history"]] == list(range(saved + 3))
    assert summary["snn_acc"] == state["metrics"]["snn_acc"]
    hidden = {p.name for p in out.iterdir() if p.name.startswith(".")}
    assert hidden <= torn, "the resumed run leaves no temporary file of its own"
