"""bench/method_comparison.py: the epoch budget of the pre-trained route, the routes' CLI
arguments, and the table's aggregation over seeds."""

from __future__ import annotations

import pytest
from method_comparison import ann_share, route_args, table  # bench/: pytest's pythonpath


def test_the_pretrained_route_leaves_at_least_one_epoch_after_the_ann_run():
    assert ann_share(20) == 15 and ann_share(4) == 2 and ann_share(3) == 1
    for total in range(3, 40):
        assert 1 <= ann_share(total) <= total - 2  # + the ANN run's SNN epoch + one of its own
    with pytest.raises(SystemExit, match="at least 3"):
        ann_share(2)


def test_route_arguments_name_the_method_and_the_init_checkpoint(tmp_path):
    assert route_args("noise", 4, 20, None) == [
        "--method",
        "noise",
        "--steps",
        "4",
        "--epochs",
        "20",
    ]
    args = route_args("snn2ann_from_ann", 2, 4, tmp_path / "ann")
    assert args[:4] == ["--method", "snn2ann", "--init-from", str(tmp_path / "ann")]


def test_table_gives_the_mean_and_range_over_seeds():
    run = {"method": "noise", "steps": 4, "train_minutes": 0.5, "spikes_per_sample": 100.0}
    runs = [
        {**run, "test_emulator_acc": 0.98, "peak_rss_mib": 900.0},
        {**run, "test_emulator_acc": 0.99, "peak_rss_mib": 950.0, "train_minutes": 1.5},
    ]
    row = table({"runs": runs}).splitlines()[-1]
    assert row == "| noise | 4 | 98.50% [98.00, 99.00] | 1.00 | 950 | 100 |"
