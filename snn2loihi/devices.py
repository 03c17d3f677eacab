"""Torch devices named by users (``--device``, ``train.device``), checked before any work."""

from __future__ import annotations

import torch

from snn2loihi.errors import InputDataError


def torch_device(spec: str | torch.device, option: str = "--device") -> torch.device:
    """``cpu``, ``cuda``, ``cuda:N`` or ``auto`` (CUDA when present) as a usable torch device.

    Raises :class:`InputDataError` for a name torch does not know and for a CUDA device that
    this machine does not have.
    """
    if isinstance(spec, torch.device):
        device = spec
    elif spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        try:
            device = torch.device(spec)
        except (RuntimeError, ValueError, TypeError):
            raise InputDataError(
                f"{option} {spec}: not a device; use cpu, cuda, cuda:N or auto"
            ) from None
    if device.type not in ("cpu", "cuda"):
        raise InputDataError(f"{option} {spec}: only cpu and cuda devices are supported")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise InputDataError(f"{option} {spec}: no CUDA GPU is available on this machine")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise InputDataError(
                f"{option} {spec}: this machine has {torch.cuda.device_count()} CUDA GPU(s)"
            )
    return device
