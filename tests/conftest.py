"""Shared fixtures: deterministic seeds and a helper that writes NetX networks to tmp files."""

from __future__ import annotations

import numpy as np
import pytest
import torch


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    np.random.seed(0)


@pytest.fixture
def write_net(tmp_path):
    """Write a NetXNetwork to a fresh file under tmp_path and return its path."""
    from snn2loihi.netx_io import write_network

    counter = iter(range(10**6))

    def _write(net, name: str | None = None):
        return write_network(net, tmp_path / (name or f"net{next(counter)}.net"))

    return _write
