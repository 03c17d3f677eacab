"""Training and demo commands as a hostile but realistic user runs them: existing and locked run
folders, bad resumes, diverging runs, bad config files and late validation. Each refusal is
exit 2 with one stderr line, and leaves every file as it was."""

from __future__ import annotations

import math
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
from cli_helpers import refused, run_cli, snapshot
from train_helpers import small_config

from snn2loihi.app.cli import main
from snn2loihi.errors import TrainingDivergedError
from snn2loihi.train.checkpoint import LAST, load_checkpoint
from snn2loihi.train.run_folder import hold_run_folder
from snn2loihi.train.trainer import train

FAST = ["model.arch='custom'", "model.convs=['8', 's16']", "model.dense=[]", "train.num_threads=1"]


def train_argv(out: Path, *extra) -> list:
    """``snn2loihi train`` of one epoch at T = 2 into ``out``, with FAST set."""
    sets = [a for f in FAST for a in ("--set", f)]
    return ["train", "--out", out, "--epochs", 1, "--steps", 2, "--no-progress", *sets, *extra]


def train_cli(out: Path, *extra) -> subprocess.CompletedProcess:
    return run_cli(*train_argv(out, *extra))


@pytest.fixture(scope="module")
def finished_run(digits_run) -> Path:
    """A finished one-epoch run: the session's digits run itself (a copy would resume into the
    folder its config names). The tests here only read it: a refusal must leave it
    byte-identical, which they check, and a test that writes copies it first."""
    return digits_run


def test_a_folder_holding_a_run_is_refused_then_replaced_with_force(
    finished_run, tmp_path, cli_refusal
):
    out = tmp_path / "run"
    shutil.copytree(finished_run, out)
    before = snapshot(out)
    cli_refusal(train_argv(out), "holds another run (last.pt)", "--resume", "--force")
    assert snapshot(out) == before
    assert main([str(a) for a in train_argv(out, "--force", "--seed", "3")]) == 0
    assert (out / LAST).read_bytes() != before[out / LAST]
    assert len((out / "log.csv").read_text().splitlines()) == 2  # header + the new run's epoch


@pytest.mark.multiprocess
def test_a_second_writer_is_refused_while_a_run_holds_the_folder(tmp_path):
    out = tmp_path / "run"
    with hold_run_folder(out):
        refused(train_cli(out), "another snn2loihi train", f"pid {os.getpid()}")
    assert list(out.iterdir()) == []  # the lock file goes with the run that held it


@pytest.mark.parametrize(
    ("case", "words"),
    [
        ("fewer_epochs", ("has finished 1 epochs", "--epochs above 1")),
        ("nan_weights", ("parameter 'layers.0.weight' = nan at index (0, 0, 0, 0)",)),
        ("other_architecture", ("does not fit this config",)),
        ("other_optimizer_groups", ("1 parameter group(s), this config's 3", "train.bn_decay")),
    ],
)
def test_bad_resumes_are_refused_and_change_nothing(
    finished_run, tmp_path, case, words, cli_refusal
):
    ckpt = finished_run / LAST
    extra = ["--epochs", "1"]
    if case == "nan_weights":
        state = load_checkpoint(ckpt)
        state["model"]["layers.0.weight"][0, 0, 0, 0] = math.nan
        ckpt = tmp_path / "nan.pt"
        torch.save(state, ckpt)
        extra = ["--epochs", "2", "--out", tmp_path / "r"]
    elif case == "other_architecture":
        extra = ["--epochs", "2", "--set", "model.convs=['4', 's16']"]
    elif case == "other_optimizer_groups":
        extra = ["--epochs", "2", "--set", "train.optimizer='sgd'", "--set", "train.bn_decay=false"]
    before = snapshot(finished_run)
    cli_refusal(["train", "--resume", ckpt, "--no-progress", *extra], *words)
    assert snapshot(finished_run) == before and not (tmp_path / "r").exists()


