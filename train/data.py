"""Datasets as in-memory uint8 images (N, C, H, W) with int64 labels, and batch augmentation.

Sources: ``digits`` (``sklearn.datasets.load_digits``, embedded, 8x8 values 0..16 scaled to
0..255), ``mnist``/``cifar10``/``cifar100`` (standard torchvision folders under ``root``, never
downloaded), ``imagefolder`` (``root/train`` and ``root/test`` or ``root/val``), and ``npz``
(files with ``x`` uint8 NHWC or NHW and ``y`` labels). :func:`load_datasets` returns train,
validation and test splits (:class:`Splits`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import torch

from snn2loihi.arrays import load_npz, npz_header
from snn2loihi.errors import ConfigError, InputDataError

if TYPE_CHECKING:
    from snn2loihi.train.config import DataConfig

log = logging.getLogger(__name__)

DATASETS = ("digits", "mnist", "cifar10", "cifar100", "imagefolder", "npz")


@dataclass
class ImageData:
    """``x``: uint8 (N, C, H, W); ``y``: int64 (N,)."""

    x: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def channel_stats(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """Per-channel mean and std of ``x / 255`` (accumulated in chunks, float64)."""
        c = self.x.shape[1]
        total = torch.zeros(c, dtype=torch.float64, device=self.x.device)
        total_sq = torch.zeros(c, dtype=torch.float64, device=self.x.device)
        for chunk in torch.split(self.x, 4096):
            xf = chunk.to(torch.float64).div_(255).transpose(0, 1).reshape(c, -1)
            total += xf.sum(1)
            total_sq += xf.square().sum(1)
        count = self.x.numel() / c
        mean = total / count
        std = (total_sq / count - mean.square()).clamp(min=1e-6).sqrt()
        return tuple(mean.tolist()), tuple(std.tolist())


def _first_bad(a: np.ndarray, bad: np.ndarray) -> str:
    """``value at index (i, ...)`` of the first True of ``bad``."""
    index = np.unravel_index(int(np.argmax(bad)), a.shape)
    return f"{str(a[index])} at index {tuple(int(i) for i in index)}"


def _pixels(x: np.ndarray, source: str) -> np.ndarray:
    """Non-uint8 images as uint8, if every value is an integer 0..255 (else name the first)."""
    if x.dtype.kind not in "biuf":
        raise ConfigError(f"{source}: images have dtype {x.dtype}, expected uint8 pixels 0..255")
    if x.size:
        with np.errstate(invalid="ignore"):
            bad = ~np.isfinite(x) | (x < 0) | (x > 255) | (x != np.round(x))
        if bad.any():
            raise ConfigError(
                f"{source}: image value {_first_bad(x, bad)} is not a pixel 0..255 "
                f"(dtype {x.dtype}; expected uint8)"
            )
    return x.astype(np.uint8)


def _labels(y, source: str) -> np.ndarray:
    """Labels as int64 (N,); refuses 2-D (one-hot) labels and non-integer values."""
    y = np.asarray(y)
    if y.ndim != 1:
        raise ConfigError(f"{source}: labels have shape {y.shape}, expected (N,) class indices")
    if y.dtype.kind not in "biuf":
        raise ConfigError(f"{source}: labels have dtype {y.dtype}, expected integers")
    if y.dtype.kind == "f" and y.size:
        bad = ~np.isfinite(y) | (y != np.round(y))
        if bad.any():
            raise ConfigError(f"{source}: label {_first_bad(y, bad)} is not an integer class")
    return y.astype(np.int64)


def _from_nhwc(x: np.ndarray, y: np.ndarray, source: str) -> ImageData:
    x = np.asarray(x)
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4:
        raise ConfigError(f"{source}: images have shape {x.shape}, expected NHWC or NHW")
    if x.dtype != np.uint8:
        x = _pixels(x, source)
    y = _labels(y, source)
    if len(y) != len(x):
        raise ConfigError(f"{source}: {len(x)} images but {len(y)} labels")
    xt = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
    return ImageData(xt, torch.from_numpy(y))


def split_indices(
    n: int, fraction: float, seed: int, *, at_least_one: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(kept, carved)``: sorted index tensors of a seeded random carve of ``round(n *
    fraction)`` of ``range(n)`` (at least one, if ``at_least_one`` and ``n > 0``), and the rest."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    k = int(round(n * fraction))
    if at_least_one and n > 0:
        k = max(k, 1)
    return perm[k:].sort().values, perm[:k].sort().values


def _carve(
    data: ImageData, fraction: float, seed: int, *, at_least_one: bool = False
) -> tuple[ImageData, ImageData]:
    kept, carved = split_indices(len(data), fraction, seed, at_least_one=at_least_one)
    return ImageData(data.x[kept], data.y[kept]), ImageData(data.x[carved], data.y[carved])


def _digits(cfg: DataConfig) -> tuple[ImageData, ImageData]:
    from sklearn.datasets import load_digits

    d = load_digits()
    x = np.round(d.images * (255 / 16)).astype(np.uint8)
    return _carve(_from_nhwc(x, d.target, "digits"), cfg.test_fraction, cfg.split_seed)


def _torchvision(cfg: DataConfig, name: str) -> tuple[ImageData, ImageData]:
    import torchvision

    cls = {
        "mnist": torchvision.datasets.MNIST,
        "cifar10": torchvision.datasets.CIFAR10,
        "cifar100": torchvision.datasets.CIFAR100,
    }[name]
    out = []
    for train in (True, False):
        try:
            ds = cls(cfg.root, train=train, download=False)
        except (RuntimeError, OSError) as exc:
            raise ConfigError(f"data.root = '{cfg.root}': no {name} dataset ({exc})") from None
        x = ds.data.numpy() if isinstance(ds.data, torch.Tensor) else ds.data
        out.append(_from_nhwc(x, np.asarray(ds.targets), f"{name} at {cfg.root}"))
    return out[0], out[1]


def _image_folder(root: Path, channels: int, size: int) -> ImageData:
    from PIL import Image

    classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    xs, ys = [], []
    for label, name in enumerate(classes):
        for f in sorted((root / name).iterdir()):
            if f.suffix.lower() not in (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp"):
                continue
            img = Image.open(f).convert("L" if channels == 1 else "RGB")
            if size:
                img = img.resize((size, size))
            xs.append(np.asarray(img, dtype=np.uint8))
            ys.append(label)
    if not xs:
        raise ConfigError(f"data.root = '{root}': no images found")
    shapes = {a.shape for a in xs}
    if len(shapes) > 1:
        raise ConfigError(
            f"data.root = '{root}': images differ in size {shapes}; set data.image_size"
        )
    return _from_nhwc(np.stack(xs), np.array(ys), str(root))


def _imagefolder(cfg: DataConfig) -> tuple[ImageData, ImageData]:
    root = Path(cfg.root)
    if not (root / "train").is_dir():
        raise ConfigError(f"data.root = '{root}': expected {root}/train and {root}/test (or val)")
    test_dir = root / "test" if (root / "test").is_dir() else root / "val"
    ch, size = cfg.channels or 3, cfg.image_size
    return _image_folder(root / "train", ch, size), _image_folder(test_dir, ch, size)


def npz_image_shape(path: str | Path) -> tuple[int, ...] | None:
    """(C, H, W) of the images ``x`` (NHWC or NHW) of an ``.npz``, from its header alone; None
    when the header cannot tell (the loader then says why)."""
    header = npz_header(path, "x")
    if header is None or len(header[0]) not in (3, 4):
        return None
    shape = header[0]
    return (1, *shape[1:]) if len(shape) == 3 else (shape[3], shape[1], shape[2])


def load_npz_images(path: str, key: str) -> ImageData:
    """Images and labels of one ``.npz`` file (``x`` uint8 NHWC or NHW, ``y``); ``key`` names
    the config key (or option) that gave ``path`` in errors."""
    if not path:
        raise ConfigError(f"{key} must name a .npz file for data.dataset = 'npz'")
    try:
        arrays = load_npz(path, ("x", "y"))
    except InputDataError as exc:
        raise ConfigError(f"{key} = '{path}': cannot read x/y arrays ({exc})") from None
    return _from_nhwc(arrays["x"], arrays["y"], path)


def _npz(cfg: DataConfig) -> tuple[ImageData, ImageData]:
    train = load_npz_images(cfg.train, "data.train")
    if cfg.test:
        return train, load_npz_images(cfg.test, "data.test")
    return _carve(train, cfg.test_fraction, cfg.split_seed)


class Splits(NamedTuple):
    """Train, validation and test data, and the number of classes.

    ``val`` is carved from the source's training data (``data.val_fraction``, seed
    ``data.split_seed``) and drives every training-time decision; ``test`` is the source's test
    set, or a ``data.test_fraction`` carve of a source without one, and is evaluated once at the
    end of training.
    """

    train: ImageData
    val: ImageData
    test: ImageData
    num_classes: int


def load_datasets(cfg: DataConfig) -> Splits:
    """The train / validation / test splits of the ``[data]`` config section.

    Raises :class:`ConfigError` for an empty split or labels outside ``0..num_classes-1``.
    """
    name = cfg.dataset
    if name == "digits":
        full, test = _digits(cfg)
    elif name in ("mnist", "cifar10", "cifar100"):
        full, test = _torchvision(cfg, name)
    elif name == "imagefolder":
        full, test = _imagefolder(cfg)
    elif name == "npz":
        full, test = _npz(cfg)
    else:
        raise ConfigError(f"data.dataset = '{name}' is not one of {', '.join(DATASETS)}")
    train, val = _carve(full, cfg.val_fraction, cfg.split_seed + 1, at_least_one=True)
    splits = {"train": train, "val": val, "test": test}
    for split, d in splits.items():
        if len(d) == 0:
            raise ConfigError(f"data.dataset = '{name}': the {split} split is empty")
    num_classes = cfg.num_classes or max(int(d.y.max()) for d in splits.values()) + 1
    for split, d in splits.items():
        lo, hi = int(d.y.min()), int(d.y.max())
        if lo < 0 or hi >= num_classes:
            raise ConfigError(
                f"data.num_classes = {num_classes}: {split} labels span [{lo}, {hi}], "
                f"expected 0..{num_classes - 1}"
            )
    if train.x.shape[1:] != test.x.shape[1:]:
        raise ConfigError(
            f"train images {tuple(train.x.shape[1:])} and test images {tuple(test.x.shape[1:])} differ in shape"
        )
    log.info(
        "data %s: %d train, %d validation, %d test, shape %s",
        name,
        len(train),
        len(val),
        len(test),
        tuple(train.x.shape[1:]),
    )
    return Splits(train, val, test, num_classes)


def mean_pixel(data: ImageData) -> torch.Tensor:
    """The per-channel mean of ``data`` as uint8 (C,), rounded: cutout's fill."""
    mean, _ = data.channel_stats()
    return torch.tensor([round(255 * m) for m in mean], dtype=torch.uint8)


