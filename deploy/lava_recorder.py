"""Record a layer's spikes (and its neuron's ``u``, ``v``) from inside a Lava run into ``.npy``
files, one row per time step.

Lava's ``Monitor`` keeps its record in a Var, and reading a Var back (``Var.get``) sends it
through the runtime one element at a time: for a full-width conv network that read dominates
the whole run (tens of CPU seconds per sample). The recorder processes here receive the same
values the same way (the spikes on an InPort in the spiking phase, ``u``/``v`` through RefPorts
in the post-management phase, as ``Monitor`` does) but write each step's row straight into a
memory-mapped ``.npy`` file that the driver reads after the run. What Lava computes is
untouched: only the observer changes.

The process and model classes are made on first use (:func:`recorder_classes`), after
:mod:`snn2loihi.deploy.lava_compat` has made Lava importable. Their process models are given
to the run configuration per instance (``exception_proc_model_map``, see :func:`model_map`),
so Lava's model search never scans this package.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from snn2loihi.deploy.lava_compat import install

RECORD_DTYPE = np.int32  # spikes (graded or binary) and u, v of fixed-point neurons


def create_record(path: Path, steps: int, shape: tuple[int, ...]) -> None:
    """Make the (steps, *shape) int32 ``.npy`` file, zero-filled, that a recorder writes into."""
    np.lib.format.open_memmap(path, mode="w+", dtype=RECORD_DTYPE, shape=(steps, *shape)).flush()


@functools.cache
def recorder_classes(states: tuple[str, ...] = ()) -> tuple[type, type]:
    """``(Recorder, its model)``: a Lava process that records an OutPort and, read through one
    RefPort ``<name>_in`` per name in ``states`` (connected to a neuron's Var of that name, e.g.
    ``u``, ``v``, ``sigma``), those Vars, every step of a run. One pair per ``states``."""
    install()
    from lava.magma.core.decorator import implements, requires
    from lava.magma.core.model.py.model import PyLoihiProcessModel
    from lava.magma.core.model.py.ports import PyInPort, PyRefPort
    from lava.magma.core.model.py.type import LavaPyType
    from lava.magma.core.process.ports.ports import InPort, RefPort
    from lava.magma.core.process.process import AbstractProcess
    from lava.magma.core.resources import CPU
    from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol

    class Recorder(AbstractProcess):
        """Writes what arrives on ``s_in`` (``shape``, Lava's XYZ order) at step t (1-based)
        into row t-1 of the ``.npy`` file ``files["s"]`` (made by :func:`create_record`), and
        each state read through ``<name>_in`` into ``files[name]``."""

        def __init__(self, shape: tuple[int, ...], files: dict[str, str]):
            super().__init__(shape=shape, files=files)
            self.s_in = InPort(shape=shape)
            for name in states:
                setattr(self, f"{name}_in", RefPort(shape=shape))

    class RecorderModel(PyLoihiProcessModel):
        s_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)

        def __init__(self, proc_params):
            super().__init__(proc_params)
            self._records = None

        def record(self, name: str) -> np.ndarray:
            if self._records is None:  # opened in the Lava process that runs this model
                files = self.proc_params["files"]
                self._records = {k: np.load(p, mmap_mode="r+") for k, p in files.items()}
            return self._records[name]

        def run_spk(self) -> None:
            self.record("s")[self.time_step - 1] = self.s_in.recv()

        def post_guard(self) -> bool:
            return bool(states)

        def run_post_mgmt(self) -> None:
            for name in states:
                self.record(name)[self.time_step - 1] = getattr(self, f"{name}_in").read()

    for name in states:  # the model's ports are its class attributes
        setattr(
            RecorderModel, f"{name}_in", LavaPyType(PyRefPort.VEC_DENSE, np.int32, precision=24)
        )
    suffix = "".join(f"_{n}" for n in states)
    Recorder.__name__ = Recorder.__qualname__ = f"Recorder{suffix}"
    RecorderModel.__name__ = RecorderModel.__qualname__ = f"PyRecorderModel{suffix}"
    model = requires(CPU)(implements(proc=Recorder, protocol=LoihiProtocol)(RecorderModel))
    Recorder.model = model  # for model_map
    return Recorder, model


def attach_recorder(neuron, states: tuple[str, ...], files: dict[str, str], spikes_from=None):
    """A recorder of ``neuron``'s spikes (or of the OutPort ``spikes_from``) and of its Vars
    ``states``, writing into ``files`` (by name: ``s`` and each state); returns the process."""
    proc_cls, _ = recorder_classes(tuple(states))
    port = neuron.s_out if spikes_from is None else spikes_from
    rec = proc_cls(tuple(port.shape), files)
    port.connect(rec.s_in)
    for name in states:
        getattr(rec, f"{name}_in").connect_var(getattr(neuron, name))
    return rec


def model_map(recorders: list) -> dict:
    """``exception_proc_model_map`` entries (per instance) for ``recorders``."""
    return {r: type(r).model for r in recorders}
