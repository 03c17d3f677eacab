"""Exact integer synapses: Lava's dense weight processing and the float32/float64 exactness rule."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from snn2loihi.synapse import ConvGeometry, IntegerSynapse, dense_weights_as_lava, exact_float32


def _lava_dense(weight):
    """Lava's own pipeline: NetX optimize_weight_bits, then the BitAcc model's clip and truncate."""
    from snn2loihi.deploy.lava_compat import install

    install()
    from lava.lib.dl.netx.utils import optimize_weight_bits
    from lava.utils.weightutils import SignMode, clip_weights, truncate_weights

    w, nbits, exp, mode = optimize_weight_bits(weight)
    sign = {1: SignMode.MIXED, 2: SignMode.EXCITATORY, 3: SignMode.INHIBITORY}[int(mode.value)]
    w = clip_weights(w, sign, num_bits=8)
    w = truncate_weights(w, sign, nbits)
    return w.astype(np.int64), exp


@pytest.mark.parametrize(
    "weight",
    [
        np.arange(-256, 255, 2).reshape(1, -1),  # slayer grid: even [-256, 254]
        np.array([[3, -1, 2], [0, 1, -3]]),  # small mixed: shifted up
        np.array([[255, 7, 0], [1, 2, 3]]),  # excitatory full range
        np.array([[-256, -7, -1], [-2, -3, -4]]),  # inhibitory with -256
        np.array([[255, -3, 8], [16, -256, 4]]),  # mixed with 255: clipped to 254 by Lava
        np.array([[12, -48, 96], [4, -8, 0]]),  # common power of two
        np.array([[0, -4], [-8, 0]]),  # mixed with largest weight 0: NetX's 127 / 0 is inf
    ],
)
def test_dense_weights_match_lavas_processing(weight):
    ours, exp = dense_weights_as_lava(weight)
    theirs, their_exp = _lava_dense(weight)
    assert exp == their_exp
    np.testing.assert_array_equal(ours, theirs)


def _dense_ref(w_eff, exp, s):
    acc = s.astype(np.int64) @ w_eff.T
    return acc >> -exp if exp <= 0 else acc << exp


def _conv_ref(x, w, geom):
    """Direct int64 cross-correlation with zero padding (PyTorch semantics)."""
    b, cin, h, wd = x.shape
    cout, cin_g, kh, kw = w.shape
    (sh, sw), (ph, pw), (dh, dw) = geom.stride, geom.padding, geom.dilation
    xp = np.pad(x.astype(np.int64), ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    ho = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    wo = (wd + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    out = np.zeros((b, cout, ho, wo), dtype=np.int64)
    per_group = cout // geom.groups
    for o in range(cout):
        g = o // per_group
        for ci in range(cin_g):
            for i in range(kh):
                for j in range(kw):
                    patch = xp[
                        :,
                        g * cin_g + ci,
                        i * dh : i * dh + sh * (ho - 1) + 1 : sh,
                        j * dw : j * dw + sw * (wo - 1) + 1 : sw,
                    ]
                    out[:, o] += w[o, ci, i, j] * patch
    return out


def test_conv_matches_int64_reference_in_fp32():
    rng = np.random.default_rng(0)
    w = rng.integers(-256, 256, size=(6, 2, 3, 2))
    geom = ConvGeometry(stride=(2, 1), padding=(1, 0), dilation=(1, 2), groups=2)
    syn = IntegerSynapse("conv", w, input_max=1, geometry=geom)
    assert syn.exact_fp32 and syn.dtype == torch.float32
    x = (rng.random((5, 4, 9, 7)) < 0.5).astype(np.int64)
    np.testing.assert_array_equal(syn(torch.as_tensor(x)).numpy(), _conv_ref(x, w, geom))


def test_conv_output_wraps_to_24_bits():
    w = np.full((1, 1, 17, 17), 255)
    geom = ConvGeometry((1, 1), (0, 0), (1, 1), 1)
    syn = IntegerSynapse("conv", w, input_max=255, geometry=geom)
    assert not syn.exact_fp32  # 289 * 255 * 255 >= 2^24: float64 path
    x = np.full((1, 1, 17, 17), 255)
    full = 289 * 255 * 255  # beyond 2^23: wraps
    expected = ((full + 2**23) % 2**24) - 2**23
    assert int(syn(torch.as_tensor(x)).item()) == expected


def test_large_graded_fan_in_leaves_the_plain_float32_path():
    """A sum above 2^24 with odd terms is inexact in fp32; the synapse must pick float64 or
    split the input into float32 limbs whose sums stay below 2^24."""
    w = np.full((2, 301), 255)
    w[1, 0] = -255
    syn = IntegerSynapse("dense", w, input_max=255)
    assert not syn.exact_fp32 and (syn.dtype == torch.float64 or syn.limbs > 1)
    x = np.full((1, 301), 255)
    x[0, 1] = 253
    w_eff, exp = dense_weights_as_lava(w)
    np.testing.assert_array_equal(syn(torch.as_tensor(x)).numpy(), _dense_ref(w_eff, exp, x))
    fp32 = (
        torch.as_tensor(x, dtype=torch.float32) @ torch.as_tensor(w_eff, dtype=torch.float32).T
    ).to(torch.int64)
    assert not np.array_equal(fp32.numpy(), _dense_ref(w_eff, 0, x)), (
        "fp32 would have been wrong here"
    )


def test_exactness_bound():
    assert exact_float32(2**24 - 1, 1, 255)
    assert not exact_float32(2**24, 1, 255)
    assert not exact_float32(1000, 255, 4096)  # operand beyond the TF32 significand


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_gpu_fp32_and_tf32_paths_are_exact():
    rng = np.random.default_rng(1)
    w = rng.integers(-256, 255, size=(64, 32, 3, 3))
    geom = ConvGeometry((1, 1), (1, 1), (1, 1), 1)
    x = (rng.random((16, 32, 16, 16)) < 0.5).astype(np.int64)
    ref = _conv_ref(x, w, geom)
    for tf32 in (False, True):
        torch.backends.cuda.matmul.allow_tf32 = tf32
        syn = IntegerSynapse("conv", w, input_max=1, geometry=geom, device="cuda")
        assert syn.dtype == torch.float32
        np.testing.assert_array_equal(syn(torch.as_tensor(x, device="cuda")).cpu().numpy(), ref)
    torch.backends.cuda.matmul.allow_tf32 = False


@pytest.mark.parametrize(
    ("batch", "cin", "cout", "kernel", "stride", "padding"),
    [
        (1, 3, 16, (3, 3), 1, 1),
        (40, 16, 32, (3, 3), 1, 1),
        (2, 8, 8, (1, 1), 1, 0),
        (33, 32, 64, (5, 5), 2, 2),
    ],
)
def test_cpu_conv_path_is_exact_for_common_shapes(batch, cin, cout, kernel, stride, padding):
    """Winograd/FFT-prone shapes (3x3 stride 1, batch 1, 1x1) stay exact on the chosen path."""
    rng = np.random.default_rng(batch)
    w = rng.integers(-256, 255, size=(cout, cin, *kernel))
    geom = ConvGeometry((stride, stride), (padding, padding), (1, 1), 1)
    syn = IntegerSynapse("conv", w, input_max=1, geometry=geom)
    x = (rng.random((batch, cin, 12, 12)) < 0.5).astype(np.int64)
    np.testing.assert_array_equal(syn(torch.as_tensor(x)).numpy(), _conv_ref(x, w, geom))


@pytest.mark.parametrize(
    ("pool", "k", "stride", "pad", "hw", "groups", "input_max"),
    [
        (2, 3, 1, 1, (16, 16), 1, 1),  # avg pool 2 + 3x3 conv (the training presets' "p" layer)
        (2, 3, 1, 1, (9, 11), 1, 1),  # odd sizes: the last pool window is padding
        (3, 1, 2, 0, (14, 13), 2, 1),  # pool 3 + 1x1 stride-2 conv, grouped
        (2, 2, 1, 0, (8, 8), 1, 255),  # graded input: sums of 4 pixels
        (3, 2, 1, 0, (9, 9), 1, 255),  # sums of 9 pixels exceed 2^11: runs the expanded kernel
    ],
)
def test_block_kernel_runs_as_sum_pooling_with_the_same_integers(
    pool, k, stride, pad, hw, groups, input_max
):
    """A kernel of constant p x p blocks (average pooling folded in) == the int64 reference,
    whether the block kernel is detected or given compact (``block=p``, as training does)."""
    rng = np.random.default_rng(pool * 10 + k)
    compact = rng.integers(-128, 128, size=(4, 2, k, k))
    w = compact.repeat(pool, axis=2).repeat(pool, axis=3)
    geom = ConvGeometry((pool * stride,) * 2, (pool * pad,) * 2, (1, 1), groups)
    syn = IntegerSynapse("conv", w, input_max=input_max, geometry=geom)
    given = IntegerSynapse(
        "conv", torch.as_tensor(compact), input_max=input_max, geometry=geom, block=pool
    )
    runs_pooled = input_max * pool**2 <= 2**11
    assert syn.pool == given.pool == (pool if runs_pooled else 1) and syn.exact_fp32
    assert given.max_abs_output == syn.max_abs_output
    x = rng.integers(0, input_max + 1, size=(3, 2 * groups, *hw))
    if input_max == 1:
        x = (rng.random((3, 2 * groups, *hw)) < 0.4).astype(np.int64)
    ref = _conv_ref(x, w, geom)
    np.testing.assert_array_equal(syn(torch.as_tensor(x)).numpy(), ref)
    np.testing.assert_array_equal(given(torch.as_tensor(x)).numpy(), ref)


def test_compact_kernel_needs_an_aligned_conv():
    w = torch.ones(2, 1, 3, 3, dtype=torch.int64)
    with pytest.raises(ValueError, match="multiples"):
        IntegerSynapse(
            "conv", w, input_max=1, geometry=ConvGeometry((2, 2), (1, 1), (1, 1), 1), block=2
        )
    with pytest.raises(ValueError, match="conv geometry"):
        IntegerSynapse("dense", w.reshape(2, 9), input_max=1, block=2)


def test_block_factor_needs_aligned_stride_padding_and_true_blocks():
    from snn2loihi.synapse import block_factor

    w = torch.ones(1, 1, 4, 4, dtype=torch.int64)
    assert block_factor(w, ConvGeometry((2, 2), (2, 2), (1, 1), 1)) == 2
    assert block_factor(w, ConvGeometry((4, 4), (0, 0), (1, 1), 1)) == 4
    assert block_factor(w, ConvGeometry((1, 1), (0, 0), (1, 1), 1)) == 1  # stride not aligned
    assert block_factor(w, ConvGeometry((2, 2), (1, 1), (1, 1), 1)) == 1  # padding not aligned
    assert block_factor(w, ConvGeometry((2, 2), (2, 2), (2, 2), 1)) == 1  # dilated
    w[0, 0, 0, 1] = 2
    assert block_factor(w, ConvGeometry((2, 2), (0, 0), (1, 1), 1)) == 1  # not constant blocks


def test_block_kernel_on_the_float64_im2col_path():
    """Pooled graded input with sums beyond 2^24: float64 unfold + GEMM, still exact."""
    rng = np.random.default_rng(7)
    compact = rng.choice([-255, 255], size=(3, 8, 3, 3))
    compact[0] = 255  # row bound 8*9*4*255*255 >= 2^24
    w = compact.repeat(2, axis=2).repeat(2, axis=3)
    geom = ConvGeometry((2, 2), (2, 2), (1, 1), 1)
    syn = IntegerSynapse("conv", w, input_max=255, geometry=geom)
    assert syn.pool == 2 and not syn.exact_fp32
    x = rng.integers(0, 101, size=(2, 8, 7, 6))  # actual sums stay inside 24 bits
    np.testing.assert_array_equal(syn(torch.as_tensor(x)).numpy(), _conv_ref(x, w, geom))


@pytest.mark.parametrize("seed", range(4))
def test_signed_large_inputs_split_into_float32_limbs_are_exact(seed):
    """Sigma-delta messages (signed, far above 2^11) take float32 limbs where few suffice, and
    stay exact against the int64 reference, at the extremes too."""
    from snn2loihi.synapse import dense_weights_as_lava

    rng = np.random.default_rng(seed)
    used = 0
    for trial in range(12):
        cin, cout, k = (int(v) for v in rng.integers(1, 6, 3))
        w = (
            rng.integers(-256, 255, (cout, cin, k, k))
            if trial % 2
            else rng.integers(-20, 20, (cout, cin, k, k))
        )
        m = int(rng.choice([300, 3000, 2**15, 2**18]))
        x = rng.integers(-m, m + 1, (3, cin, 9, 9))
        x[0], x[1] = m, -m
        syn = IntegerSynapse(
            "conv", w, input_max=m, geometry=ConvGeometry((1, 1), (1, 1), (1, 1), 1), signed=True
        )
        used += syn.limb_bits > 0
        ref = torch.nn.functional.conv2d(
            torch.tensor(x, dtype=torch.float64), torch.tensor(w, dtype=torch.float64), padding=1
        ).to(torch.int64)
        ref = ((ref + 2**23) % 2**24) - 2**23
        assert torch.equal(syn(torch.tensor(x)).to(torch.int64), ref)
        w_eff, exp = dense_weights_as_lava(rng.integers(-256, 255, (5, 40)))
        dense = IntegerSynapse("dense", w_eff, input_max=m, weight_exp=exp, signed=True)
        used += dense.limb_bits > 0
        xd = rng.integers(-m, m + 1, (4, 40))
        xd[0] = m
        ref_d = torch.tensor(xd @ w_eff.T) >> -exp
        assert torch.equal(dense(torch.tensor(xd)), ref_d)
    assert used > 0


def test_all_zero_dense_weights_give_zero_input():
    """Never in a valid file, but training's branch of a dead (or diverged) layer has them."""
    w, exp = dense_weights_as_lava(np.zeros((3, 4), dtype=np.int8))
    assert exp == 0 and w.dtype == np.int64 and not w.any()
    syn = IntegerSynapse("dense", torch.zeros((3, 4), dtype=torch.int8), input_max=1)
    assert syn(torch.ones((2, 4), dtype=torch.bool)).eq(0).all()


