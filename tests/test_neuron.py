"""Loihi CUBA neuron step: exact integers for decay, wrap, saturation, strict threshold, reset."""

from __future__ import annotations

import math

import pytest
import torch

from snn2loihi.loihi import DECAY_UNITY
from snn2loihi.neuron import cuba_step, decay, wrap_int32, wrap_signed
from snn2loihi.schema import CubaNeuron


def t(*values):
    return torch.tensor(values, dtype=torch.int64)


def run(neuron, inputs, bias=0):
    u = torch.zeros(1, dtype=torch.int64)
    v = torch.zeros_like(u)
    out = []
    for a in inputs:
        s, u, v = cuba_step(t(a), u, v, bias, neuron)
        out.append((bool(s[0]), int(u[0]), int(v[0])))
    return out


def test_if_neuron_strict_threshold_and_reset_to_zero():
    neuron = CubaNeuron.integrate_and_fire(vth_mant=10)  # threshold 640 in state units
    assert run(neuron, [5, 5, 5, 5]) == [
        (False, 320, 320),
        (False, 320, 640),  # v == threshold: no spike (strictly greater)
        (True, 320, 0),  # 960 > 640: spike, v reset to 0, u kept
        (False, 320, 320),
    ]


def test_bias_is_added_every_step_shifted_by_6():
    neuron = CubaNeuron.integrate_and_fire(vth_mant=1000)
    assert [v for _, _, v in run(neuron, [0, 0, 0], bias=3)] == [192, 384, 576]


def test_decay_rounds_toward_zero():
    assert decay(t(5, -5, 4097, -4097), 2048).tolist() == [2, -2, 2048, -2048]
    assert decay(t(123456), 4096).tolist() == [0]
    assert decay(t(-123456), 0).tolist() == [-123456]


def test_leaky_current_and_voltage():
    neuron = CubaNeuron(i_decay=1024, v_decay=2048, vth_mant=100000)
    # u1 = 640; v1 = 640. u2 = rtz(640*3072/4096)=480; v2 = rtz(640*2048/4096) + 480 = 800
    assert run(neuron, [10, 0]) == [(False, 640, 640), (False, 480, 800)]


def test_u_wraps_as_lava_codes_it():
    neuron = CubaNeuron(i_decay=0, v_decay=4096, vth_mant=2**17 - 1)
    u0 = t(2**23 - 64)
    v0 = torch.zeros(1, dtype=torch.int64)
    _, u, _ = cuba_step(t(2), u0, v0, 0, neuron)  # 2^23 + 64 > 2^23 -> subtract 2^24
    assert int(u[0]) == -(2**23) + 64
    _, u, _ = cuba_step(t(1), u0, v0, 0, neuron)  # exactly 2^23 is not > 2^23: kept
    assert int(u[0]) == 2**23
    _, u, _ = cuba_step(t(-1), t(-(2**23) + 64), v0, 0, neuron)  # -2^23 <= -2^23 -> add 2^24
    assert int(u[0]) == 2**23


def test_v_saturates_at_24_bits():
    neuron = CubaNeuron(i_decay=4096, v_decay=0, vth_mant=2**17 - 1)
    s, _, v = cuba_step(t(-100000), t(0), t(-(2**23) + 5), 0, neuron)
    assert int(v[0]) == -(2**23 - 1) and not bool(s[0])
    s, _, v = cuba_step(t(1000), t(0), t(2**23 - 10), 0, neuron)
    assert bool(s[0]) and int(v[0]) == 0  # clipped to 2^23-1 > threshold 2^23-64: spikes, resets


