"""The compiled neuron loop (``integrate(..., compiled=True)``: ``neuron._steps`` fused by
torch.compile) gives exactly the integers of the eager step, for every branch of the step: IF,
small and large decays, u's 24-bit wrap firing or provably not, the int64 path with Lava's int32
overflows, step counts that are not a multiple of the chunk, channels-last, broadcast and
single-sample inputs. Slow: each branch is compiled once (seconds to tens of seconds)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from snn2loihi.deploy.emulator import Emulator
from snn2loihi.loihi import INT32_SAFE_INPUT
from snn2loihi.neuron import cuba_step
from snn2loihi.neuron_loop import STEP_CHUNK, integrate, integrate_counting
from snn2loihi.schema import CubaNeuron
from snn2loihi.testing.netgen import GEOMETRY, SMALL, random_network

pytestmark = pytest.mark.slow

CASES = {
    # name: (neuron, input range, int32_safe)
    "if": (CubaNeuron(i_decay=4096, v_decay=0, vth_mant=300), 20_000, True),
    "cuba-small-decays": (CubaNeuron(i_decay=1024, v_decay=128, vth_mant=90), 3_000, True),
    # i_decay 1: u piles up past 2^23 and Lava's wrap fires; v_decay >= 256: the general decay
    "u-wraps": (CubaNeuron(i_decay=1, v_decay=3000, vth_mant=2**17 - 1), INT32_SAFE_INPUT, True),
    # beyond int32-safe input: int64 state, Lava's int32 overflows reproduced
    "int64": (CubaNeuron(i_decay=700, v_decay=5, vth_mant=5000), 2**29, False),
}


def _reference(a, bias, neuron):
    """The eager loop of cuba_step (int64): spikes (N, T, *shape), final u and v."""
    u = v = torch.zeros_like(a[:, 0], dtype=torch.int64)
    spikes = []
    for t in range(a.shape[1]):
        s, u, v = cuba_step(a[:, t].long(), u, v, bias.long(), neuron)
        spikes.append(s)
    return torch.stack(spikes, 1)


def _assert_counted(a, bias, neuron, int32_safe, ref):
    """integrate_counting, compiled and eager: the spikes ``ref`` and their exact counts, laid
    out as ``a``'s neurons."""
    for compiled in (True, False):
        spikes, counts = integrate_counting(a, bias, neuron, int32_safe=int32_safe,
                                            compiled=compiled)  # fmt: skip
        assert torch.equal(spikes, ref)
        assert counts.dtype == torch.uint8
        assert torch.equal(counts.long(), ref.sum(1))
        cl = a.ndim == 5 and a.stride(2) == 1
        assert counts.is_contiguous(
            memory_format=torch.channels_last if cl else torch.contiguous_format
        )


