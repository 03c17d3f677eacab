"""Exceptions shared by every stage.

Every error a user can cause is a :class:`Snn2LoihiError`; the CLI turns it into one line on
stderr and exit code 2. Messages name the file, the layer index, the field and the value.
"""

from __future__ import annotations


class Snn2LoihiError(Exception):
    """Base class of all errors caused by bad input (exit code 2 in the CLI)."""


class NetXFormatError(Snn2LoihiError):
    """A NetX HDF5 file is missing, unreadable, truncated or not laid out as NetX expects."""


class NetXValidationError(Snn2LoihiError):
    """A NetX network is well-formed but a value is outside what Loihi/NetX can run."""


class UnsupportedLayerError(NetXValidationError):
    """A layer type that NetX cannot run (pool, average, concat, ...)."""


class InputDataError(Snn2LoihiError):
    """Input spikes or samples have the wrong shape, dtype or range."""


class LavaUnavailableError(Snn2LoihiError):
    """The requested Lava backend (or Intel's Loihi runtime) cannot be imported."""


class LavaRunError(Snn2LoihiError):
    """The Lava simulator failed or timed out while running a network."""


def where(path: object | None, layer: int | None = None, field: str | None = None) -> str:
    """Format a location prefix such as ``net.net: layer 3 (conv): field 'weight'``."""
    parts = []
    if path is not None:
        parts.append(str(path))
    if layer is not None:
        parts.append(f"layer {layer}")
    if field is not None:
        parts.append(f"field '{field}'")
    return ": ".join(parts)


class CheckpointError(Snn2LoihiError):
    """A checkpoint file is unreadable, incomplete, holds bad values or does not match its config."""


class TrainingDivergedError(Snn2LoihiError):
    """The training loss became NaN or infinite; the last good checkpoint is kept."""


class OutputPathError(Snn2LoihiError):
    """An output path is an input, another output, a folder, unwritable, or exists without --force."""


class ConfigError(Snn2LoihiError):
    """A training configuration key has an unknown name or an invalid value."""
