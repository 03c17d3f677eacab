"""Errors of the export stage (all :class:`~snn2loihi.errors.Snn2LoihiError`: CLI exit 2)."""

from __future__ import annotations

from snn2loihi.errors import CheckpointError, Snn2LoihiError, UnsupportedLayerError

__all__ = ["CheckpointError", "DataUnavailableError", "NirFormatError", "NotDeployableError"]


class NotDeployableError(UnsupportedLayerError):
    """A layer or module that NetX cannot express (max pooling, residual adds, ...)."""


class DataUnavailableError(Snn2LoihiError):
    """The data requested for the accuracy check cannot be loaded."""


class NirFormatError(Snn2LoihiError):
    """A NIR file is unreadable, not laid out as NIR writes it, or holds bad values."""