@pytest.mark.parametrize("case", sorted(CASES))
def test_compiled_integrate_equals_the_eager_steps(case):
    neuron, amax, int32_safe = CASES[case]
    g = torch.Generator().manual_seed(len(case))
    dtype = torch.int32 if int32_safe else torch.int64
    steps = 2 * STEP_CHUNK + 3  # two compiled chunks and an eager tail
    n, shape = 5, (3, 7, 6)
    a = torch.randint(-amax // 4, amax + 1, (n, steps, *shape), generator=g)
    a[0] = amax  # the extreme input every step
    a[1, :, 0] = -amax
    bias = torch.randint(-50, 50, (3, 1, 1), generator=g)
    ref = _reference(a, bias, neuron)
    got, u_tr, v_tr = integrate(a.to(dtype), bias.to(dtype), neuron, int32_safe=int32_safe,
                                compiled=True)  # fmt: skip
    assert u_tr is None and v_tr is None
    assert torch.equal(got, ref)
    assert ref.any() and not ref.all()
    _assert_counted(a.to(dtype), bias.to(dtype), neuron, int32_safe, ref)
    # channels-last memory, one current broadcast over T, one sample, a 1-D layer
    cl = a.to(dtype).reshape(n * steps, *shape).contiguous(memory_format=torch.channels_last)
    got_cl = integrate(cl.reshape(n, steps, *shape), bias.to(dtype), neuron,
                       int32_safe=int32_safe, compiled=True)[0]  # fmt: skip
    assert torch.equal(got_cl, ref)
    _assert_counted(cl.reshape(n, steps, *shape), bias.to(dtype), neuron, int32_safe, ref)
    held = a[:, :1].expand(n, steps, *shape)
    held_ref = _reference(held, bias, neuron)
    assert torch.equal(
        integrate(held.to(dtype), bias.to(dtype), neuron, int32_safe=int32_safe, compiled=True)[0],
        held_ref,
    )
    _assert_counted(held.to(dtype), bias.to(dtype), neuron, int32_safe, held_ref)
    one = a[2:3].flatten(2).to(dtype)
    assert torch.equal(
        integrate(one, bias.flatten()[:1].to(dtype), neuron, int32_safe=int32_safe,
                  compiled=True)[0],
        _reference(one, bias.flatten()[:1], neuron),
    )  # fmt: skip


@pytest.mark.parametrize("spec", [SMALL, GEOMETRY], ids=["small", "geometry"])
def test_compiled_emulator_gives_every_spike_of_the_eager_one(spec):
    """Whole networks (binary and graded input): every layer's spikes equal."""
    net = random_network(spec, seed=3)
    rng = np.random.default_rng(3)
    for x in (
        (rng.random((9, 7, *spec.input_shape)) < 0.3).astype(np.uint8),
        rng.integers(0, 256, (4, 5, *spec.input_shape)),
    ):
        eager = Emulator(net).run(x)
        compiled = Emulator(net, compiled=True).run(x)
        for e, c in zip(eager.layers, compiled.layers, strict=True):
            assert torch.equal(e.spikes, c.spikes), e.index


def test_a_failed_compile_falls_back_to_the_eager_steps(monkeypatch, caplog):
    """No C++ compiler (or any backend failure): one warning, then the same integers eagerly."""
    from torch._dynamo.exc import BackendCompilerFailed

    from snn2loihi import neuron_compile
    from snn2loihi.deploy.neuron_group import NeuronGroup

    def broken(*args):
        raise BackendCompilerFailed("inductor", RuntimeError("no compiler found: c++"), None)

    monkeypatch.setattr(neuron_compile, "_COMPILED", {"steps": broken, "steps_time_major": broken})
    neuron, amax, _ = CASES["cuba-small-decays"]
    g = torch.Generator().manual_seed(9)
    a = torch.randint(-amax // 4, amax + 1, (3, 8, 40), generator=g)
    bias = torch.randint(-50, 50, (40,), generator=g)
    ref = _reference(a, bias, neuron)
    with caplog.at_level("WARNING", logger="snn2loihi.neuron_compile"):
        got = integrate(a.int(), bias.int(), neuron, int32_safe=True, compiled=True)[0]
        again = integrate(a.int(), bias.int(), neuron, int32_safe=True, compiled=True)[0]
        group = NeuronGroup(3, bias, neuron, steps=8, int32_safe=True, compiled=True)
        a_tm = a.int().transpose(0, 1).contiguous()
        chunked = torch.cat([group.advance(a_tm[t : t + STEP_CHUNK])[0] for t in (0, 4)])
    assert torch.equal(got, ref) and torch.equal(again, got)
    assert torch.equal(chunked.transpose(0, 1).view(torch.bool), ref)
    assert [r.message for r in caplog.records].count(
        "compiling the neuron loop failed (RuntimeError: no compiler found: c++); running it "
        "uncompiled"
    ) == 1


@pytest.mark.parametrize("case", sorted(CASES))
def test_compiled_neuron_group_equals_the_eager_steps(case):
    """NeuronGroup.advance compiled (one fused kernel per STEP_CHUNK steps, counts fused in,
    float32 exact input converted in the kernel) gives the spikes, counts and final state of
    the eager steps, chunk by chunk or all steps in one call; a shorter tail runs eagerly."""
    from snn2loihi.deploy.neuron_group import NeuronGroup

    neuron, amax, int32_safe = CASES[case]
    g = torch.Generator().manual_seed(len(case) + 1)
    dtype = torch.int32 if int32_safe else torch.int64
    steps, n, m = 2 * STEP_CHUNK + 3, 6, 333
    a = torch.randint(-amax // 4, amax + 1, (steps, n, m), generator=g, dtype=dtype)
    a[:, 0] = amax
    bias = torch.randint(-50, 50, (m,), generator=g)
    ref = _reference(a.transpose(0, 1), bias, neuron)
    for x, chunk in ((a, STEP_CHUNK), (a.float(), steps)) if int32_safe else ((a, steps),):
        # chunks of STEP_CHUNK steps and a shorter tail, or all steps in one call
        groups = [NeuronGroup(n, bias, neuron, steps=steps, int32_safe=int32_safe,
                              input_bound=amax, compiled=c, count=True) for c in (True, False)]  # fmt: skip
        outs = [
            torch.cat([grp.advance(x[t : t + chunk])[0] for t in range(0, steps, chunk)])
            for grp in groups
        ]
        assert torch.equal(outs[0].transpose(0, 1).view(torch.bool), ref)
        assert torch.equal(outs[0], outs[1])
        assert torch.equal(groups[0].counts, groups[1].counts)
        assert torch.equal(groups[0].u, groups[1].u) and torch.equal(groups[0].v, groups[1].v)
    assert ref.any() and not ref.all()


def test_one_compiled_kernel_serves_every_layer_shape():
    """The compiled chunk kernel takes each layer's input detached from the conv output it is
    cut from, so its guards do not follow that tensor's shape: three conv layers of different
    shapes share one compiled variant (float32 input), the dense readout a second (integer
    input); and the per-process limit on variants is raised above dynamo's 8, past which it
    would run every further one uncompiled."""
    from dataclasses import replace

    from torch._dynamo.utils import counters

    from snn2loihi.neuron_compile import RECOMPILE_LIMIT
    from snn2loihi.testing.netgen import CIFAR

    torch._dynamo.reset()  # no variant left from the tests before
    net = random_network(replace(CIFAR, weight_range=(-128, 127)), seed=2)
    x = (np.random.default_rng(1).random((8, 8, *CIFAR.input_shape)) < 0.3).astype(np.uint8)
    counters.clear()
    Emulator(net, compiled=True).run(x)
    assert len({ly.shape for _, ly in net.synaptic_layers}) == 4
    assert counters["stats"]["unique_graphs"] == 2
    assert torch._dynamo.config.recompile_limit >= RECOMPILE_LIMIT
