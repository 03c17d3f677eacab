"""End-to-end training on sklearn digits: learning, determinism, resume, deployed accuracy."""

from __future__ import annotations

import json

import pytest
import torch
from train_helpers import small_config

from snn2loihi.app.cli import main
from snn2loihi.deploy.emulator import Emulator
from snn2loihi.train.checkpoint import load_checkpoint
from snn2loihi.train.data import load_datasets
from snn2loihi.train.factory import model_from_checkpoint
from snn2loihi.train.netx_model import readout_logits, to_netx
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


def test_short_digits_run_learns_and_reports_the_deployed_accuracy(tmp_path):
    torch.set_num_threads(1)
    cfg = small_config(tmp_path, "train.epochs=3")
    metrics = train(cfg)
    assert metrics["snn_acc"] > 0.85, metrics  # chance is 0.10
    assert len(metrics["spikes_per_layer"]) == 3 and metrics["spikes_total"] > 0
    state = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert state["epoch"] == 2 and set(state["thresholds"]) == {"0", "1", "2"}
    assert _emulator_accuracy(state, cfg) == pytest.approx(metrics["snn_acc"], abs=1e-12)
    assert (tmp_path / "run" / "config.toml").is_file()
    rows = (tmp_path / "run" / "log.csv").read_text().strip().splitlines()
    assert len(rows) == 4 and rows[0].startswith("epoch,")


def _state(path):
    return load_checkpoint(path)["model"]


def test_fixed_seed_runs_are_identical_and_resume_continues_exactly(tmp_path):
    torch.set_num_threads(1)
    full = small_config(tmp_path / "a", *FAST, "train.epochs=3")
    train(full)
    cut = small_config(tmp_path / "b", *FAST, "train.epochs=3")

    def interrupt(epoch, metrics):
        if epoch == 0:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(cut, on_epoch_end=interrupt)
    assert load_checkpoint(tmp_path / "b" / "run")["epoch"] == 0
    resumed = train(cut, resume=tmp_path / "b" / "run" / "last.pt")
    a, b = _state(tmp_path / "a" / "run"), _state(tmp_path / "b" / "run")
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
    assert 0 <= summary["snn_acc"] <= 1
    assert summary["best_epoch"] == 0 and 0 <= summary["test_snn_acc"] <= 1
    assert main(["train", "--resume", str(out), "--epochs", "2", "--no-progress"]) == 0
    assert load_checkpoint(out)["epoch"] == 1


@pytest.mark.slow
@pytest.mark.parametrize("steps, target", [(4, 0.97), (2, 0.95)])
def test_digits_reaches_target_accuracy(tmp_path, steps, target):
    cfg = small_config(tmp_path, "train.epochs=20", f"train.steps={steps}", "train.num_threads=0")
    metrics = train(cfg)
    assert metrics["snn_acc"] >= target  # validation
    assert metrics["test_snn_acc"] >= target  # the selected model on the test split


def test_same_seed_gives_byte_identical_checkpoints_on_cpu(tmp_path):
    """Two runs of one config write the same bytes (no timings, no temporary names inside)."""
    torch.set_num_threads(1)
    cfg = small_config(tmp_path, *FAST, "train.epochs=1", "train.steps=2")
    run = tmp_path / "run"
    files = {}
    for attempt in ("a", "b"):
        train(cfg)
        files[attempt] = {name: (run / name).read_bytes() for name in ("last.pt", "best.pt")}
        run.rename(tmp_path / attempt)
    assert files["a"]["last.pt"] == files["b"]["last.pt"]
    assert files["a"]["best.pt"] == files["b"]["best.pt"]
    state = load_checkpoint(tmp_path / "a")
    assert "epoch_s" not in state["metrics"] and "epoch_s" not in state["metrics"]["history"][0]
