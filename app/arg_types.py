"""Argument types shared by the subcommands: argparse turns their errors into one line, exit 2."""

from __future__ import annotations

import argparse
import math


def positive(text: str) -> int:
    """An integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be >= 1")
    return value


def shape(text: str) -> tuple[int, ...]:
    """A comma-separated shape of positive sizes, e.g. ``2,8,8``."""
    try:
        dims = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"'{text}' is not a comma-separated shape like 2,8,8"
        ) from None
    if not dims or min(dims) < 1:
        raise argparse.ArgumentTypeError(f"'{text}' must hold positive sizes")
    return dims


MAX_SECONDS = 10**9  # about 31 years; the interval timer of --timeout overflows far beyond


def seconds(text: str) -> float:
    """A finite number of seconds in ``(0, MAX_SECONDS]`` (``--timeout``)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a number of seconds") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"{text} must be a finite number of seconds > 0")
    if value > MAX_SECONDS:
        raise argparse.ArgumentTypeError(f"{text} s is more than the limit of {MAX_SECONDS} s")
    return value


SEED_MAX = 2**63 - 1  # torch.manual_seed takes a signed 64-bit integer (train.config.SEED_MAX)


def seed(text: str) -> int:
    """A random seed in ``0..2**63 - 1`` (what torch and numpy both take)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not an integer") from None
    if not 0 <= value <= SEED_MAX:
        raise argparse.ArgumentTypeError(f"{value} must be in 0..{SEED_MAX}")
    return value
