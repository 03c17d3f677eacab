"""The CLI's allocator setting (snn2loihi.app.allocator): freed blocks are reused, not unmapped
and page-faulted in again, and SNN2LOIHI_KEEP_FREED_MEMORY=0 leaves glibc's defaults."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

PROBE = """
import json, resource
import torch
from snn2loihi.app.allocator import keep_freed_memory
took = keep_freed_memory()
faults = []
for mib in (64, 48, 40):  # a large tensor freed, then smaller ones made (as a step's temporaries)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    t = torch.ones(mib * 2**18, dtype=torch.float32)  # above glibc's largest mmap threshold
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    del t
print(json.dumps({"took": took, "faults": faults}))
"""


def _probe(**env) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", PROBE],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def _thp_always() -> bool:
    path = Path("/sys/kernel/mm/transparent_hugepage/enabled")
    return path.exists() and "[always]" in path.read_text()


@pytest.mark.multiprocess  # the allocator is set before torch loads: fresh processes
@pytest.mark.skipif(sys.platform != "linux", reason="glibc's malloc (Linux)")
def test_freed_blocks_are_reused_without_page_faults():
    kept = _probe(SNN2LOIHI_KEEP_FREED_MEMORY="1")
    assert kept["took"] is True
    pages = 2**20 // os.sysconf("SC_PAGE_SIZE")  # per MiB
    assert kept["faults"][0] >= 32 * pages  # the first one is faulted in
    assert max(kept["faults"][1:]) < 2 * pages  # the smaller ones reuse its pages
    default = _probe(SNN2LOIHI_KEEP_FREED_MEMORY="0")
    assert default["took"] is False
    if not _thp_always():  # 4 KiB pages: every fresh mapping faults page by page
        assert default["faults"][1] >= 24 * pages and default["faults"][2] >= 20 * pages
