"""The int8 synapse kernel (im2col + int8 x int8 -> int32 GEMM): exact against int64 references
for random and adversarial weights, every conv geometry, block kernels and Lava's dense weight
processing; and the recorded rule that picks it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_synapse import _conv_ref, _dense_ref

from snn2loihi import int8_gemm
from snn2loihi.synapse import (
    ConvGeometry,
    IntegerSynapse,
    choose_kernel,
    dense_weights_as_lava,
    expand_blocks,
)


def _wrap24(x: np.ndarray) -> np.ndarray:
    return ((x + 2**23) % 2**24) - 2**23


def _geometries(rng, n):
    for _ in range(n):
        groups = int(rng.integers(1, 4))
        cin_g, cout_g = int(rng.integers(8, 33)), int(rng.integers(1, 9))
        yield (
            groups,
            cin_g,
            cout_g * groups,
            tuple(int(k) for k in rng.integers(1, 4, 2)),
            ConvGeometry(
                tuple(int(s) for s in rng.integers(1, 4, 2)),
                tuple(int(p) for p in rng.integers(0, 3, 2)),
                tuple(int(d) for d in rng.integers(1, 3, 2)),
                groups,
            ),
        )


def _needs_onednn(kernel: str) -> None:
    if kernel == "int8-onednn" and not int8_gemm.onednn_conv_exact():
        pytest.skip("oneDNN's int8 convolution is not exact (or absent) on this CPU")


@pytest.mark.parametrize("kernel", ["int8", "int8-onednn"])
@pytest.mark.parametrize("weights", ["random", "adversarial", "even"])
def test_int8_conv_equals_int64_reference(weights, kernel):
    """Random geometries (stride, padding, dilation, groups): the int8 kernel (fan-in >= 64)
    or oneDNN's int8 convolution (any fan-in) is chosen and its integers equal the int64
    cross-correlation (wrapped to 24 bits)."""
    _needs_onednn(kernel)
    onednn = kernel == "int8-onednn"
    rng = np.random.default_rng({"random": 0, "adversarial": 1, "even": 2}[weights])
    checked = 0
    for groups, cin_g, cout, (kh, kw), geom in _geometries(rng, 12):
        shape = (cout, cin_g, kh, kw)
        if weights == "random":
            w = rng.integers(-128, 128, size=shape)
        elif weights == "adversarial":  # every weight at an int8 extreme
            w = np.where(rng.random(shape) < 0.5, -128, 127)
        else:  # even weights up to 254: int8 after the common factor 2
            w = 2 * rng.integers(-128, 128, size=shape)
        if cin_g * kh * kw < int8_gemm.INT8_MIN_FANIN and not onednn:
            continue
        h, wd = (int(v) for v in rng.integers(7, 15, 2))
        dense_spikes = weights == "adversarial"  # every input at its maximum (1)
        x = (rng.random((3, cin_g * groups, h, wd)) < (1.0 if dense_spikes else 0.4)).astype(
            np.int64
        )
        if (h + 2 * geom.padding[0] - geom.dilation[0] * (kh - 1)) < 1 or (
            wd + 2 * geom.padding[1] - geom.dilation[1] * (kw - 1)
        ) < 1:
            continue
        syn = IntegerSynapse("conv", w, input_max=1, geometry=geom, onednn=onednn)
        assert syn.kernel == kernel
        got = syn(torch.as_tensor(x).bool())
        assert got.dtype in (torch.int32, torch.int64)
        np.testing.assert_array_equal(got.numpy(), _wrap24(_conv_ref(x, w, geom)))
        checked += 1
    assert checked >= 4


@pytest.mark.parametrize("kernel", ["int8", "int8-onednn"])
@pytest.mark.parametrize("p", [2, 3])
def test_int8_block_kernel_sum_pools_spikes(p, kernel):
    """Average pooling folded into a conv (a block kernel) runs as int8 sum pooling + the
    compact kernel; odd input sizes drop the trailing partial block as the conv does."""
    _needs_onednn(kernel)
    rng = np.random.default_rng(p)
    compact = rng.integers(-128, 128, size=(16, 24, 3, 3))
    geom = ConvGeometry((p, p), (p, p), (1, 1), 1)
    syn = IntegerSynapse(
        "conv", compact, input_max=1, geometry=geom, block=p, onednn=kernel == "int8-onednn"
    )
    assert syn.kernel == kernel and syn.pool == p
    x = (rng.random((4, 24, 4 * p + 1, 5 * p)) < 0.5).astype(np.int64)
    full = expand_blocks(torch.as_tensor(compact), p).numpy()
    np.testing.assert_array_equal(
        syn(torch.as_tensor(x)).numpy(), _wrap24(_conv_ref(x, full, geom))
    )


@pytest.mark.parametrize("kernel", ["int8", "int8-onednn"])
def test_int8_conv_output_wraps_to_24_bits(kernel):
    """A sum beyond 2^23 (reachable with int8 operands and a large fan-in) wraps as on Loihi."""
    _needs_onednn(kernel)
    w = np.full((2, 8192, 3, 3), 127)
    w[1] = -128
    geom = ConvGeometry((1, 1), (0, 0), (1, 1), 1)
    syn = IntegerSynapse("conv", w, input_max=1, geometry=geom, onednn=kernel == "int8-onednn")
    assert syn.kernel == kernel
    x = np.ones((1, 8192, 3, 3), dtype=np.int64)
    got = syn(torch.as_tensor(x)).numpy().ravel()
    sums = np.array([127 * 8192 * 9, -128 * 8192 * 9])
    assert abs(sums).min() >= 2**23
    assert list(got) == list(_wrap24(sums))


def test_onednn_conv_takes_graded_pixels_and_bounds():
    """Graded 0..255 input (every pixel at 255 in one sample) on oneDNN's int8 convolution, in
    channels-last and contiguous memory; sums of 2^24 or more keep the other kernels."""
    _needs_onednn("int8-onednn")
    rng = np.random.default_rng(11)
    geom = ConvGeometry((1, 2), (1, 0), (1, 1), 1)
    w = rng.integers(-128, 128, size=(12, 5, 3, 3))
    w[0] = -128
    x = rng.integers(0, 256, size=(4, 5, 9, 8))
    x[0] = 255
    syn = IntegerSynapse("conv", w, input_max=255, geometry=geom)
    assert syn.kernel == "int8-onednn"
    expected = _wrap24(_conv_ref(x, w, geom))
    xt = torch.as_tensor(x)
    np.testing.assert_array_equal(syn(xt).numpy(), expected)
    cl = xt.to(torch.uint8).contiguous(memory_format=torch.channels_last)
    np.testing.assert_array_equal(syn(cl).numpy(), expected)
    big = np.full((2, 600, 3, 3), -128)  # 600 * 9 * 128 * 255 >= 2^24
    assert IntegerSynapse("conv", big, input_max=255, geometry=geom).kernel != "int8-onednn"


@pytest.mark.parametrize(
    "input_hw, pool, expected",
    [
        ((2, 2), 1, "int8"),  # 2x2 outputs: im2col + _int_mm
        ((4, 4), 2, "int8"),  # a 2x2 block kernel on 4x4: 2x2 outputs
        ((3, 2), 1, "int8-onednn"),  # 6 outputs
        ((4, 4), 1, "int8-onednn"),
        (None, 1, "int8-onednn"),  # size unknown: oneDNN
    ],
)
def test_tiny_conv_outputs_take_the_im2col_kernel(input_hw, pool, expected):
    """Convs whose outputs have fewer than ONEDNN_MIN_OUTPUT positions take the int8 im2col
    kernel (measured faster there), others oneDNN's; both give the reference integers."""
    _needs_onednn("int8-onednn")
    rng = np.random.default_rng(12)
    w = rng.integers(-128, 128, size=(24, 16, 3, 3))
    geom = ConvGeometry((pool, pool), (pool, pool), (1, 1), 1)
    syn = IntegerSynapse("conv", w, input_max=1, geometry=geom, block=pool, input_hw=input_hw)
    assert syn.kernel == expected
    h, wd = input_hw or (5, 3)
    x = rng.integers(0, 2, size=(7, 16, h, wd))
    ref = _wrap24(_conv_ref(x, expand_blocks(torch.as_tensor(w), pool).numpy(), geom))
    np.testing.assert_array_equal(syn(torch.as_tensor(x).bool()).numpy(), ref)
    if input_hw is not None:
        assert syn.output_positions() == ref.shape[2] * ref.shape[3]


