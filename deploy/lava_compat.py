"""Make lava-nc 0.10.0 importable on Python >= 3.11 without touching site-packages.

Two source-level fixes are applied by an import hook as the modules load (never on disk):

1. ``lava/magma/compiler/var_model.py`` uses a ``ByteEncoder`` dataclass instance as the default
   of other dataclass fields; Python 3.11 rejects that as a mutable default (``ValueError``)
   because ``ByteEncoder`` is unhashable. Fix: ``@dataclass(unsafe_hash=True)``.
2. ``lava/magma/runtime/message_infrastructure/multiprocessing.py`` calls
   ``mp.set_start_method('fork')`` at import, which raises ``RuntimeError: context has already
   been set`` in any process whose multiprocessing context was fixed before (e.g. after
   ``torch.multiprocessing.spawn``). Fix: ``force=True``, the start method Lava needs anyway.

Call :func:`install` (or :func:`import_netx`) before importing anything from ``lava``.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
import threading

# module -> (original source text, replacement)
PATCHES: dict[str, tuple[str, str]] = {
    "lava.magma.compiler.var_model": (
        "@dataclass\nclass ByteEncoder:",
        "@dataclass(unsafe_hash=True)\nclass ByteEncoder:",
    ),
    "lava.magma.runtime.message_infrastructure.multiprocessing": (
        "mp.set_start_method('fork')",
        "mp.set_start_method('fork', force=True)",
    ),
}
TARGET = "lava.magma.compiler.var_model"  # the module that fails on Python 3.11 without a fix
_lock = threading.Lock()


class _PatchedLoader(importlib.machinery.SourceFileLoader):
    """Loads a module from its source with its fix applied (no bytecode cache)."""

    def get_code(self, fullname: str):
        old, new = PATCHES[fullname]
        source = self.get_source(fullname)
        return compile(source.replace(old, new, 1), self.path, "exec", dont_inherit=True)


class _LavaFinder(importlib.abc.MetaPathFinder):
    """Meta-path finder that swaps in :class:`_PatchedLoader` for the modules in PATCHES."""

    def find_spec(self, fullname, path, target=None):
        if fullname not in PATCHES:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or not isinstance(spec.loader, importlib.machinery.SourceFileLoader):
            return spec
        spec.loader = _PatchedLoader(fullname, spec.origin)
        return spec


def needs_patch() -> bool:
    """True on Python versions whose dataclasses reject unhashable defaults (>= 3.11)."""
    return sys.version_info >= (3, 11)


def install() -> bool:
    """Install the import hook once (idempotent, thread-safe); returns True when active."""
    with _lock:
        if not any(isinstance(f, _LavaFinder) for f in sys.meta_path):
            sys.meta_path.insert(0, _LavaFinder())
    return True


def import_netx():
    """Install the fixes and import ``lava.lib.dl.netx`` (heavy: pulls slayer, torchvision, OpenCV)."""
    install()
    from lava.lib.dl import netx

    return netx
