"""Input batches for deploy commands: ``.npy`` files or seeded random spikes."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from snn2loihi.errors import InputDataError


def load_input(path: str | Path, input_shape: tuple[int, ...]) -> np.ndarray:
    """Load (N, T, *input_shape) integers 0..255 from a ``.npy`` file (no pickles).

    A single sample (T, *input_shape) is accepted and gets N = 1.
    """
    path = Path(path)
    try:
        x = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise InputDataError(f"{path}: no such file") from None
    except (ValueError, OSError) as exc:
        raise InputDataError(f"{path}: not a readable .npy array ({exc})") from None
    if x.ndim == 1 + len(input_shape):
        x = x[None]
    if x.ndim != 2 + len(input_shape) or tuple(x.shape[2:]) != tuple(input_shape):
        raise InputDataError(
            f"{path}: array has shape {x.shape}, expected (samples, steps, "
            f"{', '.join(map(str, input_shape))})"
        )
    if x.dtype.kind not in "biuf":
        raise InputDataError(f"{path}: dtype {x.dtype} is not numeric")
    return x


def random_spikes(
    samples: int, steps: int, input_shape: tuple[int, ...], seed: int, rate: float = 0.25
) -> np.ndarray:
    """Bernoulli spikes (N, T, *input_shape) uint8 with firing probability ``rate`` per step."""
    if samples < 1 or steps < 1:
        raise InputDataError(f"need samples >= 1 and steps >= 1, got {samples} and {steps}")
    if not 0.0 <= rate <= 1.0:
        raise InputDataError(f"spike rate {rate} must be in [0, 1]")
    rng = np.random.default_rng(seed)
    return (rng.random((samples, steps, *input_shape)) < rate).astype(np.uint8)
