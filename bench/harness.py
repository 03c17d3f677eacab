"""The one harness of every bench script: what it ran on, how it times, how it writes.

- :func:`machine`: CPU model and int8 features, cores, torch and its threads, GPU, allocator
  setting; every result file records it next to its figures. :func:`setup_allocator` gives the
  benchmark the CLI's own allocator setting (:mod:`snn2loihi.app.allocator`) unless asked not
  to, and says which ran;
- :func:`time_calls`: the one timer (a warm-up run, then the stated statistic of the repeats);
- :func:`write_result`: result files (JSON or text) written atomically, folders made;
- :class:`InUseSampler`: peak live heap memory while a block runs.

Scripts run as ``python bench/<script>.py``, which puts bench/ on ``sys.path``; the test suite
adds it through pytest's ``pythonpath`` setting.
"""

from __future__ import annotations

import ctypes
import json
import os
import platform
import statistics
import threading
import time
from collections.abc import Callable
from pathlib import Path

import torch

from snn2loihi.app.allocator import keep_freed_memory
from snn2loihi.atomic import atomic_path

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


STATISTICS = {"median": statistics.median, "min": min}  # what time_calls reports


def time_calls(
    run: Callable[[], object],
    repeats: int,
    *,
    statistic: str = "median",
    sync: Callable[[], object] | None = None,
    warmup: bool = True,
) -> tuple[float, float]:
    """``(value, first)``: the ``statistic`` (:data:`STATISTICS`: median, or min for a best
    case) of the wall seconds of ``repeats`` calls of ``run`` (each followed by ``sync``, e.g.
    ``torch.cuda.synchronize``), after one warm-up call whose seconds (compiling, first
    allocations) are ``first`` (0.0 with ``warmup=False``)."""
    sync = sync or (lambda: None)

    def once() -> float:
        t0 = time.perf_counter()
        run()
        sync()
        return time.perf_counter() - t0

    first = once() if warmup else 0.0
    return STATISTICS[statistic]([once() for _ in range(max(1, repeats))]), first


def log_figure(text: str) -> float | None:
    """A figure of a run's ``log.csv``: None where it was not measured (empty: the integer
    SNN's validation during the ANN phase)."""
    return float(text) if text else None


def write_result(path: str | os.PathLike, content: dict | list | str) -> Path:
    """Write a result file atomically (a dict or list as indented JSON, text as it is),
    making its folder; returns the path."""
    path = Path(path)
    text = content if isinstance(content, str) else json.dumps(content, indent=2) + "\n"
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return path


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
