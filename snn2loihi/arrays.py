"""Loading ``.npy``/``.npz`` arrays safely: headers checked before anything is allocated.

A forged header can claim any shape; ``np.load`` would then try to allocate it. Here the
header is read first, and an array is refused (:class:`InputDataError`, naming the file, the
array and the size) when its dtype holds objects (pickles), when the file holds fewer bytes than
the header claims, or when it would not fit the memory budget (``MemAvailable``, or the
``SNN2LOIHI_MEMORY_BUDGET`` environment variable in bytes).
"""

from __future__ import annotations

import math
import os
import zipfile
from pathlib import Path

import numpy as np

from snn2loihi.errors import InputDataError

BUDGET_ENV = "SNN2LOIHI_MEMORY_BUDGET"


def memory_budget() -> int:
    """Bytes that one input array may take: ``$SNN2LOIHI_MEMORY_BUDGET`` or half of MemAvailable."""
    if os.environ.get(BUDGET_ENV):
        return int(os.environ[BUDGET_ENV])
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024 // 2
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2


def size_text(n: int) -> str:
    """Bytes as people read them: GiB from 128 MiB up, else bytes with separators."""
    return f"{n / 2**30:.3g} GiB" if n >= 2**27 else f"{n:,} bytes"


def _read_header(fh, name: str) -> tuple[tuple[int, ...], np.dtype]:
    """``(shape, dtype)`` from the ``.npy`` header at ``fh``'s position (left after the header)."""
    readers = {
        (1, 0): np.lib.format.read_array_header_1_0,
        (2, 0): np.lib.format.read_array_header_2_0,
    }
    try:
        version = np.lib.format.read_magic(fh)
        if version not in readers:
            raise ValueError(f"unsupported .npy format version {version}")
        shape, _, dtype = readers[version](fh)
    except (ValueError, OSError, SyntaxError, TypeError) as exc:
        raise InputDataError(f"{name}: not a readable .npy array ({exc})") from None
    if dtype.hasobject:
        raise InputDataError(f"{name}: dtype {dtype} holds Python objects (pickles are refused)")
    return shape, dtype


def _check_size(name: str, shape: tuple[int, ...], dtype: np.dtype, data_bytes: int) -> None:
    """Refuse an array whose header claims more bytes than the file holds, or than fit."""
    nbytes = math.prod(shape) * dtype.itemsize
    if nbytes > data_bytes:
        raise InputDataError(
            f"{name}: the header claims {shape} {dtype} = {size_text(nbytes)}, but the file holds "
            f"only {size_text(data_bytes)} of data"
        )
    budget = memory_budget()
    if nbytes > budget:
        raise InputDataError(
            f"{name}: array {shape} {dtype} needs {size_text(nbytes)}, more than the memory budget "
            f"of {size_text(budget)} (set {BUDGET_ENV} in bytes to change it)"
        )


def load_npy(path: str | os.PathLike) -> np.ndarray:
    """The array in the ``.npy`` file ``path``, after its header has been checked."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            shape, dtype = _read_header(fh, str(path))
            _check_size(str(path), shape, dtype, os.fstat(fh.fileno()).st_size - fh.tell())
            fh.seek(0)
            return np.load(fh, allow_pickle=False)
    except FileNotFoundError:
        raise InputDataError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise InputDataError(f"{path}: is a folder, expected a .npy file") from None
    except (ValueError, OSError, EOFError) as exc:
        raise InputDataError(f"{path}: not a readable .npy array ({exc})") from None


def npz_header(path: str | os.PathLike, key: str) -> tuple[tuple[int, ...], np.dtype] | None:
    """``(shape, dtype)`` of the array ``key`` of the ``.npz`` file ``path``, from its header
    alone (nothing is decompressed beyond it); None if the file or the array cannot be read
    (:func:`load_npz` then says why)."""
    try:
        with zipfile.ZipFile(path) as zf:
            info = {i.filename.removesuffix(".npy"): i for i in zf.infolist()}.get(key)
            if info is None:
                return None
            with zf.open(info) as fh:
                return _read_header(fh, f"{path}[{key}]")
    except (InputDataError, zipfile.BadZipFile, ValueError, OSError, EOFError, NotImplementedError):
        return None


def load_npz(path: str | os.PathLike, keys: tuple[str, ...]) -> dict[str, np.ndarray]:
    """The arrays ``keys`` of the ``.npz`` file ``path``, each header checked before loading."""
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as zf:
            members = {i.filename.removesuffix(".npy"): i for i in zf.infolist()}
            out = {}
            for key in keys:
                if key not in members:
                    have = ", ".join(sorted(members)) or "nothing"
                    raise InputDataError(f"{path}: no array '{key}' (it holds {have})")
                info, name = members[key], f"{path}[{key}]"
                with zf.open(info) as fh:
                    shape, dtype = _read_header(fh, name)
                    _check_size(name, shape, dtype, info.file_size - fh.tell())
                with zf.open(info) as fh:
                    out[key] = np.lib.format.read_array(fh, allow_pickle=False)
            return out
    except FileNotFoundError:
        raise InputDataError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise InputDataError(f"{path}: is a folder, expected a .npz file") from None
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, NotImplementedError) as exc:
        # NotImplementedError: a member in a compression method zipfile cannot decode
        raise InputDataError(f"{path}: not a readable .npz archive ({exc})") from None
