"""Property-based fuzzing of the NetX reader: every mutated file loads or fails with our error."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from snn2loihi.errors import Snn2LoihiError
from snn2loihi.netx_io import read_network, write_network
from snn2loihi.testing.netgen import SMALL, random_network, random_residual_network
from snn2loihi.validate import validate_network


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> bytes:
    """The bytes of a valid NetX file (the SMALL random network)."""
    path = tmp_path_factory.mktemp("netx-fuzz") / "good.net"
    return write_network(random_network(SMALL, seed=0), path).read_bytes()


@pytest.fixture(scope="module")
def fuzz_dir(tmp_path_factory) -> Path:
    """One folder for all examples of the fuzz test."""
    return tmp_path_factory.mktemp("netx-fuzz-work")


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
_WHERE = st.floats(0, 1, exclude_max=True)  # a byte position, as a fraction of the file length
MUTATIONS = st.one_of(
    st.tuples(st.just("drop"), st.sampled_from(FIELDS), st.none()),
    st.tuples(st.just("retype"), st.sampled_from(FIELDS), VALUES),
    st.tuples(st.just("truncate"), _WHERE, st.none()),
    st.tuples(st.just("flip"), _WHERE, st.integers(1, 255)),
)


def _mutate(path: Path, good: bytes, mutation) -> None:
    """Byte-level mutations start from the good file; dataset mutations edit the current one."""
    kind, where, value = mutation
    if kind in ("truncate", "flip"):
        pos = int(where * len(good))
        data = bytearray(good)
        if kind == "truncate":
            del data[pos:]
        else:
            data[pos] ^= value
        path.write_bytes(bytes(data))
        return
    if not path.exists():
        path.write_bytes(good)
    try:
        f = h5py.File(path, "a")
    except OSError:
        return  # an earlier byte mutation made it unopenable: nothing more to edit
    with f:
        if kind == "format":  # the root attribute that versions the residual superset
            try:
                f.attrs["snn2loihi_format"] = value
            except (TypeError, ValueError, OSError, RuntimeError):
                pass
            return
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
def test_mutated_files_load_or_raise_our_error(good, fuzz_dir, mutations):
    _loads_or_raises_our_error(fuzz_dir, good, mutations)


@pytest.fixture(scope="module")
def good_residual(tmp_path_factory) -> bytes:
    """The bytes of a valid residual file (the superset of NetX, format 2)."""
    path = tmp_path_factory.mktemp("netx-fuzz") / "residual.net"
    return write_network(random_residual_network(seed=0), path).read_bytes()


RESIDUAL_FIELDS = [
    f"layer/{i}/{name}"
    for i in (3, 5)
    for name in ("type", "main", "shortcut", "shortcut/0", "shortcut/1", "shortcut/0/source")
    + ("shortcut/0/delay", "shortcut/0/weight", "shortcut/0/stride", "shortcut/0/groups")
]
RESIDUAL_MUTATIONS = st.one_of(
    MUTATIONS,
    st.tuples(st.just("drop"), st.sampled_from(RESIDUAL_FIELDS), st.none()),
    st.tuples(st.just("retype"), st.sampled_from(RESIDUAL_FIELDS), VALUES),
    st.tuples(st.just("format"), st.none(), VALUES),
)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(RESIDUAL_MUTATIONS, min_size=1, max_size=3))
def test_mutated_residual_files_load_or_raise_our_error(good_residual, fuzz_dir, mutations):
    _loads_or_raises_our_error(fuzz_dir, good_residual, mutations)


def _loads_or_raises_our_error(fuzz_dir: Path, good: bytes, mutations) -> None:
    """The file after ``mutations`` reads as a valid network that writes back to a file
    reading the same, or fails with our one-line error naming it."""
    path = fuzz_dir / "fuzz.net"
    path.unlink(missing_ok=True)
    for m in mutations:
        _mutate(path, good, m)
    try:
        net = read_network(path)
    except Snn2LoihiError as exc:
        message = str(exc)
        assert message and "\n" not in message, "errors must be one line"
        assert "fuzz.net" in message, "errors must name the file"
        return
    # what loads is a valid network that writes back to a file reading the same
    assert net.num_synaptic_layers >= 1
    validate_network(net)
    again = read_network(write_network(net, fuzz_dir / "again.net"))
    assert again == net
