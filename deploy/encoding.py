"""What a labelled data set feeds a network: images shown for T steps (graded or rate coded), or
the user's own streams.

- ``graded``: each uint8 pixel is the graded input of every one of the T steps (as snn2loihi's
  training encodes images).
- ``rate``: the deterministic integrate-and-fire encoder of lava-dl's NetX MNIST tutorial
  (``tutorials/lava/lib/dl/netx/mnist/run.ipynb``, ``InpImgToSpk``, which feeds
  ``trained_mnist_network.net``): one float64 ``v`` per pixel. At an image's first step the
  encoder has just been reset (``v = 0``) and the image is loaded after it: that step sends no
  spike. At every later step ``v += pixel / 255``; where ``v > 1`` (threshold 1, strictly) a
  spike is sent and ``v = 0``. A pixel of 255 spikes every second step from the third.
- streams: a ``.npz`` with ``x`` (N, T, *input_shape), spikes or 8-bit graded values per step
  (frame t at step t), and labels ``y`` (N,).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from snn2loihi.arrays import load_npz, npz_header
from snn2loihi.deploy.inputs import check_input_budget, check_labels, check_values
from snn2loihi.errors import InputDataError

ENCODINGS = ("graded", "rate")
RATE_THRESHOLD = 1.0  # the tutorial's v_thr, on pixel / 255


def rate_encode(images: np.ndarray, steps: int) -> np.ndarray:
    """Spikes (N, T, *shape) uint8 of the tutorial's encoder (module docstring) for uint8
    ``images`` (N, *shape) shown for ``steps`` steps each, every image from a reset encoder."""
    if steps < 1:
        raise InputDataError(f"rate coding needs steps >= 1, got {steps}")
    drive = np.asarray(images) / 255  # float64, as the tutorial's img / 255
    out = np.zeros((len(drive), steps, *drive.shape[1:]), dtype=np.uint8)
    v = np.zeros(drive.shape, dtype=np.float64)
    for t in range(1, steps):  # step 1 (t = 0): the reset encoder sends nothing
        v = v + drive
        fired = v > RATE_THRESHOLD
        v[fired] = 0.0
        out[:, t] = fired
    return out


class RateEncoded:
    """Images rate coded chunk by chunk when sliced (``x[lo:hi]`` -> (n, T, *shape) uint8
    spikes), so that N images never need N * T frames at once."""

    def __init__(self, images: np.ndarray, steps: int):
        self.images, self.steps = images, steps
        self.shape = (len(images), steps, *images.shape[1:])
        self.ndim = len(self.shape)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: slice) -> np.ndarray:
        return rate_encode(self.images[index], self.steps)


@dataclass
class Stream:
    """Labelled streams: ``x`` (N, T, *input_shape) spikes or 8-bit graded values, ``y`` (N,)
    int64; ``source`` names the file."""

    x: np.ndarray
    y: np.ndarray
    source: str

    def __len__(self) -> int:
        return len(self.x)

    @property
    def steps(self) -> int:
        return int(self.x.shape[1])


def is_stream(shape: tuple[int, ...] | None, input_shape: tuple[int, ...]) -> bool:
    """Whether an ``x`` of ``shape`` holds streams (N, T, *frame) for a network taking
    ``input_shape``: two leading axes before a frame of as many axes (a flat input (K,): unless
    (N, H, W) images of K pixels, which are flattened)."""
    if shape is None or len(shape) != 2 + len(input_shape):
        return False
    flat_images = shape[1] * shape[2] == input_shape[0] and shape[2] != input_shape[0]
    return len(input_shape) > 1 or not flat_images


def stream_header(path: str | Path, input_shape: tuple[int, ...]) -> tuple[int, ...] | None:
    """The shape of ``x`` in the ``.npz`` ``path`` if it holds streams for ``input_shape`` (from
    its header alone), else None."""
    header = npz_header(path, "x")
    shape = None if header is None else tuple(int(d) for d in header[0])
    return shape if is_stream(shape, tuple(input_shape)) else None


def load_stream(
    path: str | Path,
    input_shape: tuple[int, ...],
    classes: int,
    steps: int | None = None,
    samples: int | None = None,
) -> Stream:
    """The streams of ``path`` (``x`` (N, T, *input_shape), ``y`` (N,) in ``0..classes-1``),
    the first ``steps`` steps and ``samples`` samples kept. Refused (naming the file, the field
    and the value): frames of another shape, fewer than ``steps`` steps, values that are not
    spikes or integers 0..255, labels that are not ``N`` classes of the network."""
    shape = tuple(int(d) for d in input_shape)
    header = npz_header(path, "x")
    if header is not None:  # before anything is decompressed
        _check_frames(path, tuple(int(d) for d in header[0]), shape, steps)
        n = header[0][0] if samples is None else min(samples, header[0][0])
        check_input_budget(n, steps or header[0][1], shape, f"{path}[x]: {n} streams")
    arrays = load_npz(path, ("x", "y"))
    x, y = arrays["x"], arrays["y"]
    _check_frames(path, x.shape, shape, steps)
    if x.dtype.kind not in "biuf":
        raise InputDataError(f"{path}[x]: dtype {x.dtype} is not numeric")
    y = check_labels(y, len(x), classes, f"{path}[y]")
    x, y = x[:samples, :steps], y[:samples]
    check_values(x, f"{path}[x]")
    return Stream(x, y, str(path))


def _check_frames(path, shape: tuple[int, ...], input_shape: tuple[int, ...], steps) -> None:
    frames = ", ".join(map(str, input_shape))
    if len(shape) != 2 + len(input_shape) or tuple(shape[2:]) != input_shape:
        raise InputDataError(
            f"{path}[x]: shape {tuple(shape)}, expected streams (samples, steps, {frames}) for "
            f"the network's input ({frames})"
        )
    if min(shape[:2]) < 1:
        raise InputDataError(f"{path}[x]: shape {tuple(shape)} holds no samples or no steps")
    if steps is not None and steps > shape[1]:
        raise InputDataError(
            f"{path}[x]: T = {shape[1]} steps, fewer than the {steps} asked for (--steps)"
        )