def test_a_diverging_run_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    config = small_config(tmp_path, *FAST, "train.epochs=3")

    def poison(epoch, metrics):  # after epoch 0's checkpoint, the weights turn NaN
        if epoch == 0:
            with torch.no_grad():
                next(iter(models)).layers[0].weight.fill_(math.nan)

    import snn2loihi.train.trainer as trainer

    models = []
    original = trainer.build_run

    def build_run(*args, **kwargs):
        run = original(*args, **kwargs)
        models.append(run.model)
        return run

    trainer.build_run = build_run
    try:
        with pytest.raises(TrainingDivergedError, match="epoch 2: the weights diverged .layer 1"):
            train(config, on_epoch_end=poison)
    finally:
        trainer.build_run = original
    state = load_checkpoint(tmp_path / "run" / LAST)
    assert state["epoch"] == 0
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (b"train:\n  steps: [1, 2\n  lr: 3\n", ("c.yaml", "line 3, column 5", "expected ','")),
        (b"[train]\nsteps = 4 # caf\xe9\n", ("c.yaml", "byte 23 is not UTF-8 (0xe9)")),
        (b"- 1\n- 2\n", ("c.yaml", "expected sections of keys, got list")),
    ],
)
def test_bad_config_files_are_one_line_and_create_nothing(tmp_path, content, words, cli_refusal):
    (tmp_path / "c.yaml").write_bytes(content)
    cli_refusal(train_argv(tmp_path / "new", "-c", tmp_path / "c.yaml"), *words)
    assert not (tmp_path / "new").exists()


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--set", "train.batch_size=0"], ("train.batch_size",)),
        (["--dataset", "npz", "--set", "data.train='missing.npz'"], ("missing.npz",)),
        (["--device", "banana"], ("train.device banana",)),
    ],
)
def test_late_errors_leave_no_run_folder(tmp_path, args, words, cli_refusal):
    cli_refusal(train_argv(tmp_path / "new", *args), *words)
    assert not (tmp_path / "new").exists()


def test_train_out_that_is_a_file_is_refused(tmp_path, cli_refusal):
    (tmp_path / "f").write_text("keep")
    cli_refusal(train_argv(tmp_path / "f"), "is a file")
    assert (tmp_path / "f").read_text() == "keep"


def test_demo_validates_before_any_work(tmp_path, cli_refusal):
    cli_refusal(["demo", "--out", tmp_path / "d", "--samples", "0"], "--samples 0 must be >= 1")
    cli_refusal(["demo", "--out", tmp_path / "d", "--steps", "0"], "train.steps")
    assert not (tmp_path / "d").exists()
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "report.json").write_text("{}")
    cli_refusal(["demo", "--out", tmp_path / "d"], "holds a demo run", "--force")
    assert (tmp_path / "d" / "report.json").read_text() == "{}"


def test_a_failed_demo_leaves_no_empty_out_it_created(tmp_path, monkeypatch, cli_refusal):
    """A failure after the demo made its --out (here: in training) removes the folders it left
    empty; files are never removed."""
    from snn2loihi.app import demo
    from snn2loihi.errors import InputDataError

    def fail(config, force):
        Path(config.output.dir).mkdir(parents=True, exist_ok=True)  # <out>/train
        raise InputDataError("training failed")

    monkeypatch.setattr(demo, "_train", fail)
    assert "training failed" in cli_refusal(["demo", "--out", tmp_path / "d"])
    assert not (tmp_path / "d").exists()
    (tmp_path / "kept").mkdir()
    assert "training failed" in cli_refusal(["demo", "--out", tmp_path / "kept"])
    assert (tmp_path / "kept").is_dir()  # not created by the demo: left as it was
    assert not (tmp_path / "kept" / "train").exists()


def test_a_checkpoint_with_negative_steps_names_the_field(finished_run, tmp_path, cli_refusal):
    state = load_checkpoint(finished_run / LAST)
    state["config"]["train"]["steps"] = -4
    torch.save(state, tmp_path / "t.pt")
    cli_refusal(["export", tmp_path / "t.pt", "--out", tmp_path / "m.net"], "train.steps", "-4")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.pt"]


def test_weights_that_overflow_stop_training_as_diverged(tmp_path, cli_refusal):
    """``train.lr = 2^64``: the quantized branch met weights that overflowed (its refusal blamed
    --mean/--std); the run stops as diverged, naming train.lr (fuzz round)."""
    tiny = ["--set", "model.arch='custom'", "--set", "model.convs=['8']", "--set", "model.dense=[]"]
    err = cli_refusal(
        [
            "train",
            "--epochs",
            "1",
            "--steps",
            "2",
            *tiny,
            "--set",
            f"train.lr={2**64}",
            "--out",
            tmp_path / "run",
            "--no-progress",
        ]  # fmt: skip
    )
    assert "epoch 1: the weights diverged (layer 1: the folded" in err
    assert "lower train.lr" in err
