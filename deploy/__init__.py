"""Deploy stage: run a NetX ``.net`` on Lava (simulator or Loihi 2) and on the bit-exact emulator.

Needs only the shared core and a ``.net`` file. Lava is imported lazily, inside the functions
that run it. ``from snn2loihi.deploy import Emulator, run_lava, run_parity``.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "Emulator": "snn2loihi.deploy.emulator",
    "EmulatorResult": "snn2loihi.deploy.emulator",
    "run_lava": "snn2loihi.deploy.lava_runner",
    "Runner": "snn2loihi.deploy.runner",
    "run_parity": "snn2loihi.deploy.parity",
    "run_global_parity": "snn2loihi.deploy.parity",
    "Timeline": "snn2loihi.deploy.timeline",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'snn2loihi.deploy' has no attribute {name!r}")
