"""Honest model selection: disjoint seeded train/validation/test splits, the best epoch chosen on
validation only, and one test evaluation of the selected model at the end."""

from __future__ import annotations

import json

import numpy as np
import torch
from train_helpers import small_config

from snn2loihi.export.accuracy import load_eval_data
from snn2loihi.train import trainer
from snn2loihi.train.checkpoint import load_checkpoint
from snn2loihi.train.config import Config, resolve
from snn2loihi.train.data import Splits, load_datasets, split_indices

FAST = ["model.arch='custom'", "model.convs=['8', 's16']", "model.dense=[]", "train.steps=2"]


def test_split_indices_are_disjoint_complete_and_seeded():
    kept, carved = split_indices(101, 0.2, seed=3)
    assert len(carved) == 20 and len(kept) == 81
    assert sorted(torch.cat([kept, carved]).tolist()) == list(range(101))
    again = split_indices(101, 0.2, seed=3)
    assert torch.equal(again[0], kept) and torch.equal(again[1], carved)
    assert not torch.equal(split_indices(101, 0.2, seed=4)[1], carved)
    assert len(split_indices(4, 0.1, seed=0, at_least_one=True)[1]) == 1


def _pixel_ids(data) -> set[int]:
    return set(data.x[:, 0, 0, 0].tolist())


def _unique_npz(path, n: int):
    """``n`` images whose pixels all equal their index (an id that survives any split)."""
    x = np.repeat(np.arange(n, dtype=np.uint8)[:, None, None], 16, 1).reshape(n, 4, 4)
    np.savez(path, x=x, y=np.arange(n) % 5)
    return path


def test_npz_splits_are_disjoint_and_deterministic(tmp_path):
    src = _unique_npz(tmp_path / "a.npz", 200)
    over = ["data.dataset='npz'", f"data.train='{src}'", "data.val_fraction=0.25"]
    a = load_datasets(resolve(None, over).data)
    b = load_datasets(resolve(None, over).data)
    ids = [_pixel_ids(d) for d in (a.train, a.val, a.test)]
    assert [len(s) for s in ids] == [120, 40, 40]  # test 20% of 200, validation 25% of the rest
    assert not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])
    assert set.union(*ids) == set(range(200))
    for x, y in zip(a, b, strict=True):
        if not isinstance(x, int):
            assert torch.equal(x.x, y.x) and torch.equal(x.y, y.y)
    other = load_datasets(resolve(None, [*over, "data.split_seed=1"]).data)
    assert _pixel_ids(other.val) != ids[1]


def test_validation_is_carved_from_training_data_only(tmp_path):
    train = _unique_npz(tmp_path / "a.npz", 100)
    test = tmp_path / "b.npz"
    np.savez(test, x=np.full((7, 4, 4), 250, np.uint8), y=np.arange(7) % 5)
    s = load_datasets(
        resolve(None, ["data.dataset='npz'", f"data.train='{train}'", f"data.test='{test}'"]).data
    )
    assert len(s.test) == 7 and _pixel_ids(s.test) == {250}
    assert len(s.val) == 10 and _pixel_ids(s.train) | _pixel_ids(s.val) == set(range(100))
    assert not _pixel_ids(s.train) & _pixel_ids(s.val)


def test_digits_keep_their_test_split_and_export_reads_the_named_split(tmp_path):
    cfg = small_config(tmp_path)
    s = load_datasets(cfg.data)
    assert (len(s.train), len(s.val), len(s.test)) == (1294, 144, 359)
    for name in ("train", "val", "test"):
        got = load_eval_data(cfg.data, name)
        assert torch.equal(got.x, getattr(s, name).x) and torch.equal(got.y, getattr(s, name).y)


class _Sealed:
    """A test split whose images and labels may be read only while ``open`` is set."""

    def __init__(self, data):
        self._data, self.open, self.reads = data, False, 0

    def __len__(self):
        return len(self._data)

    def _read(self, name):
        assert self.open, f"test split .{name} read during training"
        self.reads += 1
        return getattr(self._data, name)

    x = property(lambda self: self._read("x"))
    y = property(lambda self: self._read("y"))


def test_selection_reads_validation_only_and_tests_the_best_model_once(tmp_path, monkeypatch):
    torch.set_num_threads(1)
    seen: dict = {}

    def sealed_datasets(cfg):
        s = load_datasets(cfg)
        seen["splits"] = Splits(s.train, s.val, _Sealed(s.test), s.num_classes)
        return seen["splits"]

    calls = []
    real_evaluate = trainer.evaluate

    def spy(model, data, **kw):
        sealed = isinstance(data, _Sealed)
        calls.append("test" if sealed else "val" if data is seen["splits"].val else "other")
        if not sealed:
            return real_evaluate(model, data, **kw)
        seen["tested"] = {k: v.clone() for k, v in model.state_dict().items()}
        data.open = True
        try:
            return real_evaluate(model, data, **kw)
        finally:
            data.open = False

    monkeypatch.setattr(trainer, "load_datasets", sealed_datasets)
    monkeypatch.setattr(trainer, "evaluate", spy)
    cfg = small_config(tmp_path, *FAST, "train.epochs=3")
    metrics = trainer.train(cfg)

    assert calls == ["val", "val", "val", "test"]
    assert seen["splits"].test.reads > 0
    val_accs = [h["snn_acc"] for h in metrics["history"]]
    best = load_checkpoint(tmp_path / "run" / "best.pt")
    assert best["epoch"] == metrics["best_epoch"] == int(np.argmax(val_accs))
    for key, value in best["model"].items():
        assert torch.equal(seen["tested"][key], value), key
    saved = json.loads((tmp_path / "run" / "test.json").read_text())
    assert saved["test_snn_acc"] == metrics["test_snn_acc"] and saved["samples"] == 359
    assert saved["val_snn_acc"] == max(val_accs) and 0 <= metrics["test_ann_acc"] <= 1


def test_config_round_trips_and_old_checkpoint_dicts_load(tmp_path):
    cfg = small_config(tmp_path, "data.val_fraction=0.2")
    assert Config.from_dict(cfg.to_dict()) == cfg
    old = cfg.to_dict()
    del old["data"]["val_fraction"]  # written before validation splits existed
    assert Config.from_dict(old).data.val_fraction == 0.1
    torch.save({"config": cfg.to_dict()}, tmp_path / "c.pt")
    assert torch.load(tmp_path / "c.pt", weights_only=True)["config"] == cfg.to_dict()
