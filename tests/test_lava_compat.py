"""lava-nc 0.10.0 on Python >= 3.11: the ByteEncoder fix works from our import path only."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest

from snn2loihi.deploy.lava_compat import TARGET, needs_patch

pytestmark = pytest.mark.lava


def _python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)


@pytest.mark.skipif(not needs_patch(), reason="only Python >= 3.11 rejects the mutable default")
def test_unpatched_lava_fails_on_this_python():
    proc = _python(f"import {TARGET}")
    assert proc.returncode != 0
    assert "mutable default" in proc.stderr and "ByteEncoder" in proc.stderr


def test_site_packages_are_untouched():
    spec = importlib.util.find_spec("lava.magma.compiler")
    source = spec.submodule_search_locations[0] + "/var_model.py"
    text = open(source).read()
    assert "@dataclass\nclass ByteEncoder:" in text, "var_model.py must not be edited by hand"


def test_netx_imports_and_a_lava_run_works_through_the_project():
    code = """
import numpy as np
from snn2loihi.deploy.lava_compat import import_netx
netx = import_netx()
from lava.magma.core.run_conditions import RunSteps
from lava.magma.core.run_configs import Loihi2SimCfg
from lava.proc.lif.process import LIF
from lava.proc.dense.process import Dense
from lava.proc.io.source import RingBuffer
from lava.proc.monitor.process import Monitor
src = RingBuffer(data=np.ones((2, 5), dtype=int))
dense = Dense(weights=np.array([[20, 20], [10, 0]]))
lif = LIF(shape=(2,), du=4095, dv=0, vth=30, bias_mant=0, bias_exp=6)
src.s_out.connect(dense.s_in); dense.a_out.connect(lif.a_in)
mon = Monitor(); mon.probe(lif.s_out, 5)
lif.run(condition=RunSteps(num_steps=5), run_cfg=Loihi2SimCfg(select_tag='fixed_pt'))
print('SPIKES', mon.get_data()[lif.name]['s_out'].astype(int).T.tolist())
lif.stop()
"""
    proc = _python(code)
    assert proc.returncode == 0, proc.stderr[-2000:]
    # Threshold 30 << 6 = 1920; input arrives from step 2 (1-step synapse delay).
    # Neuron 0: v = 40 << 6 = 2560 > 1920 spikes at steps 2..5 (reset to 0 each time).
    # Neuron 1: v = 640, 1280, 1920 (equal: no spike), 2560 > 1920 spikes at step 5.
    assert "SPIKES [[0, 1, 1, 1, 1], [0, 0, 0, 0, 1]]" in proc.stdout


def test_lava_imports_after_the_multiprocessing_context_was_set():
    """Lava's import-time set_start_method('fork') must not fail in a process that used spawn."""
    code = (
        "import multiprocessing as mp; mp.set_start_method('spawn'); "
        "from snn2loihi.deploy.lava_compat import import_netx; import_netx(); "
        "import lava.magma.runtime.message_infrastructure.multiprocessing; print('OK', mp.get_start_method())"
    )
    proc = _python(code)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "OK fork" in proc.stdout
