"""Output paths checked before any work starts: never an input, never twice, never by surprise.

Every command names its inputs and outputs; :func:`check_outputs` refuses an output that is (or
resolves to, through links or ``..``) one of the inputs or another output, an output that is an
existing folder, socket or block device or sits where nothing can be written, and, without
``force``, one that exists. A character device (``/dev/null``) or FIFO is written into, never
replaced, and needs no ``force``: nothing in it can be lost.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from snn2loihi.atomic import check_special
from snn2loihi.errors import OutputPathError

PathLike = str | os.PathLike


def _same(a: Path, b: Path) -> bool:
    if a.resolve() == b.resolve():
        return True
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def _writable_folder(path: Path) -> Path | None:
    """The nearest existing ancestor of ``path`` if files cannot be created there, else None."""
    folder = path.resolve().parent
    while not folder.exists():
        folder = folder.parent
    if not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
        return folder
    return None


def check_outputs(
    outputs: Mapping[str, PathLike | None],
    inputs: Mapping[str, PathLike | None] | None = None,
    *,
    force: bool = False,
) -> None:
    """Refuse bad outputs before anything is written.

    ``outputs``/``inputs``: option name (as the user typed it, e.g. ``--out``) -> path or None.
    Raises :class:`OutputPathError` naming the option and the path.
    """
    outs = [(name, Path(p)) for name, p in outputs.items() if p is not None]
    ins = [(name, Path(p)) for name, p in (inputs or {}).items() if p is not None]
    for k, (name, path) in enumerate(outs):
        for other, src in ins:
            if _same(path, src):
                raise OutputPathError(
                    f"{name} {path} is the input {other} {src}; write the output elsewhere"
                )
        for other, dest in outs[:k]:
            if _same(path, dest):
                raise OutputPathError(f"{name} {path} is also {other}; give two different files")
        if path.is_dir():
            raise OutputPathError(f"{name} {path} is a folder; give a file name")
        if check_special(path, name):  # a device or FIFO: written into, never replaced
            if not os.access(path, os.W_OK):
                raise OutputPathError(f"{name} {path}: cannot write into it")
            continue
        blocked = _writable_folder(path)
        if blocked is not None:
            raise OutputPathError(f"{name} {path}: cannot create files in {blocked}")
        if not force and path.exists():
            raise OutputPathError(f"{name} {path} exists (use --force to overwrite)")
