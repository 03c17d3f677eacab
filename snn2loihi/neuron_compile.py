"""``torch.compile`` for the neuron's time loops: one compiled function per name and process,
compiled in this process, and the uncompiled function wherever compiling fails."""

from __future__ import annotations

import logging

import torch

log = logging.getLogger(__name__)

RECOMPILE_LIMIT = 64  # compiled variants of the neuron loop kept per process (dynamo: 8)
_COMPILED: dict[str, object] = {}


def compiled(name: str, fn):
    """``fn`` through ``torch.compile`` (dynamic shapes), made once per process."""
    made = _COMPILED.get(name)
    if made is None:
        made = _COMPILED[name] = torch.compile(fn, dynamic=True)
    return made


def run_compiled(fn, eager, *args):
    """``fn(*args)``, compiling (if it must) in this process: PyTorch's default compiles in a
    pool of worker processes that outlive the call. Where compiling fails (no C++ compiler,
    say), a warning is logged once and this and every later call run ``eager(*args)``, the
    same steps uncompiled."""
    if _COMPILED.get("failed"):
        return eager(*args)
    from torch._dynamo import config as dynamo_config
    from torch._dynamo.exc import BackendCompilerFailed
    from torch._inductor import config

    # one variant per neuron kind, dtype and layer role: past dynamo's default of 8 variants
    # of a function it would run every later one uncompiled (a one-way raise, never lowered)
    if dynamo_config.recompile_limit < RECOMPILE_LIMIT:
        dynamo_config.recompile_limit = RECOMPILE_LIMIT

    saved = config.compile_threads
    config.compile_threads = 1
    try:
        return fn(*args)
    except BackendCompilerFailed as exc:
        _COMPILED["failed"] = True
        cause = getattr(exc, "inner_exception", None) or exc
        text = str(cause).strip().splitlines()
        why = f"{type(cause).__name__}: {text[0]}" if text else type(cause).__name__
        log.warning("compiling the neuron loop failed (%s); running it uncompiled", why)
        return eager(*args)
    finally:
        config.compile_threads = saved