@pytest.mark.parametrize(
    "frames, expected",
    [(None, "int8-onednn"), (1, "int8"), (2, "int8-onednn")],
    ids=["many-uses", "once-too-few-rows", "once-enough-rows"],
)
def test_a_one_shot_conv_takes_onednn_only_where_its_prepacking_pays_back(frames, expected):
    """A synapse applied once to a known number of frames takes oneDNN's kernel only where its
    GEMM has a row (frame x output position) per ONEDNN_PREPACK_WEIGHTS_PER_ROW weights:
    128 x 128 x 3 x 3 = 147,456 weights over 16 x 16 outputs need 288 rows, which one frame
    (256 rows) misses and two (512) reach. Without ``frames`` (the emulator applies a synapse
    many times) oneDNN is taken. The same integers either way."""
    _needs_onednn("int8-onednn")
    rng = np.random.default_rng(13)
    w = rng.integers(-128, 128, size=(128, 128, 3, 3))
    assert int8_gemm.ONEDNN_PREPACK_WEIGHTS_PER_ROW == 512  # the numbers above
    geom = ConvGeometry((1, 1), (1, 1), (1, 1), 1)
    syn = IntegerSynapse("conv", w, input_max=1, geometry=geom, input_hw=(16, 16), frames=frames)
    assert syn.kernel == expected
    x = rng.integers(0, 2, size=(frames or 3, 128, 16, 16))
    np.testing.assert_array_equal(
        syn(torch.as_tensor(x).bool()).numpy(), _wrap24(_conv_ref(x, w, geom))
    )


