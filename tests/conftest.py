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


@pytest.fixture
def cli_refusal(capsys):
    """Run ``snn2loihi ARGV`` in-process expecting a refusal: exit code 2 (from the command or
    from argparse) and exactly one line on stderr, without a traceback. Returns that line."""
    from snn2loihi.app.cli import main

    def _refused(argv: list[str]) -> str:
        capsys.readouterr()
        try:
            code = main([str(a) for a in argv])
        except SystemExit as exc:
            code = exc.code
        out, err = capsys.readouterr()
        assert code == 2, f"exit {code}\nstdout: {out}\nstderr: {err}"
        assert err.count("\n") == 1 and err.endswith("\n"), err
        assert "Traceback" not in err
        return err

    return _refused
