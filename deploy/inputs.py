"""Input batches for deploy commands: ``.npy`` files or seeded random spikes."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from snn2loihi.arrays import load_npy, memory_budget
from snn2loihi.errors import InputDataError


def as_network_images(x: np.ndarray, input_shape: tuple[int, ...]) -> np.ndarray:
    """Images for a network with a flat input ``(K,)`` (a dense first layer): ``(N, C, H, W)``
    or ``(N, H, W)`` images holding K values each are flattened in CHW order, the order in which
    NetX's dense layer reads an image (its flatten). Anything else is returned unchanged."""
    if (
        len(input_shape) == 1
        and x.ndim > 2
        and x.shape[-1] != input_shape[0]
        and math.prod(x.shape[1:]) == input_shape[0]
    ):
        return x.reshape(x.shape[0], input_shape[0])
    return x


def load_input(
    path: str | Path,
    input_shape: tuple[int, ...],
    steps: int | None = None,
    *,
    repeat: bool = True,
    image_steps: int | None = None,
) -> np.ndarray:
    """Load (N, T, *input_shape) integers 0..255 from a ``.npy`` file (no pickles).

    Images without a time axis, (N, *input_shape), are repeated over ``steps`` (required for
    them): each pixel is the graded input of every step, as training encodes images. With
    ``repeat=False`` they are returned as they are (the bias drive of an input neuron). With a
    time axis, ``steps`` keeps the first T steps. A network with a flat input (K,) also takes
    images of K pixels, flattened in CHW order (:func:`as_network_images`).
    ``image_steps``: the T images are shown for when ``steps`` is None (the T a ``.net``
    records); it never cuts an input with a time axis.
    """
    path = Path(path)
    x = as_network_images(load_npy(path), tuple(input_shape))
    shape = ", ".join(map(str, input_shape))
    if x.dtype.kind not in "biuf":
        raise InputDataError(f"{path}: dtype {x.dtype} is not numeric")
    if repeat:  # an input neuron's bias or skip drive has its own ranges (deploy/timeline.py)
        check_values(x, path)
    if tuple(x.shape) == tuple(input_shape):  # one image, e.g. lava-dl's pilotnet_image.npy
        x = x[None]
    if x.ndim == 1 + len(input_shape) and tuple(x.shape[1:]) == tuple(input_shape):
        if x.shape[0] < 1:
            raise InputDataError(f"{path}: array has shape {x.shape}: holds no images")
        if not repeat:
            return x
        steps = image_steps if steps is None else steps
        if steps is None:
            raise InputDataError(
                f"{path}: images ({x.shape[0]}, {shape}) have no time axis; give --steps T to "
                "show each image for T steps"
            )
        check_input_budget(x.shape[0], steps, input_shape, f"{path}: {x.shape[0]} images")
        return np.broadcast_to(x[:, None], (x.shape[0], steps, *input_shape))
    if x.ndim != 2 + len(input_shape) or tuple(x.shape[2:]) != tuple(input_shape):
        raise InputDataError(
            f"{path}: array has shape {x.shape}, expected (samples, steps, {shape}) or "
            f"images (samples, {shape})"
        )
    if x.shape[0] < 1 or x.shape[1] < 1:
        raise InputDataError(
            f"{path}: array has shape {x.shape}: need at least one sample and step"
        )
    if steps is not None:
        if steps > x.shape[1]:
            raise InputDataError(f"--steps {steps} exceeds the {x.shape[1]} steps in {path}")
        x = x[:, :steps]
    return x


def check_input_budget(samples: int, steps: int, input_shape: tuple[int, ...], what: str) -> None:
    """Refuse, before allocating it, an input of ``samples`` x ``steps`` steps of one byte per
    value that would not fit the memory budget; ``what`` starts the message (e.g. the file)."""
    nbytes = samples * steps * math.prod(input_shape)
    budget = memory_budget()
    if nbytes > budget:
        raise InputDataError(
            f"{what} x {steps} steps of input {tuple(input_shape)} need {nbytes / 2**30:.3g} "
            f"GiB, more than the memory budget of {budget / 2**30:.3g} GiB"
        )


def check_values(x: np.ndarray, path) -> None:
    """Refuse values that are not spikes (0/1) or 8-bit integers 0..255, naming the file, the
    first bad value and its index. Integers cost a min and a max; the index is looked for only
    once something is wrong."""
    if x.dtype.kind == "b" or x.dtype == np.uint8 or x.size == 0:
        return
    if x.dtype.kind in "iu" and 0 <= x.min() and x.max() <= 255:
        return
    bad = (x < 0) | (x > 255)
    if x.dtype.kind == "f":
        bad |= ~np.isfinite(x) | (x != np.trunc(x))
    if bad.any():
        index = tuple(int(i) for i in np.unravel_index(int(np.argmax(bad)), x.shape))
        raise InputDataError(
            f"{path}: value {x[index]} at index {list(index)} is not a spike (0/1) or an 8-bit "
            "integer 0..255"
        )


def load_labels(path: str | Path, samples: int, classes: int) -> np.ndarray:
    """Class labels (N,) int64 from a ``.npy`` file: one integer in ``0..classes-1`` per sample."""
    return check_labels(load_npy(Path(path)), samples, classes, path)


def check_labels(y: np.ndarray, samples: int, classes: int, source: object) -> np.ndarray:
    """Labels (N,) as int64: refused (naming ``source``, the value and its index) unless they
    are ``samples`` integers in ``0..classes-1``."""
    y = np.asarray(y)
    if y.ndim != 1 or len(y) != samples:
        raise InputDataError(f"{source}: labels have shape {y.shape}, expected ({samples},)")
    if y.dtype.kind not in "iu":
        raise InputDataError(f"{source}: labels have dtype {y.dtype}, expected integers")
    bad = np.flatnonzero((y < 0) | (y >= classes))
    if len(bad):
        raise InputDataError(
            f"{source}: label {int(y[bad[0]])} at index {int(bad[0])} is outside the "
            f"network's {classes} classes (0..{classes - 1})"
        )
    return y.astype(np.int64)


def random_spikes(
    samples: int, steps: int, input_shape: tuple[int, ...], seed: int, rate: float = 0.25
) -> np.ndarray:
    """Bernoulli spikes (N, T, *input_shape) uint8 with firing probability ``rate`` per step."""
    if samples < 1 or steps < 1:
        raise InputDataError(f"need samples >= 1 and steps >= 1, got {samples} and {steps}")
    if not 0.0 <= rate <= 1.0:
        raise InputDataError(f"spike rate {rate} must be in [0, 1]")
    if seed < 0:
        raise InputDataError(f"--seed {seed} must be >= 0")
    check_input_budget(samples, steps, input_shape, f"{samples} samples")
    rng = np.random.default_rng(seed)
    out = np.empty((samples, steps, *input_shape), dtype=np.uint8)
    # rng.random draws float64: one sample at a time bounds that to 8x one sample's bytes, and
    # the generator's stream (C order) is the same as one draw of the whole array
    for i in range(samples):
        np.less(rng.random((steps, *input_shape)), rate, out=out[i], casting="unsafe")
    return out