def test_onednn_self_check_refuses_a_saturating_cpu(monkeypatch):
    """A CPU that sums u8 x s8 pairs in int16 with saturation (no VNNI/AMX) fails the
    worst-case self-check, so the rule never picks oneDNN there."""
    real = int8_gemm.conv2d_onednn

    def saturating(x, packed, geometry):  # what int16 pair sums would give: clipped results
        return real(x, packed, geometry).clamp(-(2**15), 2**15 - 1)

    int8_gemm.onednn_conv_exact.cache_clear()
    monkeypatch.setattr(int8_gemm, "conv2d_onednn", saturating)
    try:
        assert int8_gemm.onednn_conv_exact() is False
    finally:
        int8_gemm.onednn_conv_exact.cache_clear()


@pytest.mark.parametrize("scale", [1, 2, 64], ids=["int8-range", "even-254", "shifted-up-by-lava"])
def test_int8_dense_follows_lavas_weight_processing(scale):
    rng = np.random.default_rng(scale)
    w = rng.integers(-128 // scale if scale > 2 else -128, 128 // scale if scale > 2 else 128,
                     size=(37, 300)) * (scale if scale <= 2 else 1)  # fmt: skip
    syn = IntegerSynapse("dense", w, input_max=1)
    assert syn.kernel == "int8"
    x = (rng.random((9, 300)) < 0.5).astype(np.int64)
    w_eff, exp = dense_weights_as_lava(w)
    np.testing.assert_array_equal(syn(torch.as_tensor(x)).numpy(), _dense_ref(w_eff, exp, x))


