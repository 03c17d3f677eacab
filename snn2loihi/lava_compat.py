"""Make lava-nc 0.10.0 importable on Python >= 3.11 without touching site-packages.

``lava/magma/compiler/var_model.py`` uses the ``ByteEncoder`` dataclass instance as a default
of other dataclass fields; Python 3.11 rejects that as a mutable default (``ValueError``) because
``ByteEncoder`` is unhashable. The fix upstream would be ``@dataclass(unsafe_hash=True)``.
:func:`install` adds an import hook that applies exactly that change to the module's source as
it is loaded. Call it (or :func:`import_netx`) before importing anything from ``lava``.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
import threading

TARGET = "lava.magma.compiler.var_model"
_ORIGINAL = "@dataclass\nclass ByteEncoder:"
_PATCHED = "@dataclass(unsafe_hash=True)\nclass ByteEncoder:"
_lock = threading.Lock()


class _PatchedVarModelLoader(importlib.machinery.SourceFileLoader):
    """Loads var_model.py from its source with the ByteEncoder fix applied (no bytecode cache)."""

    def get_code(self, fullname: str):
        source = self.get_source(fullname)
        return compile(source.replace(_ORIGINAL, _PATCHED, 1), self.path, "exec", dont_inherit=True)


class _VarModelFinder(importlib.abc.MetaPathFinder):
    """Meta-path finder that swaps in :class:`_PatchedVarModelLoader` for :data:`TARGET`."""

    def find_spec(self, fullname, path, target=None):
        if fullname != TARGET:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or not isinstance(spec.loader, importlib.machinery.SourceFileLoader):
            return spec
        spec.loader = _PatchedVarModelLoader(fullname, spec.origin)
        return spec


def needs_patch() -> bool:
    """True on Python versions whose dataclasses reject unhashable defaults (>= 3.11)."""
    return sys.version_info >= (3, 11)


def install() -> bool:
    """Install the import hook once; returns True if it is active.

    Raises RuntimeError if the buggy module was already imported unpatched, which cannot happen
    unless something imported Lava's compiler before this function ran and failed.
    """
    if not needs_patch():
        return False
    with _lock:
        if any(isinstance(f, _VarModelFinder) for f in sys.meta_path):
            return True
        if TARGET in sys.modules:
            return True  # already loaded successfully (patched or fixed upstream)
        sys.meta_path.insert(0, _VarModelFinder())
    return True


def import_netx():
    """Install the fix and import ``lava.lib.dl.netx`` (heavy: pulls slayer, torchvision, OpenCV)."""
    install()
    from lava.lib.dl import netx

    return netx
