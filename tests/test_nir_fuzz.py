"""Property-based fuzzing of the NIR reader and convert: every mutated file converts or ends in
our own error, and nothing is half-written.

A small valid graph (Input, Scale, AvgPool2d, Conv2d, CubaLIF, SumPool2d, Flatten, Affine, LIF
with a recurrent Linear, Affine, LI, Output) is mutated at the HDF5 level (fields dropped, reshaped, retyped, turned to
text or poisoned with NaN/inf/huge values; node types swapped; nodes and edges deleted or
redirected) and at the byte level (truncation, flipped bytes).
"""

from __future__ import annotations

import h5py
import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

nir = pytest.importorskip("nir")

from snn2loihi.errors import Snn2LoihiError  # noqa: E402
from snn2loihi.export.nir_convert import convert_nir  # noqa: E402
from snn2loihi.export.nir_read import FIELDS  # noqa: E402
from snn2loihi.netx_io import read_network  # noqa: E402

NODES = ("scale", "pool", "conv", "lif0", "sum", "flat", "fc1", "lif1", "fc2", "li")
RECURRENT = [("lif1", "rec"), ("rec", "lif1")]  # a recurrent Linear onto lif1: dense_rec
TARGETS = (*NODES, "rec")


def tiny_graph():
    rng = np.random.default_rng(0)
    full = lambda n, v: np.full(n, float(v))  # noqa: E731
    nodes = {
        "input": nir.Input(input_type=np.array([1, 8, 8])),
        "scale": nir.Scale(scale=np.array([1.0])),
        "pool": nir.AvgPool2d(
            kernel_size=np.array([2, 2]), stride=np.array([2, 2]), padding=np.array([0, 0])
        ),
        "conv": nir.Conv2d(
            input_shape=(4, 4),
            weight=rng.normal(0, 1, (2, 1, 3, 3)),
            stride=1,
            padding=1,
            dilation=1,
            groups=1,
            bias=rng.normal(0, 0.1, 2),
        ),
        "lif0": nir.CubaLIF(
            tau_syn=full(2, 2e-4),
            tau_mem=full(2, 1e-3),
            r=full(2, 10),
            v_leak=full(2, 0),
            v_threshold=full(2, 1),
            w_in=full(2, 2),
        ),
        "sum": nir.SumPool2d(
            kernel_size=np.array([2, 2]), stride=np.array([2, 2]), padding=np.array([0, 0])
        ),
        "flat": nir.Flatten(input_type={"input": np.array([2, 2, 2])}, start_dim=0),
        "fc1": nir.Affine(weight=rng.normal(0, 1, (6, 8)), bias=np.zeros(6)),
        "lif1": nir.LIF(
            tau=full(6, 1e-3), r=full(6, 10), v_leak=full(6, 0), v_threshold=full(6, 1)
        ),
        "rec": nir.Linear(weight=rng.normal(0, 0.5, (6, 6))),
        "fc2": nir.Affine(weight=rng.normal(0, 1, (3, 6)), bias=np.zeros(3)),
        "li": nir.LI(tau=full(3, 1e-3), r=full(3, 10), v_leak=full(3, 0)),
        "output": nir.Output(output_type=np.array([3])),
    }
    chain = ["input", *NODES, "output"]
    edges = list(zip(chain, chain[1:], strict=False)) + RECURRENT
    return nir.NIRGraph(nodes=nodes, edges=edges, type_check=False)