@pytest.mark.parametrize("kind", ["conv", "dense"])
@pytest.mark.parametrize(
    "largest,signed,limbs", [(255, False, 2), (2**16, True, 3), (2**14 - 1, True, 2)]
)
def test_graded_and_signed_inputs_run_as_int8_limbs(kind, largest, signed, limbs):
    """Graded 0..255 pixels and signed sigma-delta messages: split into signed 7-bit limbs,
    one int8 GEMM over all limbs, recombined exactly (every input at its extreme included)."""
    rng = np.random.default_rng(largest)
    if kind == "conv":
        geom = ConvGeometry((1, 1), (1, 1), (1, 1), 1)
        w = rng.integers(-128, 128, size=(8, 16, 3, 3))
        x = rng.integers(-largest if signed else 0, largest + 1, size=(3, 16, 6, 6))
        x[0] = largest  # adversarial: every input at its maximum
        syn = IntegerSynapse(
            "conv", w, input_max=largest, geometry=geom, signed=signed, onednn=False
        )
        expected = _wrap24(_conv_ref(x, w, geom))
    else:
        w = rng.integers(-128, 128, size=(12, 200))
        x = rng.integers(-largest if signed else 0, largest + 1, size=(5, 200))
        x[0] = -largest if signed else largest
        syn = IntegerSynapse("dense", w, input_max=largest, signed=signed)
        w_eff, exp = dense_weights_as_lava(w)
        expected = _dense_ref(w_eff, exp, x)
    assert syn.kernel == "int8-limbs" and syn.int8_limbs == limbs
    np.testing.assert_array_equal(syn(torch.as_tensor(x)).numpy(), expected)


def test_operands_outside_the_int8_rule_keep_the_float_kernel():
    """The rule: odd weights beyond int8, a small fan-in, more than INT8_MAX_LIMBS limbs, sums
    beyond 2^31 and non-CPU devices never take the int8 kernels."""
    rng = np.random.default_rng(5)
    geom = ConvGeometry((1, 1), (1, 1), (1, 1), 1)
    w = rng.integers(-128, 128, size=(8, 16, 3, 3))
    odd = w.copy()
    odd[0, 0, 0, 0] = 255
    assert IntegerSynapse("conv", odd, input_max=1, geometry=geom).kernel == "fp32"
    small_fan_in = IntegerSynapse("conv", w[:, :4], input_max=1, geometry=geom, onednn=False)
    assert small_fan_in.kernel == "fp32"
    wide = IntegerSynapse("dense", w.reshape(8, -1), input_max=2**22, signed=True)
    assert not wide.kernel.startswith("int8")
    x = rng.integers(-(2**22), 2**22 + 1, size=(2, 144))
    w_eff, exp = dense_weights_as_lava(w.reshape(8, -1))
    np.testing.assert_array_equal(wide(torch.as_tensor(x)).numpy(), _dense_ref(w_eff, exp, x))
    common = dict(weights_fit_int8=True, limbs=1, gemm_bound=10, fan_in=64)
    assert choose_kernel(device=torch.device("cpu"), float_kernel="fp32", **common) == "int8"
    assert choose_kernel(device=torch.device("cuda"), float_kernel="fp32", **common) == "fp32"
    assert (
        choose_kernel(device=torch.device("cpu"), float_kernel="fp32", **{**common, "limbs": 2})
        == "int8-limbs"
    )
    for bad in ({"limbs": 4}, {"gemm_bound": 2**31}, {"fan_in": 63}, {"weights_fit_int8": False}):
        assert (
            choose_kernel(device=torch.device("cpu"), float_kernel="fp64", **{**common, **bad})
            == "fp64"
        )


def test_trailing_zero_bits_is_the_largest_common_power_of_two():
    rng = np.random.default_rng(7)
    for _ in range(500):
        w = rng.integers(-300, 300, size=int(rng.integers(1, 6))) << int(rng.integers(0, 10))
        n = 8
        while n > 0 and np.any(w % (2**n)):
            n -= 1
        assert int8_gemm.trailing_zero_bits(w, 8) == n
    assert int8_gemm.trailing_zero_bits(np.zeros(3, dtype=np.int64), 8) == 8
    assert int8_gemm.common_shift(torch.zeros(3, dtype=torch.int64)) == 0


def test_int8_chunks_cover_every_sample(monkeypatch):
    """Patches are gathered in cache-sized chunks of samples; tiny chunks give the same result."""
    rng = np.random.default_rng(9)
    w = rng.integers(-128, 128, size=(8, 16, 3, 3))
    geom = ConvGeometry((1, 1), (1, 1), (1, 1), 1)
    x = torch.as_tensor(rng.random((7, 16, 5, 5)) < 0.5)
    syn = IntegerSynapse("conv", w, input_max=1, geometry=geom)
    whole = syn(x)
    monkeypatch.setattr(int8_gemm, "COLS_CHUNK_BYTES", 1)
    np.testing.assert_array_equal(syn(x).numpy(), whole.numpy())
