"""bench/device_run.sh --dry: every part of the prepared GPU run (CUDA tests, emulator vs Lava and
its float floor, training cost, fast CIFAR recipe) rehearsed on the CPU at tiny sizes, so that
the one GPU run never meets a script that has rotted."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = next(
    (d for d in (ROOT / "shared" / "data", ROOT.parent / "shared" / "data")
     if (d / "cifar10-jpeg" / "cifar10_jpeg.npz").is_file()),
    None,
)  # fmt: skip
PARTS = {"tests", "emulator", "train_cost", "cifar"}


def _json(path: Path) -> dict:
    return json.loads(path.read_text())


@pytest.mark.slow
@pytest.mark.lava
@pytest.mark.multiprocess
@pytest.mark.timeout(1500)  # the script scales its limits (sum 270 s) by up to 5 under load
@pytest.mark.skipif(DATA is None, reason="needs the shared CIFAR-10 JPEG copy")
def test_dry_device_run_runs_every_part_and_records_it(tmp_path):
    out, logs = tmp_path / "out", tmp_path / "logs"
    env = dict(os.environ, PY=sys.executable, DATA=str(DATA))
    proc = subprocess.run(
        ["bash", "bench/device_run.sh", "--dry", "--out", str(out), "--logs", str(logs)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=1450,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    status = _json(out / "device_run_status_dry.json")
    assert set(status["parts"]) == PARTS and status["all_ok"]
    for name, part in status["parts"].items():
        assert part["status"] == "ok" and part["wall_s"] <= part["limit_s"], (name, part)
        assert Path(part["result"]).is_file() and Path(part["log"]).is_file(), name

    tests = _json(out / "cuda_tests_dry.json")
    assert tests["exit_code"] == 0 and tests["failed"] == tests["error"] == 0
    names = {t["test"] for t in tests["tests"]}
    assert len(names) >= 7 and any("test_cuda.py::" in n for n in names), names
    assert any("test_synapse.py::test_gpu_fp32_and_tf32_paths_are_exact" in n for n in names)

    emulator = _json(out / "emulator_vs_lava_dry.json")
    (small,) = emulator["networks"]
    assert small["outputs_equal"] is True and small["lava_device"] == "cpu"
    assert [r["batch"] for r in small["emulator"]] == [4, 8]
    for row in small["emulator"]:
        assert row["samples_per_s"] > 0 and row["float_floor_samples_per_s"] > 0
        assert row["x_float_floor"] > 0  # speed-up: None where Lava's start-up noise wins

    cost = _json(out / "train_cost_dry.json")
    assert {r["method"] for r in cost["rows"]} == {"snn2ann", "bptt", "ann"}
    for row in cost["rows"]:
        assert "error" not in row and row["ms_per_iter"] > 0 and row["channels_last"], row

    cifar = _json(out / "cifar_fast_dry.json")
    assert cifar["arch"] == "cifar_fast" and cifar["steps"] == 4 and cifar["epochs"] == 2
    # the project's CPU recipe, both phases: one ANN epoch, then one SNN2ANN epoch
    assert cifar["recipe"] == "configs/cifar10_cpu.toml" and cifar["pretrain_epochs"] == 1
    assert cifar["test_samples"] == 64 and cifar["train_file_samples"] == 256
    assert 100 < cifar["train_peak_rss_mib"] < 20000  # the training process's peak, in MiB
    assert cifar["emulator_equals_integer_snn"] is True  # the exported net scores as trained

    summary = (out / "device_run_summary.txt").read_text()
    assert len(summary.splitlines()) <= 30 and all(name in summary for name in PARTS)
    assert summary in proc.stdout
