"""Finding the processes a command started, so that other runs on the machine do not count."""

from __future__ import annotations

import os
import signal
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


def as_a_shell_starts_it() -> None:
    """``preexec_fn`` for commands that receive SIGINT in a test: a job started in the
    background by a non-interactive shell inherits SIGINT ignored (and Python then installs no
    KeyboardInterrupt handler), so restore the default that an interactive start has."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def reap(proc) -> None:
    """Kill ``proc`` and the Lava processes it started, if a failed test left them running."""
    lava = lava_processes(proc.pid)
    if proc.poll() is None:
        proc.kill()
        proc.wait()
    for pid in lava:
        try:
            os.killpg(os.getpgid(pid), signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
