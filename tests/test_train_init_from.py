"""``train --init-from CKPT`` (``train.init_from``): a new run from an earlier checkpoint's model
with a fresh optimizer and schedule; the checkpoint stays an input; another network is refused.
Also ANN pre-training (``train.pretrain_epochs``) in front of BPTT."""

from __future__ import annotations

import shutil

import numpy as np
import torch
from test_export_helpers import export_and_check
from train_helpers import DIGITS_RUN, small_config

from snn2loihi.export.loader import load_model
from snn2loihi.train import bptt
from snn2loihi.train.checkpoint import load_checkpoint
from snn2loihi.train.data import load_datasets
from snn2loihi.train.trainer import build_run, steps_per_epoch, train

NET = DIGITS_RUN[1:4]  # the shared run's network (arch, convs, dense)


def _argv(tmp_path, *extra) -> list:
    return ["train", "--out", tmp_path / "new", "--no-progress", "--epochs", "1", *extra]


def test_init_from_refuses_resume_other_networks_and_missing_files(
    tmp_path, digits_run, cli_refusal
):
    new = _argv(tmp_path)
    cli_refusal(
        [*new, "--init-from", digits_run, "--resume", digits_run], "--init-from", "--resume"
    )
    cli_refusal(
        [*new, "--init-from", digits_run, "--set", "model.arch='custom'"]
        + ["--set", "model.convs=['8']", "--set", "model.dense=[]"],
        "model.convs",
        "['8', 's16']",
        "['8']",
    )
    cli_refusal([*new, "--init-from", tmp_path / "none.pt"], "--init-from", "none.pt")
    assert not (tmp_path / "new").exists()


def test_init_from_refuses_another_input_shape(tmp_path, digits_run, cli_refusal):
    g = np.random.default_rng(0)
    for split, n in (("train", 60), ("test", 20)):
        x = g.integers(0, 256, (n, 4, 4), dtype=np.uint8)
        np.savez(tmp_path / f"{split}.npz", x=x, y=np.arange(n) % 10)
    data = ["data.dataset='npz'", f"data.train='{tmp_path / 'train.npz'}'"]
    data += [f"data.test='{tmp_path / 'test.npz'}'"]
    sets = [a for d in data for a in ("--set", d)]
    cli_refusal(
        [*_argv(tmp_path, *sets), "--init-from", digits_run / "best.pt"],
        "input_shape",
        "[1, 8, 8]",
        "[1, 4, 4]",
    )


def test_init_from_is_an_input_never_the_output(tmp_path, digits_run, cli_refusal):
    run = tmp_path / "run"
    shutil.copytree(digits_run, run)
    before = (run / "last.pt").read_bytes()
    argv = ["train", "--out", run, "--force", "--no-progress", "--epochs", "1"]
    cli_refusal([*argv, "--init-from", run], "last.pt", "is the input --init-from")
    cli_refusal([*argv, "--init-from", run / "best.pt"], "best.pt", "is the input --init-from")
    assert (run / "last.pt").read_bytes() == before


def test_init_from_starts_from_the_checkpoint_model_with_a_fresh_optimizer(tmp_path, digits_run):
    config = small_config(tmp_path, *DIGITS_RUN, f"train.init_from='{digits_run / 'best.pt'}'")
    splits = load_datasets(config.data)
    run = build_run(config, splits, torch.device("cpu"), 1, None)
    state = load_checkpoint(digits_run / "best.pt")
    ours = run.model.state_dict()
    assert ours.keys() == state["model"].keys()
    assert all(torch.equal(ours[k], v) for k, v in state["model"].items())
    assert run.start == 0 and run.history == [] and run.optimizer.state_dict()["state"] == {}
    assert run.meta["mean"] == state["metrics"]["model"]["mean"]


def test_bptt_from_an_snn2ann_checkpoint_trains_and_exports_exactly(tmp_path, digits_run):
    """A new method from the shared SNN2ANN run: one BPTT epoch, then export; the emulator on
    the file fires the integer branch's spikes and gives its accuracy."""
    torch.set_num_threads(1)
    init = digits_run / "best.pt"
    config = small_config(tmp_path, *DIGITS_RUN, "train.method='bptt'", f"train.init_from='{init}'")
    result = train(config)
    ckpt = tmp_path / "run" / "best.pt"
    state = load_checkpoint(ckpt)
    assert state["config"]["train"]["init_from"] == str(init)  # the run records its start
    model, _ = load_model(ckpt)
    x = load_datasets(config.data).val.x[:32]
    report = export_and_check(ckpt, model, tmp_path / "bptt.net", x, 144)
    assert report["accuracy"]["emulator_acc"] == result["snn_acc"]


def test_pretraining_epochs_in_front_of_bptt_train_the_ann(tmp_path, monkeypatch):
    """train.pretrain_epochs with BPTT: those epochs run the ReLU ANN, not the unrolled pass."""
    torch.set_num_threads(1)
    calls = []
    real = bptt.bptt_forward
    monkeypatch.setattr(bptt, "bptt_forward", lambda *a, **k: calls.append(1) or real(*a, **k))
    seen = {}
    config = small_config(
        tmp_path, *NET, "train.method='bptt'", "train.epochs=2", "train.pretrain_epochs=1"
    )
    train(config, on_epoch_end=lambda epoch, metrics: seen.setdefault(epoch, len(calls)))
    assert seen[0] == 0 and seen[1] == steps_per_epoch(1293, 64)


def test_resumed_run_keeps_its_init_from(tmp_path, digits_run, cli_refusal):
    """A resumed run may not change where its weights came from."""
    run = tmp_path / "run"
    shutil.copytree(digits_run, run)
    cli_refusal(
        ["train", "--resume", run, "--out", run, "--epochs", "2", "--no-progress"]
        + ["--set", f"train.init_from='{run}/x.pt'"],
        "train.init_from",
        "cannot change",
    )
