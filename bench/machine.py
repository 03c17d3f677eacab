"""What a benchmark ran on: CPU model and int8 features, cores, torch, GPU, allocator setting.

Every bench script records :func:`machine` next to its figures; :func:`setup_allocator` gives
the benchmark the CLI's own allocator setting (:mod:`snn2loihi.app.allocator`) unless asked
not to, and says which ran.
"""

from __future__ import annotations

import os
import platform
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
