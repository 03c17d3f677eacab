"""Config files, overrides and up-front validation; the CLI turns errors into one line, exit 2."""

from __future__ import annotations

import numpy as np
import pytest
from train_helpers import small_config

from snn2loihi.app.cli import main
from snn2loihi.errors import ConfigError, Snn2LoihiError
from snn2loihi.train.config import parse_override, resolve
from snn2loihi.train.data import load_datasets


def test_toml_and_yaml_files_merge_with_overrides(tmp_path):
    toml = tmp_path / "c.toml"
    toml.write_text('[train]\nsteps = 2\nlr = 1\n[ata]\ngranularity = "channel"\n')
    cfg = resolve(toml, ["train.steps=3"])
    assert cfg.train.steps == 3 and cfg.train.lr == 1.0
    assert cfg.ata.granularity == "channel"
    yaml = tmp_path / "c.yaml"
    yaml.write_text("model:\n  arch: custom\n  convs: ['16', 's32']\n  dense: [64]\n")
    cfg = resolve(yaml)
    assert cfg.model.convs == ["16", "s32"] and cfg.model.dense == [64]


def test_override_values_are_read_as_toml():
    assert parse_override("train.steps=4") == {"train": {"steps": 4}}
    assert parse_override("train.float_snn=true") == {"train": {"float_snn": True}}
    assert parse_override("output.dir=/tmp/x") == {"output": {"dir": "/tmp/x"}}


@pytest.mark.parametrize(
    "override, needle",
    [
        ("train.stepz=4", "train.stepz"),
        ("trian.steps=4", "trian"),
        ("train.steps=0", "train.steps = 0"),
        ("train.steps=-2", "train.steps = -2"),
        ("train.steps='four'", "train.steps"),
        ("train.method='sgd'", "train.method = 'sgd'"),
        ("ata.granularity='pixel'", "ata.granularity"),
        ("model.convs=['x9']", "model.convs"),
        ("data.dataset='mnist'", "data.root"),
        ("train.lr=nan", "train.lr = nan must be a finite number"),
        ("train.lr=inf", "train.lr = inf must be a finite number"),
        ("model.threshold=inf", "model.threshold = inf must be a finite number"),
        ("model.threshold=0", "model.threshold = 0.0 must be >= 1e-09"),
        ("model.threshold=-1", "model.threshold = -1.0 must be"),
        ("ata.tolerance=-inf", "ata.tolerance = -inf"),
        ("ata.tolerance=1.5", "ata.tolerance = 1.5 must be in"),
        ("bptt.leak=nan", "bptt.leak = nan"),
        ("data.test_fraction=1.0", "data.test_fraction = 1.0"),
        ("data.flip='no'", "data.flip"),
        ("train.batch_size=18446744073709551616", "does not fit a signed 64-bit integer"),
    ],
)
def test_bad_keys_and_values_name_the_key_and_value(override, needle):
    with pytest.raises(ConfigError, match=needle.replace(".", r"\.").replace("'", ".")):
        resolve(None, [override])


def _npz(path, x, y):
    np.savez(path, x=x, y=y)
    return str(path)


def test_empty_dataset_is_refused(tmp_path):
    train = _npz(tmp_path / "a.npz", np.zeros((0, 8, 8), np.uint8), np.zeros(0, np.int64))
    test = _npz(tmp_path / "b.npz", np.zeros((3, 8, 8), np.uint8), np.zeros(3, np.int64))
    cfg = resolve(None, ["data.dataset='npz'", f"data.train='{train}'", f"data.test='{test}'"])
    with pytest.raises(ConfigError, match="train split is empty"):
        load_datasets(cfg.data)


def test_labels_out_of_range_are_refused(tmp_path):
    x = np.zeros((4, 8, 8, 1), np.uint8)
    train = _npz(tmp_path / "a.npz", x, np.array([0, 1, 2, 7]))
    cfg = resolve(
        None,
        ["data.dataset='npz'", f"data.train='{train}'", "data.num_classes=5"],
    )
    with pytest.raises(ConfigError, match=r"data.num_classes = 5: .* labels span \[\d, 7\]"):
        load_datasets(cfg.data)


def test_npz_dataset_loads_nhwc_and_splits(tmp_path):
    x = np.random.randint(0, 256, (20, 6, 6, 3)).astype(np.uint8)
    train = _npz(tmp_path / "a.npz", x, np.arange(20) % 4)
    cfg = resolve(
        None,
        ["data.dataset='npz'", f"data.train='{train}'", "data.test_fraction=0.25"]
        + ["data.val_fraction=0.2"],
    )
    tr, va, te, classes = load_datasets(cfg.data)
    assert classes == 4 and len(tr) == 12 and len(va) == 3 and len(te) == 5
    assert tuple(tr.x.shape[1:]) == (3, 6, 6)


def test_digits_are_uint8_0_255(tmp_path):
    cfg = small_config(tmp_path)
    tr, va, te, classes = load_datasets(cfg.data)
    assert classes == 10 and tr.x.dtype.is_floating_point is False
    assert int(tr.x.max()) == 255 and len(tr) + len(va) + len(te) == 1797


def test_cli_reports_config_errors_on_one_line(tmp_path, capsys):
    rc = main(["train", "--set", "train.steps=0", "--out", str(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "\n" not in err and "train.steps = 0" in err
    bad = tmp_path / "c.toml"
    bad.write_text("[train]\nnope = 1\n")
    rc = main(["train", "--config", str(bad)])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "train.nope" in err


def test_config_error_is_a_snn2loihi_error():
    assert issubclass(ConfigError, Snn2LoihiError)


def test_non_finite_values_in_a_config_file_are_refused(tmp_path):
    toml = tmp_path / "c.toml"
    toml.write_text("[train]\nweight_decay = nan\n")
    with pytest.raises(ConfigError, match=r"train\.weight_decay = nan must be a finite number"):
        resolve(toml)
