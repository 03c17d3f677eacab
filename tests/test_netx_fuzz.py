"""Property-based fuzzing of the NetX reader: every mutated file loads or fails with our error."""

from __future__ import annotations

import tempfile
from pathlib import Path

import h5py
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from snn2loihi.errors import Snn2LoihiError
from snn2loihi.netx_io import read_network, write_network
from snn2loihi.testing.netgen import SMALL, random_network

_BASE = tempfile.mkdtemp(prefix="snn2loihi-fuzz-")
_GOOD = write_network(random_network(SMALL, seed=0), Path(_BASE) / "good.net").read_bytes()

FIELDS = [
    "layer/0/type",
    "layer/0/shape",
    "layer/1/type",
    "layer/1/shape",
    "layer/1/weight",
    "layer/1/bias",
    "layer/1/stride",
    "layer/1/padding",
    "layer/1/dilation",
    "layer/1/groups",
    "layer/1/neuron/type",
    "layer/1/neuron/iDecay",
    "layer/1/neuron/vDecay",
    "layer/1/neuron/vThMant",
    "layer/2/shape",
    "layer/3/weight",
    "layer/3/bias",
    "layer/3/neuron/vThMant",
    "layer/3/neuron",
]
VALUES = st.one_of(
    st.integers(-(2**40), 2**40),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.binary(max_size=12),
    st.lists(st.integers(-300, 300), max_size=6),
    st.lists(st.lists(st.integers(-3, 3), min_size=1, max_size=3), min_size=1, max_size=3),
)
MUTATIONS = st.one_of(
    st.tuples(st.just("drop"), st.sampled_from(FIELDS), st.none()),
    st.tuples(st.just("retype"), st.sampled_from(FIELDS), VALUES),
    st.tuples(st.just("truncate"), st.integers(0, len(_GOOD) - 1), st.none()),
    st.tuples(st.just("flip"), st.integers(0, len(_GOOD) - 1), st.integers(1, 255)),
)


def _mutate(path: Path, mutation) -> None:
    """Byte-level mutations start from the good file; dataset mutations edit the current one."""
    kind, where, value = mutation
    if kind == "truncate":
        path.write_bytes(_GOOD[:where])
        return
    if kind == "flip":
        data = bytearray(_GOOD)
        data[where] ^= value
        path.write_bytes(bytes(data))
        return
    if not path.exists():
        path.write_bytes(_GOOD)
    try:
        f = h5py.File(path, "a")
    except OSError:
        return  # an earlier byte mutation made it unopenable: nothing more to edit
    with f:
        try:
            if where in f:
                del f[where]
            if kind == "retype":
                try:
                    f.create_dataset(where, data=value)
                except (TypeError, ValueError):
                    f.create_dataset(where, data=np.bytes_(repr(value)[:20]))
        except (OSError, RuntimeError, KeyError, ValueError):
            return  # h5py cannot edit a file an earlier byte mutation corrupted: keep it as is


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(MUTATIONS, min_size=1, max_size=3))
def test_mutated_files_load_or_raise_our_error(mutations):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "fuzz.net"
        for m in mutations:
            _mutate(path, m)
        try:
            net = read_network(path)
        except Snn2LoihiError as exc:
            assert str(exc), "errors must carry a message"
            return
        assert net.num_synaptic_layers >= 1