MUTATION = st.one_of(
    st.tuples(st.just("drop"), st.sampled_from(TARGETS), st.integers(0, 10)),
    st.tuples(
        st.just("poison"),
        st.sampled_from(TARGETS),
        st.integers(0, 10),
        st.sampled_from([np.nan, np.inf, -np.inf, 1e300, -1e300, 1e30, 0.0, -1.0, -1e-3]),
    ),
    st.tuples(
        st.just("reshape"),
        st.sampled_from(TARGETS),
        st.integers(0, 10),
        st.lists(st.integers(0, 5), max_size=4),
    ),
    st.tuples(
        st.just("retype"),
        st.sampled_from(TARGETS),
        st.integers(0, 10),
        st.sampled_from(["S8", "c16", "bool", "int8", "uint64"]),
    ),
    st.tuples(
        st.just("kind"),
        st.sampled_from(TARGETS),
        st.sampled_from([*FIELDS, "Delay", "NIRGraph", "Bogus", ""]),
    ),
    st.tuples(st.just("delnode"), st.sampled_from(TARGETS)),
    st.tuples(
        st.just("edge"),
        st.integers(0, 13),
        st.sampled_from(["input", *TARGETS, "output", "nowhere"]),
    ),
)
BYTES = st.one_of(
    st.none(),
    st.tuples(st.just("truncate"), st.floats(0, 1)),
    st.tuples(st.just("flip"), st.lists(st.integers(0, 1 << 20), max_size=8)),
)


def _mutate(f: h5py.File, m) -> None:
    nodes = f["node/nodes"]
    if m[0] == "delnode":
        del nodes[m[1]]
        return
    if m[0] == "edge":
        edges = f["node/edges"][()]
        i = m[1] % len(edges)
        edges[i, 1] = m[2].encode()
        del f["node/edges"]
        f["node"].create_dataset("edges", data=edges)
        return
    if m[1] not in nodes:
        return
    g = nodes[m[1]]
    if m[0] == "kind":
        del g["type"]
        g.create_dataset("type", data=m[2], dtype=h5py.string_dtype())
        return
    keys = [k for k in g if k not in ("type", "metadata")]
    if not keys:
        return
    key = keys[m[2] % len(keys)]
    old = np.asarray(g[key][()])
    del g[key]
    if m[0] == "drop":
        return
    if m[0] == "poison":
        value = np.array(old.real if old.dtype.kind == "c" else old, dtype=np.float64)
        if value.size:
            value.reshape(-1)[0] = m[3]
        g.create_dataset(key, data=value)
    elif m[0] == "reshape":
        g.create_dataset(key, data=np.ones(tuple(m[3])))
    elif m[0] == "retype":
        g.create_dataset(key, data=np.zeros(max(old.size, 1)).astype(m[3]))


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(st.lists(MUTATION, min_size=1, max_size=3), BYTES)
@example([("reshape", "conv", 2, [0])], None)  # an empty 'groups' (found by CI, stop 20)
@example([("reshape", "conv", 0, [2, 0])], None)  # a bias of shape (2, 0)
def test_mutated_nir_converts_or_fails_cleanly(tmp_path, mutations, byte_mutation):
    path, out = tmp_path / "m.nir", tmp_path / "m.net"
    for p in (path, out, tmp_path / "m.report.json", tmp_path / "m.report.md"):
        p.unlink(missing_ok=True)
    nir.write(path, tiny_graph())
    with h5py.File(path, "r+") as f:
        for m in mutations:
            try:
                _mutate(f, m)
            except (KeyError, ValueError, TypeError):  # h5py cannot make this mutation: skip it
                pass
    if byte_mutation is not None:
        data = bytearray(path.read_bytes())
        if byte_mutation[0] == "truncate":
            data = data[: int(len(data) * byte_mutation[1])]
        else:
            for i in byte_mutation[1]:
                if data:
                    data[i % len(data)] ^= 0xFF
        path.write_bytes(bytes(data))
    try:
        convert_nir(path, out, steps=4)
    except Snn2LoihiError:
        assert not out.exists(), "a failed convert must not leave a .net"
        return
    read_network(out)  # what was written is a valid NetX file


def test_the_unmutated_graph_converts(tmp_path):
    nir.write(tmp_path / "m.nir", tiny_graph())
    report = convert_nir(tmp_path / "m.nir", tmp_path / "m.net", steps=4)
    kinds = ["input", "conv", "flatten", "dense_rec", "dense"]
    assert [r["type"] for r in report["layers"]] == kinds