def test_exact_float_result_holds_the_same_integers_and_only_where_nothing_follows():
    """``exact_float``: the float32 conv kernels (oneDNN int8 where exact on this CPU, and the
    fp32 direct conv) hand their result over unconverted, with the values of the int32 result;
    kernels whose result is shifted, wrapped or integer come as integers."""
    from snn2loihi import int8_gemm

    rng = np.random.default_rng(3)
    geom = ConvGeometry((1, 1), (1, 1), (1, 1), 1)
    x = torch.as_tensor(rng.random((4, 16, 6, 5)) < 0.5)
    cases = [
        (rng.integers(-128, 128, (8, 16, 3, 3)), {}, "int8-onednn"),
        (rng.integers(-256, 256, (8, 16, 3, 3)), {}, "fp32"),  # beyond int8: no int8 kernel
        (rng.integers(-128, 128, (8, 16, 3, 3)) * 4, {}, "int8-onednn"),  # shifted back by 2
        (rng.integers(-128, 128, (8, 16, 3, 3)), {"onednn": False}, "int8"),  # int32 GEMM
    ]
    for w, options, kernel in cases:
        syn = IntegerSynapse("conv", w, input_max=1, geometry=geom, **options)
        if kernel == "int8-onednn" and not int8_gemm.onednn_conv_exact():
            kernel = "int8"
        assert syn.kernel == kernel
        ints, loose = syn(x), syn(x, exact_float=True)
        np.testing.assert_array_equal(ints.numpy(), _conv_ref(x.long().numpy(), w, geom))
        floats = kernel != "int8" and not getattr(syn, "int8_shift", 0)
        assert loose.dtype == (torch.float32 if floats else ints.dtype)
        assert torch.equal(loose.to(ints.dtype), ints)
