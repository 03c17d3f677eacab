"""Finding the processes a command started, so that other runs on the machine do not count."""

from __future__ import annotations

import os
import time
from pathlib import Path


def lava_processes(parent: int) -> set[int]:
    """PIDs of the Lava child started by process ``parent`` and of the workers it forks: their
    command line is ``... snn2loihi.deploy.lava_runner FOLDER PARENT_PID``."""
    pids = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmd = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"snn2loihi.deploy.lava_runner" in cmd and cmd[-2:-1] == [str(parent).encode()]:
                pids.add(int(entry))
    return pids


def wait_for(condition, seconds: float, what: str, poll: float = 0.2) -> None:
    """Poll ``condition()`` until it is true; fail with ``what`` after ``seconds``."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(poll)
