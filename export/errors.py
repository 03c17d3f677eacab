"""Errors of the export stage (all :class:`~snn2loihi.errors.Snn2LoihiError`: CLI exit 2)."""

from __future__ import annotations

from snn2loihi.errors import Snn2LoihiError, UnsupportedLayerError


class CheckpointError(Snn2LoihiError):
    """A checkpoint file is unreadable, incomplete or does not match its own config."""


class NotDeployableError(UnsupportedLayerError):
    """A layer or module that NetX cannot express (max pooling, residual adds, ...)."""


class DataUnavailableError(Snn2LoihiError):
    """The data requested for the accuracy check cannot be loaded."""
