"""What a benchmark ran on: CPU model and int8 features, cores, torch, GPU, allocator setting.

Every bench script records :func:`machine` next to its figures; :func:`setup_allocator` gives
the benchmark the CLI's own allocator setting (:mod:`snn2loihi.app.allocator`) unless asked
not to, and says which ran.
"""

from __future__ import annotations

import ctypes
import os
import platform
import threading
import time
from pathlib import Path

import torch

from snn2loihi.app.allocator import keep_freed_memory

INT8_FEATURES = ("avx512_vnni", "avx_vnni", "amx_int8")  # what oneDNN's int8 kernels use
ALLOCATORS = ("keep", "default")  # keep_freed_memory() as the CLI does, or glibc's defaults


def setup_allocator(choice: str) -> str:
    """Apply ``choice`` (:data:`ALLOCATORS`) to this process; the setting that took effect."""
    if choice == "keep" and keep_freed_memory():
        return "keep freed memory (mallopt M_MMAP_MAX=0, M_TRIM_THRESHOLD=2 GiB)"
    return "C library defaults"


def machine(allocator: str | None = None) -> dict:
    """The machine record of a result file; ``allocator`` as :func:`setup_allocator` said."""
    cpu, flags = "", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and not cpu:
                cpu = line.split(":", 1)[1].strip()
            elif line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    except OSError:
        pass
    info = {
        "cpu": cpu or platform.processor(),
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cpu_int8_features": [f for f in INT8_FEATURES if f in flags],
        "python": platform.python_version(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    if allocator is not None:
        info["allocator"] = allocator
    return info


_MALLINFO2_FIELDS = "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost"


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in _MALLINFO2_FIELDS.split()]


def _mallinfo2():
    """glibc's ``mallinfo2`` (2.33+), or None elsewhere."""
    try:
        fn = ctypes.CDLL("libc.so.6").mallinfo2
    except (OSError, AttributeError):
        return None
    fn.restype = _MallInfo2
    return fn


class InUseSampler:
    """Peak of the bytes that malloc holds in use (``mallinfo2``: ``uordblks + hblkhd``, every
    arena), sampled every ``interval`` s by a thread while the ``with`` block runs: the live
    memory, which the peak RSS exceeds by the heap's free holes. ``peak_mib`` is None where the C
    library has no ``mallinfo2``."""

    def __init__(self, interval: float = 2e-4):
        self.interval = interval
        self._info = _mallinfo2()
        self.peak_mib: float | None = None
        self._stop = threading.Event()

    def in_use_mib(self) -> float | None:
        if self._info is None:
            return None
        m = self._info()
        return (m.uordblks + m.hblkhd) / 2**20

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak_mib = max(self.peak_mib, self.in_use_mib())
            time.sleep(self.interval)

    def __enter__(self) -> InUseSampler:
        self.peak_mib = self.in_use_mib()
        if self._info is not None:
            self._thread = threading.Thread(target=self._run, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self._info is not None:
            self._stop.set()
            self._thread.join()
            self.peak_mib = max(self.peak_mib, self.in_use_mib())
