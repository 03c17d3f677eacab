"""The shared JPEG copy of CIFAR-10 as the ``.npz`` files the trainer loads (x uint8 NHWC, y).

``cifar10_jpeg.npz`` holds one JPEG header and per-image payloads (see the data's README). The
whole set is decoded once into ``<cache>/cifar10_{train,test}.npz`` (reused while the source's
size and modification time are unchanged); seeded random subsets (the splits are sorted by
class) are written beside them, decoded alone when the full set is not cached yet.
"""

from __future__ import annotations

import io
import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

SOURCE = Path("cifar10-jpeg") / "cifar10_jpeg.npz"


def find_data(*candidates: str | Path) -> Path:
    """The first folder of ``candidates`` that holds the JPEG CIFAR-10 copy (else the first)."""
    for c in candidates:
        if (Path(c) / SOURCE).is_file():
            return Path(c)
    return Path(candidates[0])


def decode_split(z, split: str, indices: np.ndarray | None = None, workers: int = 0):
    """``(x (N, 32, 32, 3) uint8, y (N,) int64)`` of ``split`` (all images, or ``indices``)."""
    from PIL import Image

    header = z["jpeg_header"].tobytes()
    payload, offsets = z[f"{split}_payload"], z[f"{split}_offsets"]
    y = z[f"{split}_y"].astype(np.int64)
    idx = np.arange(len(y)) if indices is None else np.asarray(indices)

    def decode(chunk: np.ndarray) -> np.ndarray:
        out = np.empty((len(chunk), 32, 32, 3), dtype=np.uint8)
        for j, i in enumerate(chunk):
            data = header + payload[offsets[i] : offsets[i + 1]].tobytes()
            out[j] = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), dtype=np.uint8)
        return out

    chunks = np.array_split(idx, max(1, len(idx) // 2000))
    workers = workers or min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        x = np.concatenate(list(pool.map(decode, chunks)))
    return x, y[idx]


def _stamp(src: Path) -> dict:
    st = src.stat()
    return {"source": str(src.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _save(path: Path, x: np.ndarray, y: np.ndarray) -> Path:
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, x=x, y=y)
    tmp.replace(path)
    return path


def subset_indices(n: int, size: int, seed: int) -> np.ndarray:
    """Seeded random ``size`` of ``range(n)``, sorted (the splits are ordered by class)."""
    return np.sort(np.random.default_rng(seed).permutation(n)[:size])


def cached_cifar(
    src: Path,
    cache: Path,
    *,
    train_subset: int | None = None,
    test_subset: int | None = None,
    seed: int = 0,
) -> tuple[Path, Path]:
    """Paths of the train and test ``.npz`` files (whole splits, or seeded subsets)."""
    cache.mkdir(parents=True, exist_ok=True)
    stamp_file = cache / "cifar10_source.json"
    full = {s: cache / f"cifar10_{s}.npz" for s in ("train", "test")}
    cached = (
        all(p.is_file() for p in full.values())
        and stamp_file.is_file()
        and json.loads(stamp_file.read_text()) == _stamp(src)
    )
    subsets = {"train": train_subset, "test": test_subset}
    if not cached and not all(subsets.values()):  # some split is needed whole: decode all once
        with np.load(src) as z:
            for split, path in full.items():
                _save(path, *decode_split(z, split))
        stamp_file.write_text(json.dumps(_stamp(src)) + "\n")
        cached = True
    out = []
    for split, size in subsets.items():
        if not size:
            out.append(full[split])
            continue
        path = cache / f"cifar10_{split}_{size}_seed{seed}.npz"
        if not (
            path.is_file() and cached and path.stat().st_mtime_ns >= full[split].stat().st_mtime_ns
        ):
            if cached:
                with np.load(full[split]) as f:
                    idx = subset_indices(len(f["y"]), size, seed)
                    _save(path, f["x"][idx], f["y"][idx])
            else:
                with np.load(src) as z:
                    idx = subset_indices(len(z[f"{split}_y"]), size, seed)
                    _save(path, *decode_split(z, split, idx))
        out.append(path)
    return out[0], out[1]


def main(argv: list[str] | None = None) -> int:
    """``python bench/cifar_data.py [DATA] [--cache DIR]``: decode the shared JPEG copy once and
    print the paths of ``cifar10_train.npz`` and ``cifar10_test.npz`` (what ``snn2loihi eval
    --data`` and ``train`` read)."""
    import argparse

    root = Path(__file__).resolve().parents[1]
    p = argparse.ArgumentParser(description=main.__doc__)
    p.add_argument("data", nargs="?", type=Path, help="folder with cifar10-jpeg/ (default: "
                   "../shared/data beside the repository)")  # fmt: skip
    p.add_argument("--cache", type=Path, default=root / "runs" / "cache" / "cifar10")
    args = p.parse_args(argv)
    data = args.data or find_data(root / "shared" / "data", root.parent / "shared" / "data")
    if not (data / SOURCE).is_file():
        p.error(f"{data / SOURCE}: no JPEG CIFAR-10 copy (give the data folder)")
    for path in cached_cifar(data / SOURCE, args.cache):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
