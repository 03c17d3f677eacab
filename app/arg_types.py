"""Argument types shared by the subcommands: argparse turns their errors into one line, exit 2."""

from __future__ import annotations

import argparse


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
