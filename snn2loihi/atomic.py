"""Atomic file output: write to a temporary file beside the target, then rename.

A target that exists and is not a regular file is never renamed over: a character device
(``/dev/null``, a terminal) or a FIFO is written into once the temporary file is complete; a
socket, a block device or a folder is refused (:class:`~snn2loihi.errors.OutputPathError`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import stat
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from snn2loihi.errors import OutputPathError

log = logging.getLogger(__name__)

_REFUSED_KINDS = (
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISDIR, "a folder"),
)


def _umask() -> int:
    """The process umask (read by setting it, then restoring it at once)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def special_kind(dest: str | os.PathLike) -> str | None:
    """What an existing ``dest`` is when it is not a regular file (following links), else None.

    ``"stream"`` for a character device or FIFO, and for an existing file named in ``/dev`` or
    ``/proc`` (``/dev/stdout`` redirected into a file: the link must never be replaced), all
    written into; for a socket, block device or folder the words that name it (refused).
    """
    try:
        mode = os.stat(dest).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return None
    if stat.S_ISREG(mode):  # in /dev or /proc (/dev/stdout into a file): written into
        return "stream" if Path(os.path.abspath(dest)).parts[1:2] in (("dev",), ("proc",)) else None
    if stat.S_ISCHR(mode) or stat.S_ISFIFO(mode):
        return "stream"
    return next((words for test, words in _REFUSED_KINDS if test(mode)), "not a regular file")


def check_special(dest: str | os.PathLike, name: str = "output") -> bool:
    """True if ``dest`` is a character device or FIFO (to be written into); raise
    :class:`OutputPathError` for a socket, block device or folder; False otherwise."""
    kind = special_kind(dest)
    if kind is None:
        return False
    if kind != "stream":
        raise OutputPathError(f"{name} {dest} is {kind}; give a file name, a FIFO or a device")
    return True


def _new_temporary(folder: Path, prefix: str) -> Path:
    fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=".tmp", dir=folder)
    os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; a plain open() honours the umask
    os.close(fd)
    return Path(tmp)


def _write_into(tmp_path: Path, dest: Path) -> None:
    """Copy the finished temporary file into the device, FIFO or ``/dev`` file ``dest``:
    appended, never truncated or renamed over (``/dev/stdout >> log`` keeps the log); what the
    process printed so far goes first."""
    log.debug("writing %s into the special file %s", tmp_path, dest)
    sys.stdout.flush()
    with open(tmp_path, "rb") as src, open(dest, "ab") as out:
        shutil.copyfileobj(src, out)


@contextlib.contextmanager
def atomic_path(dest: str | os.PathLike, *, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary path in ``dest``'s folder; on success rename it onto ``dest``.

    On any exception the temporary file is removed and ``dest`` is left untouched, so a final
    name never holds a half-written file. With ``overwrite=False`` an existing ``dest`` raises
    :class:`FileExistsError` before anything is written. A character device or FIFO ``dest``
    is written into (``overwrite`` or not: nothing in it is lost) once the temporary file, in
    the system temporary folder, is complete.
    """
    dest = Path(dest)
    stream = check_special(dest)
    if not overwrite and not stream and dest.exists():
        raise FileExistsError(f"{dest} exists (use --force to overwrite)")
    if stream:
        tmp_path = _new_temporary(Path(tempfile.gettempdir()), "snn2loihi-out-")
    else:
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp_path = _new_temporary(dest.parent, f".{dest.name}.")
    try:
        yield tmp_path
        if stream:
            _write_into(tmp_path, dest)
            return
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp_path, dest)
    finally:
        tmp_path.unlink(missing_ok=True)
