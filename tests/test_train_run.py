"""End-to-end training on sklearn digits: learning, determinism, resume, deployed accuracy."""

from __future__ import annotations

import csv
import json

import pytest
import torch
from train_helpers import small_config

from snn2loihi.app.cli import main
from snn2loihi.deploy.emulator import Emulator
from snn2loihi.readout import readout_logits
from snn2loihi.train.checkpoint import load_checkpoint
from snn2loihi.train.config import resolve
from snn2loihi.train.data import load_datasets
from snn2loihi.train.factory import model_from_checkpoint
from snn2loihi.train.netx_model import to_netx
from snn2loihi.train.run_log import CSV_FIELDS
from snn2loihi.train.trainer import train

FAST = ["model.arch='custom'", "model.convs=['16', 's32']", "model.dense=[]"]


def _emulator_accuracy(state: dict, config, split: str = "val") -> float:
    model = model_from_checkpoint(state)
    data = getattr(load_datasets(config.data), split)
    steps = config.train.steps
    x = data.x.unsqueeze(1).expand(-1, steps, -1, -1, -1)
    res = Emulator(to_netx(model, config.train.weight_bits)).run(x, record_state=True)
    pred = readout_logits(res.layers[-1].v[:, -1]).argmax(1)
    return int((pred == data.y).sum()) / len(data)


