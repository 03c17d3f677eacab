"""Shared fixtures: deterministic seeds, a helper that writes NetX networks to tmp files, the CLI
refusal check, one briefly trained digits run for the whole session (``digits_run``), the
Hypothesis profiles (``ci``, deterministic, by default; ``explore`` with
``HYPOTHESIS_PROFILE=explore``), and two session guards:

- temporary files: the whole session (tests, library, subprocesses via ``TMPDIR``) uses a
  private temporary folder under pytest's basetemp; whatever the library names ``snn2loihi-*``
  there (e.g. the Lava runner's ``snn2loihi-lava-*`` folders) must be gone at the end, else the
  session fails. New ``snn2loihi-*`` entries in the system temporary folder are reported;
- Lava: a test not marked ``lava`` that starts the Lava simulator fails, so that
  ``-m "not lava"`` (``make test-fast``) really runs without it.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import settings

# The fuzzers draw the same examples on every run (a red CI is then reproducible and never luck);
# HYPOTHESIS_PROFILE=explore draws fresh ones, to hunt for new failures locally.
settings.register_profile("ci", derandomize=True, database=None, print_blob=True)
settings.register_profile("explore", derandomize=False, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

OUR_TEMPORARIES = "snn2loihi-*"


@pytest.fixture(scope="session", autouse=True)
def _private_tmpdir(tmp_path_factory):
    """Send every temporary file of the session to a private folder; fail on leftovers."""
    system_tmp = Path(tempfile.gettempdir())
    before = set(system_tmp.glob(OUR_TEMPORARIES))
    private = tmp_path_factory.mktemp("TMPDIR", numbered=False)
    saved = os.environ.get("TMPDIR"), tempfile.tempdir
    os.environ["TMPDIR"] = tempfile.tempdir = str(private)
    try:
        yield private
    finally:
        if saved[0] is None:
            os.environ.pop("TMPDIR", None)
        else:
            os.environ["TMPDIR"] = saved[0]
        tempfile.tempdir = saved[1]
    elsewhere = sorted(str(p) for p in set(system_tmp.glob(OUR_TEMPORARIES)) - before)
    if elsewhere:  # may also come from another run on this machine: reported, not failed
        warnings.warn(f"new temporary entries in {system_tmp}: {elsewhere}", stacklevel=1)
    left = sorted(p.name for p in private.glob(OUR_TEMPORARIES))
    if left:
        pytest.fail(f"the session left temporary files behind in {private}: {left}", pytrace=False)


class _NoLavaSubprocess:
    """Stands in for ``subprocess`` inside ``snn2loihi.deploy.lava_runner`` during tests that are
    not marked ``lava``: starting the Lava child fails the test."""

    def __init__(self, nodeid: str):
        self._nodeid = nodeid

    def __getattr__(self, name):
        return getattr(subprocess, name)

    def Popen(self, *args, **kwargs):  # noqa: N802 - the name it replaces
        pytest.fail(f"{self._nodeid} starts the Lava simulator: mark it @pytest.mark.lava")


@pytest.fixture(autouse=True)
def _lava_only_when_marked(request, monkeypatch):
    if request.node.get_closest_marker("lava") is None:
        from snn2loihi.deploy import lava_runner

        monkeypatch.setattr(lava_runner, "subprocess", _NoLavaSubprocess(request.node.nodeid))


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
    from argparse) and exactly one line on stderr, without a traceback, holding every one of
    ``words``. Returns that line."""
    from snn2loihi.app.cli import main

    def _refused(argv: list, *words: str) -> str:
        capsys.readouterr()
        try:
            code = main([str(a) for a in argv])
        except SystemExit as exc:
            code = exc.code
        out, err = capsys.readouterr()
        assert code == 2, f"exit {code}\nstdout: {out}\nstderr: {err}"
        assert err.count("\n") == 1 and err.endswith("\n"), err
        assert "Traceback" not in err
        assert all(w in err for w in words), err
        return err

    return _refused


@pytest.fixture(scope="session")
def digits_run(tmp_path_factory) -> Path:
    """One digits run trained once for the whole session (``train_helpers.DIGITS_RUN``: one
    epoch, T = 3, about 2 s): its folder, holding ``best.pt``, ``last.pt``, ``config.toml`` and
    ``log.csv``. Shared and read only: a test that writes next to it copies it into its
    tmp_path first; the session fails if any of its files changed."""
    from train_helpers import DIGITS_RUN, small_config

    from snn2loihi.train.trainer import train

    root = tmp_path_factory.mktemp("digits_run")
    threads = torch.get_num_threads()
    try:
        train(small_config(root, *DIGITS_RUN))
    finally:
        torch.set_num_threads(threads)
    run = root / "run"
    before = _digests(run)
    yield run
    if _digests(run) != before:
        pytest.fail(f"a test changed the shared digits run in {run}", pytrace=False)


def _digests(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }
