"""A seeded slice of the CLI fuzz round (bench/fuzz_cli.py), in-process, so that the generator
keeps working: 30 cases of the fast families, each holding every invariant of the round."""

from __future__ import annotations

from collections import Counter

import pytest


@pytest.fixture(scope="module")
def fuzz_cli():
    import fuzz_cli  # bench/: pytest's pythonpath

    return fuzz_cli


def test_a_seeded_slice_of_the_fuzz_round_finds_nothing(fuzz_cli, tmp_path):
    fx = fuzz_cli.make_fixtures(tmp_path)
    cases = fuzz_cli.generate_cases(fx, tmp_path, 30, seed=7, exclude=fuzz_cli.SLOW_FAMILIES)
    assert len(cases) == 30 and not {c.family for c in cases} & fuzz_cli.SLOW_FAMILIES
    records = [fuzz_cli.run_case(c) for c in cases]
    found = [r for r in records if r["problems"]]
    assert not found, [(r["argv"][1:], r["stderr"], r["problems"]) for r in found]
    exits = Counter(r["exit"] for r in records)
    assert set(exits) <= {0, 2} and exits[2] >= 10, exits  # mostly refusals, some runs
    assert len({r["family"] for r in records}) >= 8