def test_int32_overflow_of_shifted_input_wraps_like_numpy():
    assert wrap_int32(t(2**31, -(2**31) - 1)).tolist() == [-(2**31), 2**31 - 1]
    assert wrap_signed(t(2**23, -(2**23) - 1, 5), 24).tolist() == [-(2**23), 2**23 - 1, 5]
    neuron = CubaNeuron(i_decay=4096, v_decay=4096, vth_mant=0)
    _, u, _ = cuba_step(t(2**25), t(0), t(0), 0, neuron)  # 2^25 << 6 = 2^31 -> -2^31 in int32
    assert int(u[0]) == -(2**31) + 2**24  # then Lava's wrap adds 2^24 once


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_same_integers_on_gpu():
    neuron = CubaNeuron(i_decay=1000, v_decay=300, vth_mant=50)
    g = torch.Generator().manual_seed(0)
    a = torch.randint(-3000, 3000, (64, 20), generator=g)
    states = {}
    for dev in ("cpu", "cuda"):
        u = torch.zeros(64, dtype=torch.int64, device=dev)
        v = torch.zeros_like(u)
        trace = []
        for step in range(20):
            s, u, v = cuba_step(a[:, step].to(dev), u, v, 7, neuron)
            trace.append(torch.stack([s.long(), u, v]).cpu())
        states[dev] = torch.stack(trace)
    assert torch.equal(states["cpu"], states["cuda"])


@pytest.mark.parametrize(
    "neuron", [CubaNeuron(4096, 0, 40), CubaNeuron(1000, 300, 50), CubaNeuron(0, 77, 3000)]
)
def test_int32_safe_path_equals_general_path(neuron):
    """Within |a| <= INT32_SAFE_INPUT the int32 fast path gives the int64 path's exact integers."""
    from snn2loihi.loihi import INT32_SAFE_INPUT

    g = torch.Generator().manual_seed(1)
    a = torch.randint(-INT32_SAFE_INPUT, INT32_SAFE_INPUT + 1, (30, 500), generator=g)
    bias = torch.randint(-4096, 4096, (500,), generator=g)
    u64 = v64 = torch.zeros(500, dtype=torch.int64)
    u32 = v32 = torch.zeros(500, dtype=torch.int32)
    for step in range(30):
        s64, u64, v64 = cuba_step(a[step], u64, v64, bias, neuron)
        s32, u32, v32 = cuba_step(a[step].int(), u32, v32, bias.int(), neuron, int32_safe=True)
        assert (
            torch.equal(s64, s32) and torch.equal(u64, u32.long()) and torch.equal(v64, v32.long())
        )


def test_int32_safe_bound_is_strict_because_of_lavas_u_wrap():
    """At a = -2^17, a << 6 = -2^23 and Lava's wrap turns u into +2^23: the fast path (u = a << 6)
    must not see it, so INT32_SAFE_INPUT stops one short; at +-INT32_SAFE_INPUT both paths agree."""
    from snn2loihi.loihi import INT32_SAFE_INPUT

    neuron = CubaNeuron(i_decay=4096, v_decay=0, vth_mant=2**17 - 1)
    assert INT32_SAFE_INPUT == 2**17 - 1
    assert run(neuron, [-(2**17)])[0][1] == 2**23
    edge = t(INT32_SAFE_INPUT, -INT32_SAFE_INPUT, 0)
    zero = torch.zeros(3, dtype=torch.int64)
    general = cuba_step(edge, zero, zero, 5, neuron)
    fast = cuba_step(edge.int(), zero.int(), zero.int(), 5, neuron, int32_safe=True)
    assert all(torch.equal(g.long(), f.long()) for g, f in zip(general, fast, strict=True))
    assert fast[1].tolist() == [INT32_SAFE_INPUT << 6, -INT32_SAFE_INPUT << 6, 0]


@pytest.mark.parametrize("int32_safe", [False, True])
def test_integrate_equals_a_loop_of_cuba_steps_across_cpu_blocks(int32_safe):
    """``integrate`` (blocked time loop, broadcast input, recorded state) == plain cuba_step loop."""
    from snn2loihi.neuron_loop import NEURON_BLOCK, integrate

    neuron = CubaNeuron(i_decay=4096, v_decay=0, vth_mant=300)
    g = torch.Generator().manual_seed(3)
    side = math.isqrt(NEURON_BLOCK // 16)
    n, steps, shape = 11, 5, (4, side, side)  # 4 samples per block: three blocks
    assert NEURON_BLOCK // (4 * side * side) == 4
    a = torch.randint(-20_000, 40_000, (n, steps, *shape), generator=g)
    bias = torch.randint(-50, 50, (4, 1, 1), generator=g)
    dtype = torch.int32 if int32_safe else torch.int64
    spikes, u_tr, v_tr = integrate(
        a.to(dtype), bias.to(dtype), neuron, int32_safe=int32_safe, record_state=True
    )
    u = v = torch.zeros((n, *shape), dtype=torch.int64)
    for step in range(steps):
        s, u, v = cuba_step(a[:, step], u, v, bias, neuron)
        assert torch.equal(spikes[:, step], s)
        assert torch.equal(u_tr[:, step].long(), u) and torch.equal(v_tr[:, step].long(), v)
    assert spikes.any() and not spikes.all()
    # unrecorded, the steps whose u nobody reads skip making it (a enters v in one operation)
    plain = integrate(a.to(dtype), bias.to(dtype), neuron, int32_safe=int32_safe)
    assert torch.equal(plain[0], spikes) and plain[1] is None
    # one current repeated over T as a broadcast view, as training's layer 0 passes it
    const = a[:, 0].to(dtype).unsqueeze(1).expand(n, steps, *shape)
    assert torch.equal(
        integrate(const, bias.to(dtype), neuron, int32_safe=int32_safe)[0],
        integrate(const.contiguous(), bias.to(dtype), neuron, int32_safe=int32_safe)[0],
    )


@pytest.mark.parametrize("steps", [5, 300])
def test_integrate_counting_counts_every_spike_where_it_lies(steps):
    """Counts fused into the time loop equal the spikes summed over T, across CPU blocks and
    for channels-last and broadcast input; uint8 below 256 steps, int32 from 256 (no wrap)."""
    from snn2loihi.neuron_loop import integrate, integrate_counting

    neuron = CubaNeuron(i_decay=4096, v_decay=0, vth_mant=10)
    g = torch.Generator().manual_seed(5)
    n, shape = 9, (4, 64, 32) if steps < 256 else (3, 4, 5)  # several CPU blocks at 5 steps
    a = torch.randint(-2_000, 40_000, (n, steps, *shape), generator=g, dtype=torch.int32)
    a[0] = 40_000  # fires at every step: 300 spikes wrap uint8
    bias = torch.randint(-50, 50, (shape[0], 1, 1), generator=g, dtype=torch.int32)
    cl = a.reshape(n * steps, *shape).contiguous(memory_format=torch.channels_last)
    held = a[:, :1].expand(n, steps, *shape)
    for x in (a, cl.reshape(n, steps, *shape), held):
        ref = integrate(x, bias, neuron, int32_safe=True)[0]
        spikes, counts = integrate_counting(x, bias, neuron, int32_safe=True)
        assert torch.equal(spikes, ref)
        assert counts.dtype == (torch.uint8 if steps < 256 else torch.int32)
        assert torch.equal(counts.long(), ref.sum(1))
    assert int(counts.max()) == steps and ref.any() and not ref.all()


@pytest.mark.parametrize("bias_shape", [(4, 1, 1), (4, 5, 6), ()])
def test_integrate_steps_channels_last_input_in_place_with_the_same_values(bias_shape):
    """Input channels-last in memory (as a channels-last conv leaves it) is stepped over the
    (N, T, H, W, C) view: spikes, u and v equal the contiguous run's and keep its layout."""
    from snn2loihi.neuron_loop import channels_last_order, integrate

    neuron = CubaNeuron(i_decay=1024, v_decay=128, vth_mant=90)
    g = torch.Generator().manual_seed(4)
    n, steps, shape = 3, 6, (4, 5, 6)
    a = torch.randint(-3_000, 9_000, (n, steps, *shape), generator=g, dtype=torch.int32)
    bias = torch.randint(-50, 50, bias_shape, generator=g, dtype=torch.int32)
    flat = a.reshape(n * steps, *shape).contiguous(memory_format=torch.channels_last)
    a_cl = flat.reshape(n, steps, *shape)
    assert channels_last_order(a_cl) and not channels_last_order(a)
    ref = integrate(a, bias, neuron, int32_safe=True, record_state=True)
    got = integrate(a_cl, bias, neuron, int32_safe=True, record_state=True)
    for r, t in zip(ref, got, strict=True):
        assert torch.equal(r, t) and channels_last_order(t)
    assert ref[0].any() and not ref[0].all()


@pytest.mark.parametrize("decay_const", [1, 7, 409, 2048, 4000, 4095])
def test_int32_decay_equals_the_int64_reference_over_the_whole_range(decay_const):
    """The int32 decay (|x| split at 2^12, no int64) rounds toward zero exactly as Lava does,
    for random values over all of int32 and the edges (+-(2^31 - 1), +-4095, +-4096)."""
    g = torch.Generator().manual_seed(decay_const)
    x = torch.randint(-(2**31) + 1, 2**31, (200_000,), generator=g, dtype=torch.int64)
    edges = [2**31 - 1, -(2**31) + 1, 0, 1, -1, 4095, -4095, 4096, -4096, 2**23, -(2**23)]
    x = torch.cat([x, torch.tensor(edges)])
    ref = wrap_int32(decay(x, decay_const))  # the int64 path
    got = decay(x.to(torch.int32), decay_const)
    assert got.dtype == torch.int32
    assert torch.equal(got.to(torch.int64), ref)


def _lava_lif_bit_acc(a, u, v, bias_mant, neuron):
    """Lava 0.10's PyLifModelBitAcc step, transcribed in numpy (lava/proc/lif/models.py:
    subthr_dynamics, spiking_activation, reset_voltage): the oracle of the branch-free step."""
    import numpy as np

    max_uv = 2**23
    decayed = np.int64(u) * (4096 - neuron.i_decay)
    decayed = np.int32(np.sign(decayed) * np.right_shift(np.abs(decayed), 12))
    decayed = decayed + np.left_shift(a.astype(np.int32), 6)
    wrapped = np.where(decayed > max_uv, decayed - 2 * max_uv, decayed)
    u = np.where(wrapped <= -max_uv, decayed + 2 * max_uv, wrapped).astype(np.int32)
    dv = np.int64(v) * (4096 - neuron.v_decay)
    dv = np.int32(np.sign(dv) * np.right_shift(np.abs(dv), 12))
    v = np.clip(dv + u + np.left_shift(bias_mant.astype(np.int32), 6), -max_uv + 1, max_uv - 1)
    s = v > (neuron.vth_mant << 6)
    v = np.where(s, 0, v).astype(np.int32)
    return s, u, v


@pytest.mark.parametrize(
    "neuron",
    [
        CubaNeuron(4096, 0, 1),
        CubaNeuron(1024, 128, 80),
        CubaNeuron(1, 4095, 2**17 - 1),
        CubaNeuron(0, 0, 0),
        CubaNeuron(2048, 7, 5000),
        CubaNeuron(255, 255, 300),
    ],
)
def test_branch_free_step_equals_lavas_numpy_code(neuron):
    """Random and extreme inputs, states and biases, 40 steps: the int64 path equals Lava's numpy
    code everywhere (wraps, saturation, rounding); the int32 path wherever it is allowed."""
    import numpy as np

    from snn2loihi.loihi import INT32_SAFE_INPUT

    rng = np.random.default_rng(7)
    n = 4000
    edges = np.array([0, 1, -1, 2**17 - 1, -(2**17), 2**17, 2**25, -(2**25), 2**31 - 1, -(2**31)])
    bias = rng.integers(-(2**12), 2**12, n)
    u = rng.integers(-(2**23) + 1, 2**23 + 1, n).astype(np.int32)  # states anywhere in range
    v = rng.integers(-(2**23) + 1, 2**23, n).astype(np.int32)
    u[:4], v[:4] = [2**23, -(2**23) + 1, 0, -1], [2**23 - 1, -(2**23) + 1, 0, -1]
    ut, vt = torch.from_numpy(u.astype(np.int64)), torch.from_numpy(v.astype(np.int64))
    safe = [torch.from_numpy(u), torch.from_numpy(v)]
    for step in range(40):
        a = rng.integers(-(2**20), 2**20, n) if step % 2 else rng.integers(-(2**31), 2**31, n)
        a[: len(edges)] = np.roll(edges, step)
        s, u, v = _lava_lif_bit_acc(a, u, v, bias, neuron)
        st, ut, vt = cuba_step(torch.from_numpy(a), ut, vt, torch.from_numpy(bias), neuron)
        assert np.array_equal(st.numpy(), s), step
        assert np.array_equal(ut.numpy(), u) and np.array_equal(vt.numpy(), v), step
        small = np.clip(a, -INT32_SAFE_INPUT, INT32_SAFE_INPUT)
        ref = _lava_lif_bit_acc(small, safe[0].numpy(), safe[1].numpy(), bias, neuron)
        out = cuba_step(
            torch.from_numpy(small.astype(np.int32)),
            *safe,
            torch.from_numpy(bias.astype(np.int32)),
            neuron,
            int32_safe=True,
        )
        for got, want in zip(out, ref, strict=True):
            assert np.array_equal(got.numpy(), want), step
        safe = [out[1], out[2]]


@pytest.mark.parametrize("decay_const", [1, 128, 255, 256, 984, 1024, 2048, 3072, 4080])
def test_small_decay_equals_decay_on_every_24_bit_value(decay_const):
    """decay_small (6 or 7 ops) == decay (the int64 reference) for every |x| <= 2^23, for
    odd factors 1 to 255 and every power of two up to 2^11 (984 = 123 * 8, 4080 = 255 * 16)."""
    from snn2loihi.neuron import decay_small

    x = torch.arange(-(2**23), 2**23 + 1, dtype=torch.int32)
    keep = x.clone()
    got = decay_small(x, decay_const)
    assert got.dtype == torch.int32
    assert torch.equal(got.to(torch.int64), decay(x.to(torch.int64), decay_const))
    assert torch.equal(x, keep)  # the input is not written


def test_small_decay_split_takes_exactly_the_constants_with_a_small_odd_factor():
    """small_decay_split(d) = (odd, b) with d = odd * 2^(12 - b) and odd < 256 for every such
    d in 1..4095, None for the rest (0, 4096, e.g. 257 or 4095)."""
    from snn2loihi.neuron import SMALL_DECAY, small_decay_split

    for d in range(DECAY_UNITY + 1):
        split = small_decay_split(d)
        odd = d >> ((d & -d).bit_length() - 1) if d else 0
        if 0 < d < DECAY_UNITY and odd < SMALL_DECAY:
            assert split is not None and split[0] == odd and split[0] << (12 - split[1]) == d, d
        else:
            assert split is None, d
    assert small_decay_split(1024) == (1, 2) and small_decay_split(123) == (123, 12)


@pytest.mark.parametrize("i_decay", [0, 1, 100, 1024, 4095])
@pytest.mark.parametrize("steps", [1, 3, 40])
def test_u_range_proof_holds_and_is_tight(i_decay, steps):
    """Where u_stays_in_24_bits says so, the largest input held for every step keeps |u| <
    2^23 (Lava's wrap cannot fire); one unit more of input than the largest proven one reaches
    the bound's limit within a factor the proof gives away (the geometric sum's tail)."""
    from snn2loihi.neuron import u_stays_in_24_bits

    neuron = CubaNeuron(i_decay, 4096, 2**17 - 1)
    lo, hi = 0, 2**17  # the largest a_max the proof accepts, by bisection
    while lo < hi:
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if u_stays_in_24_bits(mid, steps, i_decay) else (lo, mid - 1)
    assert lo > 0
    for a_max in (lo, -lo):
        u = v = torch.zeros(1, dtype=torch.int64)
        peak = 0
        for _ in range(steps):
            _, u, v = cuba_step(torch.tensor([a_max]), u, v, 0, neuron)
            peak = max(peak, abs(int(u[0])))
        assert peak < 2**23
        # tight: the proven peak is at least what the geometric bound allows minus its tail
        r = 1 - i_decay / 4096
        reach = (lo << 6) * sum(r**k for k in range(steps))
        assert peak >= reach - steps and reach < 2**23 <= ((lo + 1) << 6) * min(
            steps, 4096 / i_decay if i_decay else steps
        )


def test_a_proven_input_bound_spares_the_scan_and_keeps_the_integers(monkeypatch):
    """integrate(input_bound=): a bound that proves u's wrap cannot fire skips scanning ``a``
    for its largest value; one that proves nothing falls back to the scan; same spikes and
    state either way."""
    from snn2loihi import neuron_loop as neuron_mod
    from snn2loihi.neuron import u_stays_in_24_bits
    from snn2loihi.neuron_loop import integrate

    neuron = CubaNeuron(i_decay=1024, v_decay=128, vth_mant=90)
    g = torch.Generator().manual_seed(6)
    a = torch.randint(-3_000, 9_000, (3, 6, 4, 5, 6), generator=g, dtype=torch.int32)
    bias = torch.randint(-50, 50, (4, 1, 1), generator=g, dtype=torch.int32)
    ref = integrate(a, bias, neuron, int32_safe=True, record_state=True)
    assert u_stays_in_24_bits(9_000, 6, 1024) and not u_stays_in_24_bits(2**17 - 1, 6, 1)
    scans = []
    real = neuron_mod.abs_max
    monkeypatch.setattr(neuron_mod, "abs_max", lambda t: scans.append(1) or real(t))
    got = integrate(a, bias, neuron, int32_safe=True, record_state=True, input_bound=9_000)
    assert scans == [] and all(torch.equal(r, t) for r, t in zip(ref, got, strict=True))
    wide = CubaNeuron(i_decay=1, v_decay=128, vth_mant=90)  # the bound proves nothing here
    ref = integrate(a, bias, wide, int32_safe=True, record_state=True)
    scans.clear()
    got = integrate(a, bias, wide, int32_safe=True, record_state=True, input_bound=2**17 - 1)
    assert scans == [1] and all(torch.equal(r, t) for r, t in zip(ref, got, strict=True))


@pytest.mark.parametrize(
    "neuron, amax, int32_safe",
    [
        (CubaNeuron(i_decay=4096, v_decay=0, vth_mant=300), 20_000, True),
        (CubaNeuron(i_decay=1024, v_decay=128, vth_mant=90), 3_000, True),
        (CubaNeuron(i_decay=700, v_decay=5, vth_mant=5000), 2**29, False),  # Lava's overflows
    ],
    ids=["if", "cuba", "int64"],
)
def test_neuron_group_stepped_in_chunks_equals_integrate(neuron, amax, int32_safe):
    """A NeuronGroup advanced through time-major chunks of any length gives integrate's spikes,
    u and v after every step, and each neuron's spike count, across CPU blocks of samples; an
    exact float32 input (as a float kernel leaves it) gives the same integers as int32."""
    from snn2loihi.deploy.neuron_group import NeuronGroup
    from snn2loihi.neuron_loop import NEURON_BLOCK, integrate

    g = torch.Generator().manual_seed(11)
    dtype = torch.int32 if int32_safe else torch.int64
    n, steps, m = 5, 11, NEURON_BLOCK // 2 - 7  # two samples per CPU block: three blocks
    a = torch.randint(-amax // 4, amax + 1, (n, steps, m), generator=g, dtype=dtype)
    a[0] = amax
    bias = torch.randint(-50, 50, (m,), generator=g)
    spikes, u, v = integrate(a, bias.to(dtype), neuron, int32_safe=int32_safe, record_state=True)
    inputs = [a.transpose(0, 1).contiguous()]  # time-major (T, n, m)
    if int32_safe:
        inputs.append(inputs[0].float())
    for x in inputs:
        for chunk in (1, 4, steps):
            group = NeuronGroup(n, bias, neuron, steps=steps, int32_safe=int32_safe,
                                input_bound=amax, count=True)  # fmt: skip
            parts = [group.advance(x[t : t + chunk], record=True) for t in range(0, steps, chunk)]
            got = [torch.cat([p[i] for p in parts]).transpose(0, 1) for i in range(3)]
            assert torch.equal(got[0].view(torch.bool), spikes), (x.dtype, chunk)
            assert torch.equal(got[1], u) and torch.equal(got[2], v)
            assert torch.equal(group.counts.long(), spikes.sum(1))
            plain = NeuronGroup(n, bias, neuron, steps=steps, int32_safe=int32_safe)
            again = torch.cat([plain.advance(x[t : t + chunk])[0] for t in range(0, steps, chunk)])
            assert torch.equal(again.transpose(0, 1).view(torch.bool), spikes)
            assert plain.counts is None
    assert spikes.any() and not spikes.all()
