"""Data sources and augmentation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from snn2loihi.errors import ConfigError
from snn2loihi.train.config import resolve
from snn2loihi.train.data import alternating_flips, augment, load_datasets


def test_augment_crops_with_zero_padding_and_flips_deterministically():
    x = torch.arange(2 * 3 * 6 * 6, dtype=torch.int64).remainder(250).add(1).to(torch.uint8)
    x = x.view(2, 3, 6, 6)
    a = augment(x, torch.Generator().manual_seed(0), crop_padding=2)
    b = augment(x, torch.Generator().manual_seed(0), crop_padding=2)
    assert a.shape == x.shape and a.dtype == torch.uint8 and torch.equal(a, b)
    for i in range(2):  # every crop is a shifted (maybe flipped) window of the padded image
        padded = torch.nn.functional.pad(x[i], (2, 2, 2, 2))
        windows = [
            padded[:, r : r + 6, c : c + 6].flip(2) if f else padded[:, r : r + 6, c : c + 6]
            for r in range(5)
            for c in range(5)
            for f in (0, 1)
        ]
        assert any(torch.equal(a[i], w) for w in windows)
    same = augment(x, torch.Generator(), crop_padding=0, flip=False)
    assert torch.equal(same, x)


def test_alternating_flips_see_each_image_both_ways_in_two_epochs():
    idx = torch.tensor([5, 0, 3, 9, 7])
    e0, e1, e2 = (alternating_flips(10, 3, e)[idx] for e in range(3))
    assert torch.equal(e0, ~e1) and torch.equal(e0, e2)  # flipped in every other epoch
    assert torch.equal(e0, alternating_flips(10, 3, 0)[idx.flip(0)].flip(0))  # per image
    assert torch.equal(alternating_flips(10, 3, 0), alternating_flips(10, 3, 0))  # seeded
    coins = alternating_flips(10_000, 3, 0)
    assert 4800 < int(coins.sum()) < 5200  # a fair coin in the first epoch
    x = torch.arange(2 * 1 * 2 * 3, dtype=torch.uint8).view(2, 1, 2, 3)
    out = augment(x, torch.Generator(), crop_padding=0, flips=torch.tensor([True, False]))
    assert torch.equal(out[0], x[0].flip(2)) and torch.equal(out[1], x[1])


def test_imagefolder_reads_class_folders(tmp_path):
    for split in ("train", "test"):
        for label in ("cat", "dog"):
            d = tmp_path / split / label
            d.mkdir(parents=True)
            for i in range(2):
                Image.fromarray(np.full((5, 5, 3), 40 * i, np.uint8)).save(d / f"{i}.png")
    cfg = resolve(None, ["data.dataset='imagefolder'", f"data.root='{tmp_path}'"])
    train, val, test, classes = load_datasets(cfg.data)
    assert classes == 2 and len(train) + len(val) == 4 and tuple(train.x.shape[1:]) == (3, 5, 5)
    assert sorted(train.y.tolist() + val.y.tolist()) == [0, 0, 1, 1]
    assert test.y.tolist() == [0, 0, 1, 1]


def test_missing_torchvision_folder_names_the_root(tmp_path):
    cfg = resolve(None, ["data.dataset='cifar10'", f"data.root='{tmp_path}'"])
    with pytest.raises(ConfigError, match="data.root"):
        load_datasets(cfg.data)


def _npz_config(tmp_path, x, y, test=None):
    np.savez(tmp_path / "a.npz", x=x, y=y)
    overrides = ["data.dataset='npz'", f"data.train='{tmp_path / 'a.npz'}'"]
    if test is not None:
        np.savez(tmp_path / "b.npz", x=test[0], y=test[1])
        overrides.append(f"data.test='{tmp_path / 'b.npz'}'")
    return resolve(None, overrides).data


@pytest.mark.parametrize(
    ("x", "y", "needle"),
    [
        (np.full((4, 3, 3), np.nan), np.arange(4), r"image value nan at index \(0, 0, 0, 0\)"),
        (np.full((4, 3, 3), 300.0), np.arange(4), r"image value 300\.0 .* not a pixel 0\.\.255"),
        (np.full((4, 3, 3), 0.5), np.arange(4), r"image value 0\.5"),
        (np.zeros((4, 3, 3), np.uint8), np.array([0, 1, 1.5, 2]), r"label 1\.5 at index \(2,\)"),
        (np.zeros((4, 3, 3), np.uint8), np.array([0, np.nan, 1, 2]), r"label nan at index \(1,\)"),
        (np.zeros((4, 3, 3), np.uint8), np.eye(4), r"labels have shape \(4, 4\)"),
        (np.zeros((4, 3, 3), np.uint8), np.arange(3), "4 images but 3 labels"),
        (np.zeros((4, 3), np.uint8), np.arange(4), r"images have shape \(4, 3\)"),
    ],
)
def test_bad_npz_images_and_labels_name_file_and_value(tmp_path, x, y, needle):
    with pytest.raises(ConfigError, match=needle) as exc:
        load_datasets(_npz_config(tmp_path, x, y))
    assert "a.npz" in str(exc.value)


def test_train_and_test_images_of_different_shapes_are_refused(tmp_path):
    x = np.zeros((4, 3, 3), np.uint8)
    cfg = _npz_config(tmp_path, x, np.arange(4), test=(np.zeros((2, 5, 5), np.uint8), [0, 1]))
    with pytest.raises(ConfigError, match=r"\(1, 3, 3\) and test images \(1, 5, 5\) differ"):
        load_datasets(cfg)


def test_empty_test_split_is_refused(tmp_path):
    x = np.zeros((4, 3, 3), np.uint8)
    cfg = _npz_config(tmp_path, x, np.arange(4), test=(np.zeros((0, 3, 3), np.uint8), []))
    with pytest.raises(ConfigError, match="the test split is empty"):
        load_datasets(cfg)
