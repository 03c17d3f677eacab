"""The run folder (``output.dir``): one run per folder, one writer at a time.

A folder that already holds a run (its checkpoints, log or test figures) is refused unless the
run is resumed (``--resume``) or replaced (``--force``: its run files are removed first). While
training, an exclusive lock (``fcntl.flock`` on ``.snn2loihi-train.lock``, released by the
kernel even when the process is killed) refuses a second ``train`` into the same folder.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from snn2loihi.errors import OutputPathError
from snn2loihi.outputs import check_outputs

RUN_FILES = ("last.pt", "best.pt", "pretrained.pt", "log.csv", "test.json", "config.toml")
LOCK_FILE = ".snn2loihi-train.lock"


def _same_folder(resume: str | os.PathLike | None, out_dir: Path) -> bool:
    if resume is None:
        return False
    folder = Path(resume) if Path(resume).is_dir() else Path(resume).parent
    return folder.resolve() == out_dir.resolve()


def check_run_folder(out_dir: Path, *, resume=None, force: bool = False) -> None:
    """Refuse, before any work, an ``out_dir`` that is a file, cannot be created, or holds
    another run (unless it is the run being resumed, or ``force``)."""
    if out_dir.exists() and not out_dir.is_dir():
        raise OutputPathError(f"output.dir {out_dir} is a file; give a folder")
    check_outputs({"output.dir": out_dir / LOCK_FILE}, force=True)  # writable, not a folder
    held = [f for f in RUN_FILES if (out_dir / f).exists()]
    if held and not force and not _same_folder(resume, out_dir):
        raise OutputPathError(
            f"output.dir {out_dir} holds another run ({held[0]}); continue it with --resume "
            f"{out_dir}, replace it with --force, or choose another --out"
        )


@contextlib.contextmanager
def hold_run_folder(out_dir: Path, *, resume=None, force: bool = False) -> Iterator[Path]:
    """Create ``out_dir`` and hold its lock for the block; with ``force`` (and no resume from
    this folder) the previous run's files are removed once the lock is held."""
    check_run_folder(out_dir, resume=resume, force=force)
    out_dir.mkdir(parents=True, exist_ok=True)
    lock = out_dir / LOCK_FILE
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
    held = False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            raise OutputPathError(
                f"output.dir {out_dir}: another snn2loihi train (pid {holder}) is writing to it"
            ) from None
        held = True
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        if force and not _same_folder(resume, out_dir):
            for name in RUN_FILES:
                (out_dir / name).unlink(missing_ok=True)
        yield out_dir
    finally:
        if held:  # a killed run leaves the file behind; its lock dies with the process
            lock.unlink(missing_ok=True)
        os.close(fd)  # releases the lock
