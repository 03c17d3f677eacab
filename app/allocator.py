"""Keep freed memory in the process, so the next step's tensors do not page-fault.

glibc's malloc serves large blocks (above 128 KiB to 32 MiB, adapting) by ``mmap`` and unmaps
them on free; it also trims the heap top. A training step or an emulator batch frees and
re-allocates the same large tensors every iteration, so each one is faulted in afresh, page
by page: on the 2-core benchmark machine that was about half of the SNN2ANN step. With
``M_MMAP_MAX = 0`` and a 2 GiB trim threshold every block comes from the heap, and a freed block
serves the next request that fits in it (a request of the very same size may first grow the
heap: PyTorch's 64-byte aligned allocations need a few bytes more than the block they freed, so
reuse settles within a few iterations). The process keeps its high-water mark instead of
returning it; peak RSS is measured in bench/train_cost.py.

Set ``SNN2LOIHI_KEEP_FREED_MEMORY=0`` to leave the C library's defaults (for instance when
another allocator is preloaded).
"""

from __future__ import annotations

import ctypes
import logging
import os
import sys

log = logging.getLogger(__name__)

M_TRIM_THRESHOLD = -1  # glibc's malloc.h
M_MMAP_MAX = -4
TRIM_THRESHOLD_BYTES = 2**31 - 1  # mallopt takes an int: the largest it accepts
ENV_SWITCH = "SNN2LOIHI_KEEP_FREED_MEMORY"


def keep_freed_memory() -> bool:
    """Tell glibc's malloc to keep freed blocks for reuse; True where it took effect.

    A no-op (False) off Linux, with another C library, or with ``SNN2LOIHI_KEEP_FREED_MEMORY=0``.
    Call it once at process start; forked children inherit it.
    """
    if os.environ.get(ENV_SWITCH, "1") == "0" or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None)  # the C library this process already runs on
        libc.gnu_get_libc_version  # noqa: B018  (glibc only: musl's mallopt does nothing)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    ok = mallopt(M_MMAP_MAX, 0) == 1 and mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES) == 1
    if not ok:
        log.debug("mallopt refused; keeping the C library's allocation defaults")
    return ok
