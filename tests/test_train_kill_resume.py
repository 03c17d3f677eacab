"""SIGKILL during training loses at most the current epoch; --resume continues; no torn files."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import torch

from snn2loihi.train.checkpoint import load_checkpoint


def test_sigkill_mid_epoch_then_resume(tmp_path):
    out = tmp_path / "run"
    cmd = [
        sys.executable,
        "-m",
        "snn2loihi",
        "train",
        "--epochs",
        "40",
        "--out",
        str(out),
        "--no-progress",
    ]
    cmd += ["--set", "train.num_threads=1"]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True
    )
    try:
        deadline = time.time() + 240
        while not (out / "last.pt").exists():
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            assert time.time() < deadline, "no checkpoint within 240 s"
            time.sleep(0.1)
        time.sleep(0.7)  # well inside a later epoch
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    finals = {p.name for p in out.iterdir() if not p.name.startswith(".")}
    assert "last.pt" in finals and "config.toml" in finals
    for name in finals:
        if name.endswith(".pt"):
            state = load_checkpoint(out / name)  # complete and loadable with weights_only=True
            assert isinstance(state["model"], dict)
    for p in out.iterdir():
        if p.name.startswith("."):
            assert p.name.endswith(".tmp"), f"unexpected hidden file {p.name}"
    saved = torch.load(out / "last.pt", weights_only=True)["epoch"]
    assert saved < 39
    resumed = subprocess.run(
        [
            sys.executable,
            "-m",
            "snn2loihi",
            "train",
            "--resume",
            str(out),
            "--epochs",
            str(saved + 3),
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    summary = json.loads(resumed.stdout.strip().splitlines()[-1])
    assert summary["epoch"] == saved + 2
    assert load_checkpoint(out / "last.pt")["epoch"] == saved + 2
