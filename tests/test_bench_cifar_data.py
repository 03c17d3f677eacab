"""bench/cifar_data.py: the JPEG CIFAR-10 copy decoded once and cached, and its seeded subsets."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from cifar_data import cached_cifar, subset_indices  # bench/: pytest's pythonpath
from PIL import Image


def _fake_source(path: Path, n_train: int = 12, n_test: int = 6) -> dict:
    """A file in the shared copy's layout (empty common header: each payload a whole JPEG)."""
    rng = np.random.default_rng(0)
    arrays: dict = {"jpeg_header": np.zeros(0, dtype=np.uint8)}
    decoded = {}
    for split, n in (("train", n_train), ("test", n_test)):
        blobs, images = [], []
        for _ in range(n):
            buf = io.BytesIO()
            Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(buf, "JPEG")
            blobs.append(np.frombuffer(buf.getvalue(), dtype=np.uint8))
            images.append(np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB")))
        arrays[f"{split}_payload"] = np.concatenate(blobs)
        arrays[f"{split}_offsets"] = np.cumsum([0] + [len(b) for b in blobs]).astype(np.int64)
        arrays[f"{split}_y"] = (np.arange(n) % 10).astype(np.uint8)
        decoded[split] = np.stack(images)
    np.savez(path, **arrays)
    return decoded


def test_decoded_once_cached_and_subsets_agree(tmp_path):
    src = tmp_path / "cifar10_jpeg.npz"
    decoded = _fake_source(src)
    # a subset first (no full cache yet): only those images are decoded
    sub_train, sub_test = cached_cifar(src, tmp_path / "a", train_subset=5, test_subset=3)
    assert not (tmp_path / "a" / "cifar10_train.npz").exists()
    idx = subset_indices(12, 5, 0)
    assert list(idx) == sorted(idx) and len(set(idx)) == 5
    with np.load(sub_train) as f:
        np.testing.assert_array_equal(f["x"], decoded["train"][idx])
        np.testing.assert_array_equal(f["y"], idx % 10)
    # the whole set: decoded once, then reused while the source is unchanged
    train, test = cached_cifar(src, tmp_path / "b")
    with np.load(train) as f, np.load(test) as g:
        np.testing.assert_array_equal(f["x"], decoded["train"])
        np.testing.assert_array_equal(g["x"], decoded["test"])
        assert f["y"].dtype == np.int64 and f["x"].dtype == np.uint8
    before = train.stat().st_mtime_ns
    assert cached_cifar(src, tmp_path / "b") == (train, test)
    assert train.stat().st_mtime_ns == before
    # subsets cut from the cache equal those decoded alone
    sub_b, _ = cached_cifar(src, tmp_path / "b", train_subset=5, test_subset=3)
    with np.load(sub_b) as f, np.load(sub_train) as g:
        np.testing.assert_array_equal(f["x"], g["x"])
