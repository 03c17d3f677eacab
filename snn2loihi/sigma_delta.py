"""Lava's fixed-point sigma-delta neurons (NetX type ``SDNN``) as pure steps over tensors.

Reproduces ``lava/proc/sdn/models.py`` (``PySigmaDeltaModelFixed``, ``PyDeltaModelFixed``,
``PySigmaModelFixed``) with NetX's exponents ``spike_exp = state_exp = 6``: the threshold and
the bias enter as ``mantissa << 12``, messages leave as ``delta >> 6`` (arithmetic shift).
Lava's state is numpy int32; every sum here is computed in int64 and wrapped to int32 where
Lava's would overflow. Tensors: any shape, int64, CPU or GPU. With ``int32_safe`` the caller has
proven that no sum can leave int32 (:func:`int32_safe_bound`): tensors may then be int32 and the
wraps are skipped (the same integers, fewer passes over memory).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from snn2loihi.neuron import negative_mask, wrap_int32

SPIKE_EXP = 6  # NetX's default spike_exp
STATE_EXP = 6  # fixed by NetX
SDNN_SHIFT = SPIKE_EXP + STATE_EXP  # vth and bias are scaled by 2^12


@dataclass
class SigmaDeltaState:
    """State of one layer of sigma-delta neurons: ``sigma`` (running sum of the input),
    ``act`` (last activation), ``residue`` (the part of the change not sent yet)."""

    sigma: torch.Tensor
    act: torch.Tensor
    residue: torch.Tensor

    @classmethod
    def zeros(cls, like: torch.Tensor, dtype: torch.dtype = torch.int64) -> SigmaDeltaState:
        z = torch.zeros_like(like, dtype=dtype)
        return cls(z, z.clone(), z.clone())


def int32_safe_bound(input_max: int, steps: int, bias_max: int, vth_mant: int) -> bool:
    """Whether a SigmaDelta layer with ``|a| <= input_max`` for ``steps`` steps, ``|bias_mant|
    <= bias_max`` and threshold ``vth_mant`` keeps every sum inside int32: ``|sigma| <=
    steps * input_max``, ``|act| <= |sigma| + bias << 12``, ``|delta| <= 2 |act| + vth << 12``."""
    act = steps * int(input_max) + (int(bias_max) << SDNN_SHIFT)
    return 2 * act + (int(vth_mant) << SDNN_SHIFT) < 2**31 - 1


def _no_wrap(x: torch.Tensor) -> torch.Tensor:
    return x


def _delta(
    act: torch.Tensor, state: SigmaDeltaState, vth_mant: int, int32_safe: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """The change ``act - act_prev + residue`` sent when ``|delta| >= vth << 12``:
    (message ``>> 6``, new residue)."""
    wrap = _no_wrap if int32_safe else wrap_int32
    delta = wrap(act - state.act + state.residue)
    # |delta| >= vth << 12 as a -1/0 mask by arithmetic shift (a select costs ~10x more)
    sent = delta & negative_mask(((vth_mant << SDNN_SHIFT) - 1) - delta.abs())
    return sent >> STATE_EXP, wrap(delta - sent)


def sigma_delta_step(
    a: torch.Tensor,
    state: SigmaDeltaState,
    bias_mant: torch.Tensor | int,
    vth_mant: int,
    *,
    int32_safe: bool = False,
) -> tuple[torch.Tensor, SigmaDeltaState]:
    """One step of ``SigmaDelta`` (ReLU): ``sigma += a``, ``act = relu(sigma + bias << 12)``,
    send the change. ``a``: synaptic input of this step. Returns (messages, new state)."""
    wrap = _no_wrap if int32_safe else wrap_int32
    sigma = wrap(state.sigma + a)
    dtype = sigma.dtype if int32_safe else torch.int64
    bias = torch.as_tensor(bias_mant, dtype=dtype, device=a.device) << SDNN_SHIFT
    act = wrap(sigma + wrap(bias)).clamp_(min=0)
    msg, residue = _delta(act, state, vth_mant, int32_safe)
    return msg, SigmaDeltaState(sigma, act, residue)


def delta_step(
    a: torch.Tensor, state: SigmaDeltaState, vth_mant: int
) -> tuple[torch.Tensor, SigmaDeltaState]:
    """One step of ``Delta`` (an SDNN input layer): the input ``a << 12`` is the activation;
    send its change. Returns (messages, new state; ``sigma`` stays 0)."""
    act = wrap_int32(a << SDNN_SHIFT)
    msg, residue = _delta(act, state, vth_mant)
    return msg, SigmaDeltaState(state.sigma, act, residue)


def sigma_step(
    a: torch.Tensor, state: SigmaDeltaState, *, int32_safe: bool = False
) -> tuple[torch.Tensor, SigmaDeltaState]:
    """One step of ``Sigma`` (a ``sigma_output`` layer): send the running sum ``sigma += a``."""
    sigma = state.sigma + a if int32_safe else wrap_int32(state.sigma + a)
    return sigma, SigmaDeltaState(sigma, state.act, state.residue)
