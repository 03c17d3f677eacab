"""Lava's conv: the float32 torch branch gives the SciPy branch's integers within the bound that
:func:`snn2loihi.deploy.lava_conv.use_torch_conv` checks."""

from __future__ import annotations

import numpy as np
import pytest

from snn2loihi.deploy.lava_compat import install
from snn2loihi.deploy.lava_conv import FLOAT32_EXACT, conv_sum_bound

pytestmark = pytest.mark.lava


def test_the_bound_is_the_largest_absolute_weight_sum_times_the_largest_input():
    w = np.array([[[[3, -4]]], [[[-7, 1]]]])  # (out 2, 1, 1, in 2)
    assert conv_sum_bound(w, 0) == 8  # binary spikes
    assert conv_sum_bound(w, 8) == 8 * 256  # 8-bit graded messages


def test_torch_branch_equals_scipy_branch_at_the_bound(monkeypatch):
    install()
    import torch
    import torch.nn.functional as F
    from lava.proc.conv import utils

    rng = np.random.default_rng(3)
    # (out, kx, ky, in) weights of magnitude near 255 and 8-bit graded inputs: sums near the bound
    w = rng.integers(200, 256, size=(4, 6, 6, 7)) * rng.choice([-1, 1], size=(4, 6, 6, 7))
    x = rng.integers(0, 256, size=(9, 9, 7)).astype(np.int32)
    assert FLOAT32_EXACT // 4 < conv_sum_bound(w, 8) <= FLOAT32_EXACT
    args = (np.array([6, 6]), np.array([2, 2]), np.array([2, 2]), np.array([1, 1]), 1)
    scipy_out = utils.conv(x, w, *args)
    monkeypatch.setattr(utils, "TORCH_IS_AVAILABLE", True)
    monkeypatch.setattr(utils, "torch", torch, raising=False)
    monkeypatch.setattr(utils, "F", F, raising=False)
    torch_out = utils.conv(x, w, *args)
    assert np.abs(scipy_out).max() > 2**20  # large sums, not a trivially exact case
    np.testing.assert_array_equal(torch_out, scipy_out)


def test_the_switch_follows_each_network_s_bound(monkeypatch):
    """A network whose sums may pass 2**24 gets Lava's SciPy branch back even after an exact
    network switched the torch branch on in the same process."""
    install()
    from types import SimpleNamespace

    import torch
    from lava.proc.conv import utils

    from snn2loihi.deploy.lava_conv import use_torch_conv

    monkeypatch.setattr(utils, "TORCH_IS_AVAILABLE", utils.TORCH_IS_AVAILABLE)
    monkeypatch.setattr(utils, "torch", getattr(utils, "torch", None), raising=False)
    monkeypatch.setattr(utils, "F", getattr(utils, "F", None), raising=False)
    monkeypatch.setattr(torch, "set_num_threads", lambda n: None)  # keep the test process's

    def net(weight_magnitude: int):
        w = np.full((2, 3, 3, 4), weight_magnitude)
        syn = SimpleNamespace(
            weight=SimpleNamespace(init=w),
            num_message_bits=SimpleNamespace(init=np.array([8])),
            kernel_size=SimpleNamespace(init=np.array([3, 3])),
        )
        return SimpleNamespace(layers=[SimpleNamespace(synapse=syn)])

    assert use_torch_conv(net(255)) and utils.TORCH_IS_AVAILABLE  # 36 * 255 * 256 < 2**24
    assert not use_torch_conv(net(2**12)) and not utils.TORCH_IS_AVAILABLE  # 36 * 2**20 > 2**24