def augment(
    x: torch.Tensor,
    generator: torch.Generator,
    crop_padding: int = 4,
    flip: bool = True,
    cutout: int = 0,
    fill: torch.Tensor | None = None,
    flips: torch.Tensor | None = None,
) -> torch.Tensor:
    """Random crop with zero padding, random horizontal flip and cutout of a uint8 batch
    (B, C, H, W).

    ``flips``: which images to flip, bool (B,) (:func:`alternating_flips`); None draws them.
    ``cutout``: side in pixels of one square per image, centred uniformly on the image and
    clipped at its borders, set to ``fill`` (uint8 (C,), e.g. the training mean; 0 if None),
    as in DeVries and Taylor (2017). The offsets, flips and squares are drawn from
    ``generator`` (CPU); the crop, flip and cutout run where ``x`` is, so a batch on a GPU never
    leaves it and gets the same pixels as on the CPU."""
    b, c, h, w = x.shape
    if crop_padding > 0:
        p = crop_padding
        padded = torch.nn.functional.pad(x, (p, p, p, p))
        dy = torch.randint(0, 2 * p + 1, (b,), generator=generator)
        dx = torch.randint(0, 2 * p + 1, (b,), generator=generator)
        rows = (dy.view(b, 1) + torch.arange(h).view(1, h)).to(x.device)
        cols = (dx.view(b, 1) + torch.arange(w).view(1, w)).to(x.device)
        idx_b = torch.arange(b, device=x.device).view(b, 1, 1, 1)
        idx_c = torch.arange(c, device=x.device).view(1, -1, 1, 1)
        x = padded[idx_b, idx_c, rows.view(b, 1, h, 1), cols.view(b, 1, 1, w)]
    if flip:
        mask = torch.rand(b, generator=generator) < 0.5 if flips is None else flips
        mask = mask.to(x.device)
        x = torch.where(mask.view(b, 1, 1, 1), x.flip(3), x)
    if cutout > 0:
        top = torch.randint(0, h, (b, 1), generator=generator) - cutout // 2
        left = torch.randint(0, w, (b, 1), generator=generator) - cutout // 2
        ys, xs = torch.arange(h).view(1, h), torch.arange(w).view(1, w)
        in_rows = (ys >= top) & (ys < top + cutout)
        in_cols = (xs >= left) & (xs < left + cutout)
        square = (in_rows.view(b, 1, h, 1) & in_cols.view(b, 1, 1, w)).to(x.device)
        value = torch.zeros(c, dtype=x.dtype) if fill is None else fill.to(x.dtype)
        x = torch.where(square, value.to(x.device).view(1, c, 1, 1), x)
    return x


def alternating_flips(n: int, seed: int, epoch: int) -> torch.Tensor:
    """Derandomized flips (Jordan, airbench, arXiv 2404.00498): image ``i`` of ``n`` is flipped
    in epoch 0 by a coin seeded with ``seed``, then in every other epoch, so each image is seen
    both ways in any two consecutive epochs. Returns bool (n,) on the CPU, one entry per image
    of the training split (index it with a batch's image indices)."""
    coins = torch.randint(0, 2, (n,), generator=torch.Generator().manual_seed(seed)).bool()
    return coins ^ bool(epoch % 2)
