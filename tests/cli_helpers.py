"""The CLI as a user runs it: a subprocess, its exit code and its stderr line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def run_cli(*args, timeout: float = 600, env: dict | None = None) -> subprocess.CompletedProcess:
    """``python -m snn2loihi ARGS`` (paths and numbers are turned into text)."""
    return subprocess.run(
        [sys.executable, "-m", "snn2loihi", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=None if env is None else {**os.environ, **env},
    )


def refused(res: subprocess.CompletedProcess, *words: str) -> str:
    """Assert exit 2 with exactly one stderr line holding every one of ``words``; return it."""
    lines = res.stderr.strip().splitlines()
    assert res.returncode == 2 and len(lines) == 1, res.stderr[-3000:]
    assert "Traceback" not in res.stderr
    assert all(w in lines[0] for w in words), lines[0]
    return lines[0]


def snapshot(folder: Path) -> dict:
    """Every regular file under ``folder`` with its bytes (links are not followed)."""
    return {p: p.read_bytes() for p in folder.rglob("*") if p.is_file() and not p.is_symlink()}
