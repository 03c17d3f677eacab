"""`snn2loihi eval` as a user runs it: a checkpoint (exported in memory) or a .net, the data
training reads, both back ends with their parity, and one-line refusals."""

from __future__ import annotations

import json
import shutil

import h5py
import numpy as np
import pytest
from cli_helpers import run_cli

from snn2loihi.app.cli import main
from snn2loihi.export.exporter import export_checkpoint
from snn2loihi.train.checkpoint import BEST
from snn2loihi.train.config import resolve
from snn2loihi.train.data import load_datasets


@pytest.fixture(scope="module")
def trained(digits_run):
    """The session's one-epoch digits run: (run folder, its config, its test figures)."""
    metrics = json.loads((digits_run / "test.json").read_text())
    return digits_run, resolve(digits_run / "config.toml", []), metrics


@pytest.fixture(scope="module")
def exported(trained, tmp_path_factory):
    """Its best.pt exported once (``export --no-accuracy``), for the tests that read a .net."""
    net = tmp_path_factory.mktemp("eval") / "m.net"
    export_checkpoint(trained[0] / BEST, net, accuracy=False)
    return net


@pytest.mark.multiprocess
@pytest.mark.lava
def test_checkpoint_eval_is_the_deployed_test_accuracy_on_both_back_ends(trained, tmp_path):
    run, _, metrics = trained
    res = run_cli(
        "eval",
        run / BEST,
        "--backend",
        "both",
        "--json",
        tmp_path / "e.json",
        "--plot",
        tmp_path / "cm.png",
        "--no-progress",
    )
    assert res.returncode == 0, res.stderr
    report = json.loads((tmp_path / "e.json").read_text())
    emu, lava = report["scores"]["emulator"], report["scores"]["lava"]
    assert report["samples"] == metrics["samples"] == 359 and report["steps"] == 3
    # the integer SNN branch on best.pt (training's test figure) == the deployed network
    assert emu["accuracy"] == pytest.approx(metrics["test_snn_acc"], abs=1e-12)
    assert emu["predictions"] == lava["predictions"] and emu["confusion"] == lava["confusion"]
    assert np.trace(np.array(emu["confusion"])) == emu["correct"]
    assert report["agreement"] == {
        "equal_predictions": 359,
        "samples": 359,
        "output_spikes_equal": True,
        "readout_v_equal": True,
        "equal": True,
    }
    assert f"accuracy {emu['accuracy']:.2%} ({emu['correct']}/359)" in res.stdout
    assert (tmp_path / "cm.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _cli(capsys, *args) -> str:
    """``snn2loihi ARGS`` in-process (the entry point's own test: tests/test_cli.py); it must
    exit 0. Returns what it printed."""
    capsys.readouterr()
    assert main([*map(str, args)]) == 0
    return capsys.readouterr().out


def test_a_net_file_on_npz_images_predicts_what_run_predicts(trained, exported, tmp_path, capsys):
    _, config, _ = trained
    net = exported
    test = load_datasets(config.data).test
    x, y = test.x.numpy()[:50], test.y.numpy()[:50]
    np.savez(tmp_path / "d.npz", x=x[:, 0], y=y)  # NHW as training's npz loader reads it
    _cli(
        capsys,
        "eval",
        net,
        "--data",
        tmp_path / "d.npz",
        "--steps",
        3,
        "--json",
        tmp_path / "e.json",
    )
    ev = json.loads((tmp_path / "e.json").read_text())["scores"]["emulator"]
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    args = ["--input", tmp_path / "x.npy", "--labels", tmp_path / "y.npy", "--steps", 3]
    stdout = _cli(capsys, "run", net, *args, "--out", tmp_path / "s.npy")
    shown = stdout.split("predicted classes")[1].split(": ", 1)[1].split("]")[0]
    assert [int(v) for v in shown.strip("[").split(",")] == ev["predictions"][:20]
    assert f"accuracy {ev['accuracy']:.2%} ({ev['correct']}/50)" in stdout


def test_eval_on_the_checkpoint_matches_eval_on_its_export(trained, exported, tmp_path, capsys):
    run, _, _ = trained
    _cli(capsys, "eval", run / BEST, "--samples", 80, "--json", tmp_path / "a.json")
    flags = ["--dataset", "digits", "--samples", 80]  # no --steps: the file records T = 3
    _cli(capsys, "eval", exported, *flags, "--json", tmp_path / "b.json")
    sa = json.loads((tmp_path / "a.json").read_text())["scores"]["emulator"]
    sb = json.loads((tmp_path / "b.json").read_text())["scores"]["emulator"]
    assert sa == sb


@pytest.mark.parametrize(
    ("case", "words"),
    [
        ("net_without_steps", ("give --steps T",)),
        ("net_without_data", ("needs --data",)),
        ("wrong_image_shape", ("images have shape (3, 8, 8), the network takes (1, 8, 8)",)),
        ("too_many_classes", ("label 12", "outside the network's 10 classes")),
    ],
)
def test_bad_evals_are_one_line(exported, tmp_path, case, words, cli_refusal):
    rng = np.random.default_rng(0)
    np.savez(
        tmp_path / "rgb.npz", x=rng.integers(0, 256, (4, 8, 8, 3), dtype=np.uint8), y=np.arange(4)
    )
    np.savez(
        tmp_path / "c.npz",
        x=rng.integers(0, 256, (4, 8, 8), dtype=np.uint8),
        y=np.array([0, 1, 12, 2]),
    )
    args = {
        "net_without_steps": ["--data", tmp_path / "c.npz"],  # the file's 'steps' removed
        "net_without_data": ["--steps", 3],
        "wrong_image_shape": ["--data", tmp_path / "rgb.npz", "--steps", 3],
        "too_many_classes": ["--data", tmp_path / "c.npz", "--steps", 3],
    }[case]
    net = exported
    if case == "net_without_steps":  # as lava-dl's own files: no root attribute 'steps'
        net = tmp_path / "no_steps.net"
        shutil.copyfile(exported, net)
        with h5py.File(net, "a") as f:
            del f.attrs["steps"]
    cli_refusal(["eval", net, *args], *words)


@pytest.mark.slow
@pytest.mark.multiprocess
def test_compiled_eval_gives_the_same_predictions_and_spikes(trained, tmp_path):
    """`eval --compile` (fused neuron kernels) scores every sample as the plain emulator
    (T = 9: two compiled chunks of STEP_CHUNK steps and one eager step)."""
    run, _, _ = trained
    reports = []
    for flags in ((), ("--compile",)):
        out = tmp_path / f"e{len(flags)}.json"
        res = run_cli("eval", run / BEST, "--steps", 9, "--json", out, "--no-progress", *flags)
        assert res.returncode == 0, res.stderr
        reports.append(json.loads(out.read_text())["scores"]["emulator"])
    plain, compiled = reports
    assert compiled["predictions"] == plain["predictions"] and len(plain["predictions"]) == 359
    assert compiled["spikes_per_sample"] == plain["spikes_per_sample"] > 0
    assert compiled["confusion"] == plain["confusion"]
