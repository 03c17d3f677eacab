"""bench/train_cost.py: the per-round ratios against BPTT and the ANN step, and their summary."""

from __future__ import annotations

import time

import pytest
from train_cost import TARGETS, ratio_summary, ratios  # bench/: pytest's pythonpath


def _row(method, ms, mib, round_=0, steps=4, **kw):
    row = {"method": method, "steps": steps, "batch": 16, "bf16": False, "channels_last": False}
    row.update(ms_per_iter=ms, cpu_peak_rss_growth_mib=mib, round=round_, **kw)
    return row


def test_ratios_pair_rows_of_the_same_round_and_summarize_the_targets():
    rows = [
        _row("snn2ann", 100.0, 200.0, 0),
        _row("bptt", 200.0, 400.0, 0),
        _row("ann", 50.0, 150.0, 0),
        _row("snn2ann", 110.0, 190.0, 1),
        _row("bptt", 200.0, 400.0, 1),
        _row("ann", 50.0, 150.0, 1),
        _row("snn2ann", 105.0, 230.0, 2),
        {"method": "bptt", "steps": 4, "error": "killed"},  # a failed row pairs with nothing
        _row("ann", 70.0, 150.0, 2),
        _row("snn2ann", 120.0, 200.0, 0, steps=8),  # another T: no partners
    ]
    per_round = ratios(rows)
    assert [(r["round"], r["steps"]) for r in per_round] == [(0, 4), (1, 4), (2, 4), (0, 8)]
    first = per_round[0]
    assert (first["x_bptt_time"], first["x_bptt_memory"], first["x_ann_time"]) == (0.5, 0.5, 2.0)
    assert per_round[1]["x_bptt_time"] == pytest.approx(0.55)
    assert per_round[2]["x_bptt_time"] is None and per_round[2]["x_ann_time"] == 1.5
    assert per_round[3]["x_ann_time"] is None

    summary = {r["steps"]: r for r in ratio_summary(per_round)}
    t4 = summary[4]
    assert t4["rounds"] == 3 and t4["method"] == "snn2ann"
    assert t4["x_bptt_time"] == {
        "min": 0.5, "median": 0.525, "max": 0.55, "target": 0.5, "rounds_met": 1,
    }  # fmt: skip
    assert t4["x_ann_time"]["rounds_met"] == 2 and t4["x_ann_time"]["median"] == 2.0
    assert t4["x_bptt_memory"]["target"] == TARGETS["x_bptt_memory"] == 0.5
    assert "x_bptt_time" not in summary[8]  # no BPTT row at T=8


def test_rows_of_a_single_run_are_round_zero():
    rows = [_row("snn2ann-compiled", 90.0, 300.0), _row("bptt", 180.0, 400.0)]
    for r in rows:
        del r["round"]
    (only,) = ratios(rows)
    assert only["round"] == 0 and only["method"] == "snn2ann-compiled"
    assert only["x_bptt_memory"] == 0.75


def test_the_in_use_memory_ratio_is_summarized_without_a_target():
    rows = [
        _row("snn2ann", 100.0, 200.0, cpu_peak_in_use_growth_mib=90.0),
        _row("bptt", 200.0, 400.0, cpu_peak_in_use_growth_mib=200.0),
        _row("ann", 50.0, 150.0),
    ]
    (r,) = ratios(rows)
    assert r["x_bptt_in_use_memory"] == 0.45 and r["x_bptt_memory"] == 0.5
    (summary,) = ratio_summary([r])
    assert summary["x_bptt_in_use_memory"] == {"min": 0.45, "median": 0.45, "max": 0.45}
    assert summary["x_bptt_memory"]["rounds_met"] == 1


def test_the_in_use_sampler_sees_a_block_held_inside_it():
    """A 64 MiB tensor alive inside the block raises the sampled peak by about that much."""
    import torch
    from harness import InUseSampler

    sampler = InUseSampler()
    before = sampler.in_use_mib()
    if before is None:
        pytest.skip("no mallinfo2 in this C library")
    with sampler:
        held = torch.ones(2**24)  # 64 MiB, written
        time.sleep(0.01)
        del held
    assert sampler.peak_mib - before >= 63