def _csv_rows(run) -> list[dict]:
    with open(run / "log.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def assert_log_matches_history(run, history: list[dict]) -> None:
    """``log.csv`` has one row per epoch of ``history`` with the same figures (floats written
    with repr, so they read back exactly; per-layer lists with 2 or 4 decimals)."""
    rows = _csv_rows(run)
    assert list(rows[0]) == list(CSV_FIELDS)
    assert [int(r["epoch"]) for r in rows] == [h["epoch"] for h in history]
    for row, h in zip(rows, history, strict=True):
        for key in ("lr", "train_loss", "train_acc", "ann_acc", "snn_acc", "spikes_total"):
            assert float(row[key]) == h[key], (key, row[key], h[key])
        spikes = [float(v) for v in row["spikes_per_layer"].split(";")]
        assert spikes == pytest.approx(h["spikes_per_layer"], abs=0.005)
        thresholds = [float(v) for v in row["thresholds"].split(";")]
        assert thresholds == pytest.approx(h["thresholds"], abs=5e-5)
        assert float(row["epoch_s"]) > 0


def test_short_digits_run_learns_and_reports_the_deployed_accuracy(tmp_path):
    torch.set_num_threads(1)
    cfg = small_config(tmp_path, "train.epochs=3")
    metrics = train(cfg)
    run = tmp_path / "run"
    history = metrics["history"]
    assert metrics["snn_acc"] > 0.85, metrics  # chance is 0.10
    assert metrics["ann_acc"] > 0.85 and metrics["train_acc"] > 0.5, metrics
    test_keys = {"best_epoch", "samples", "split", "val_snn_acc"}
    test_keys |= {k for k in metrics if k.startswith("test_")}
    assert [h["epoch"] for h in history] == [0, 1, 2] and history[-1] == {
        k: v for k, v in metrics.items() if k != "history" and k not in test_keys
    }
    assert metrics["split"] == "test" and metrics["samples"] == 359  # digits' held-out test split
    assert metrics["test_snn_acc"] > 0.85, metrics
    assert history[-1]["train_loss"] < history[0]["train_loss"], "the loss must fall"
    assert len(metrics["spikes_per_layer"]) == 3 and metrics["spikes_total"] > 0
    assert metrics["spikes_total"] == pytest.approx(sum(metrics["spikes_per_layer"]))
    assert all(s > 0 for s in metrics["spikes_per_layer"]), "every spiking layer must fire"
    assert_log_matches_history(run, history)

    state = torch.load(run / "last.pt", weights_only=True)
    assert state["epoch"] == 2 and set(state["thresholds"]) == {"0", "1", "2"}
    assert state["metrics"]["snn_acc"] == metrics["snn_acc"]
    assert [h["snn_acc"] for h in state["metrics"]["history"]] == [h["snn_acc"] for h in history]
    assert _emulator_accuracy(state, cfg) == pytest.approx(metrics["snn_acc"], abs=1e-12)
    # best.pt is the epoch with the best SNN accuracy (the first of equals), and it deploys so
    best_epoch = max(history, key=lambda h: (h["snn_acc"], -h["epoch"]))["epoch"]
    best = load_checkpoint(run / "best.pt")
    assert best["epoch"] == best_epoch
    assert best["metrics"]["snn_acc"] == history[best_epoch]["snn_acc"]
    assert _emulator_accuracy(best, cfg) == pytest.approx(best["metrics"]["snn_acc"], abs=1e-12)
    assert resolve(run / "config.toml", []) == cfg


def _state(path):
    return load_checkpoint(path)["model"]


def test_fixed_seed_runs_are_identical_and_resume_continues_exactly(tmp_path):
    """Two runs of one config write the same checkpoint bytes (no timings, no temporary names
    inside), and a run interrupted after epoch 0 then resumed ends with the same weights."""
    torch.set_num_threads(1)
    cfg = small_config(tmp_path, *FAST, "train.epochs=3")
    run = tmp_path / "run"
    first_epoch = {}

    def keep_first_epoch(epoch, metrics):  # called after the epoch's checkpoints are written
        if epoch == 0:
            first_epoch.update({name: (run / name).read_bytes() for name in ("last.pt", "best.pt")})

    train(cfg, on_epoch_end=keep_first_epoch)
    run.rename(tmp_path / "a")

    def interrupt(epoch, metrics):
        if epoch == 0:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(cfg, on_epoch_end=interrupt)
    assert load_checkpoint(run)["epoch"] == 0
    assert (run / "last.pt").read_bytes() == first_epoch["last.pt"]
    assert (run / "best.pt").read_bytes() == first_epoch["best.pt"]
    state = load_checkpoint(run)
    assert "epoch_s" not in state["metrics"] and "epoch_s" not in state["metrics"]["history"][0]
    resumed = train(cfg, resume=run / "last.pt")
    a, b = _state(tmp_path / "a"), _state(run)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert [h["epoch"] for h in resumed["history"]] == [0, 1, 2]


def test_bptt_baseline_and_float_ablation_train(tmp_path):
    torch.set_num_threads(1)
    bptt = train(small_config(tmp_path / "bptt", *FAST, "train.method='bptt'", "train.steps=2"))
    assert bptt["snn_acc"] > 0.5
    flt = train(small_config(tmp_path / "flt", *FAST, "train.float_snn=true"))
    assert flt["snn_acc"] > 0.5


def test_cli_train_writes_checkpoint_and_prints_metrics(tmp_path, capsys):
    out = tmp_path / "cli"
    argv = ["train", "--epochs", "1", "--out", str(out), "--no-progress", "--steps", "2"]
    argv += ["--set", "train.num_threads=1"] + [a for f in FAST for a in ("--set", f)]
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    state = load_checkpoint(out)
    assert state["epoch"] == 0 and state["config"]["train"]["steps"] == 2
    keys = ("epoch", "ann_acc", "snn_acc", "spikes_total")
    assert {k: summary[k] for k in keys} == {k: state["metrics"][k] for k in keys}
    assert summary["snn_acc"] > 0.5, summary  # one epoch at T = 2; chance is 0.10
    assert summary["best_epoch"] == 0 and summary["test_snn_acc"] > 0.5, summary
    assert main(["train", "--resume", str(out), "--epochs", "2", "--no-progress"]) == 0
    resumed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    state = load_checkpoint(out)
    assert state["epoch"] == resumed["epoch"] == 1 and state["config"]["train"]["steps"] == 2
    assert resumed["snn_acc"] == state["metrics"]["snn_acc"]
    assert_log_matches_history(out, state["metrics"]["history"])
    assert [h["epoch"] for h in state["metrics"]["history"]] == [0, 1]
    assert state["metrics"]["history"][0]["snn_acc"] == summary["snn_acc"]


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.parametrize("steps, target", [(4, 0.97), (2, 0.95)])
def test_digits_reaches_target_accuracy(tmp_path, steps, target):
    # two threads whatever earlier tests set: 0 kept the process's count, so the trajectory
    # (and the selected epoch) depended on test order
    cfg = small_config(tmp_path, "train.epochs=20", f"train.steps={steps}", "train.num_threads=2")
    metrics = train(cfg)
    assert metrics["snn_acc"] >= target  # validation: what selected the epoch
    # the selected model on the 359-sample test split: at 97% one binomial standard error is
    # 0.9 points, so two of them below the target (measured on an AMD EPYC: 0.964 with one
    # thread, where the validation split tied epochs 2 and 7 at 0.986)
    assert metrics["test_snn_acc"] >= target - 0.02
