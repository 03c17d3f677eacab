"""Checkpoint -> deployable :class:`SpikingNet`, refusing whatever NetX cannot express.

Loading goes through training's own loader (``torch.load(weights_only=True)``) and model
factory, so export rebuilds exactly the trained network. Refusals name the layer and what to
use instead.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from torch import nn

from snn2loihi.errors import ConfigError
from snn2loihi.export.errors import CheckpointError, NotDeployableError
from snn2loihi.train.checkpoint import check_weights, state_dict_mismatch

log = logging.getLogger(__name__)

# Conv spec prefixes of other frameworks' configs and what to use instead.
_REFUSED_CONV_PREFIX = {
    "m": "max pooling cannot run on NetX; use 'p{n}' (2x2 average pooling folded into the conv)",
    "r": "a residual conv is written '{n}r' (a trailing r: it closes a block of two convs)",
}
_DEPLOYABLE_MODULES = (nn.ModuleList, nn.BatchNorm1d, nn.BatchNorm2d)


def check_config(config: dict, source: str = "checkpoint") -> None:
    """Raise :class:`NotDeployableError` for a model config that NetX cannot express."""
    from snn2loihi.train.model import ARCHITECTURES, CONV_SPEC_FORMS, ConvSpec

    try:
        model_cfg = config["model"]
        arch, convs, dense = model_cfg["arch"], model_cfg["convs"], model_cfg["dense"]
    except (KeyError, TypeError):
        raise CheckpointError(f"{source}: config has no [model] arch/convs/dense") from None
    if arch != "custom" and arch not in ARCHITECTURES:
        raise NotDeployableError(
            f"{source}: model.arch = {arch!r} is unknown; use one of "
            f"{', '.join(ARCHITECTURES)} or 'custom' with model.convs/model.dense"
        )
    for i, spec in enumerate(convs):
        text = str(spec).strip()
        hint = _REFUSED_CONV_PREFIX.get(text[:1].lower())
        if hint is not None:
            n = text[1:] or "64"
            raise NotDeployableError(
                f"{source}: layer {i} (model.convs[{i}] = {spec!r}): {hint.format(n=n)}"
            )
        try:
            ConvSpec.parse(spec)
        except ValueError as exc:
            raise NotDeployableError(
                f"{source}: layer {i} (model.convs[{i}] = {spec!r}) is not a deployable conv "
                f"({exc}); use {CONV_SPEC_FORMS}"
            ) from None
    for j, width in enumerate(dense):
        if isinstance(width, bool) or not isinstance(width, int) or width < 1:
            raise NotDeployableError(
                f"{source}: layer {len(convs) + j} (model.dense[{j}] = {width!r}) must be a "
                "positive dense width"
            )


def check_modules(model: nn.Module, source: str = "model") -> None:
    """Refuse any submodule other than the synaptic layers, their BatchNorm and containers."""
    from snn2loihi.train.layers import SynapticLayer
    from snn2loihi.train.model import ResidualShortcut, SpikingNet

    # a residual conv's shortcut deploys as the superset of NetX (docs/netx-format.md)
    allowed = (SpikingNet, SynapticLayer, ResidualShortcut, nn.ModuleDict, *_DEPLOYABLE_MODULES)
    for name, module in model.named_modules():
        if not isinstance(module, allowed):
            raise NotDeployableError(
                f"{source}: module '{name}' ({type(module).__name__}) cannot run on NetX; "
                "only conv/dense synapses with BatchNorm (folded) and IF neurons deploy"
            )


def load_model(path: str | Path):
    """Load a checkpoint file (or run folder) and return ``(model in eval mode, state dict)``.

    Raises :class:`CheckpointError` for unreadable or inconsistent files and
    :class:`NotDeployableError` for configs or modules NetX cannot run.
    """
    from snn2loihi.train.checkpoint import checkpoint_config, checkpoint_file, load_checkpoint
    from snn2loihi.train.factory import model_from_config

    file = checkpoint_file(path)
    if file.is_file() and file.stat().st_size == 0:
        raise CheckpointError(f"checkpoint '{file}' is empty (0 bytes)")
    try:
        state = load_checkpoint(path)
    except ConfigError as exc:
        raise CheckpointError(str(exc)) from None
    if not isinstance(state, dict) or not {"model", "config", "metrics"} <= set(state):
        raise CheckpointError(
            f"checkpoint '{path}' lacks the 'model', 'config' or 'metrics' entries of a "
            "snn2loihi train checkpoint"
        )
    check_config(state["config"], f"checkpoint '{path}'")
    try:
        meta = state["metrics"]["model"]
        check_meta(meta, path)
        model = model_from_config(
            checkpoint_config(state, f"checkpoint '{path}'"),
            tuple(meta["input_shape"]),
            int(meta["num_classes"]),
            tuple(meta["mean"]),
            tuple(meta["std"]),
        )
    except (KeyError, TypeError, ValueError, ConfigError) as exc:
        raise CheckpointError(
            f"checkpoint '{path}': cannot rebuild the model from its config ({type(exc).__name__}: {exc})"
        ) from None
    check_modules(model, f"checkpoint '{path}'")
    _load_weights(model, state["model"], path)
    return model.eval(), state


def check_meta(meta: dict, path) -> None:
    """Refuse a model record whose input shape, classes or normalization cannot be folded."""
    shape, mean, std = meta["input_shape"], meta["mean"], meta["std"]
    fields = {"input_shape": shape, "mean": mean, "std": std}
    for key, value in fields.items():
        if not isinstance(value, list | tuple) or not value:
            raise CheckpointError(f"checkpoint '{path}': metrics.model.{key} = {value!r}")
    if any(isinstance(d, bool) or not isinstance(d, int) or d < 1 for d in shape):
        raise CheckpointError(
            f"checkpoint '{path}': metrics.model.input_shape = {shape!r} must be positive integers"
        )
    n = meta["num_classes"]
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise CheckpointError(
            f"checkpoint '{path}': metrics.model.num_classes = {n!r} must be >= 1"
        )
    for key, values, low in (("mean", mean, -np.inf), ("std", std, 0.0)):
        if len(values) != shape[0]:
            raise CheckpointError(
                f"checkpoint '{path}': metrics.model.{key} = {values!r} has {len(values)} "
                f"entries for {shape[0]} input channels"
            )
        for i, v in enumerate(values):
            ok = isinstance(v, int | float) and not isinstance(v, bool)
            if not ok or not np.isfinite(v) or v <= low:
                rule = "finite and > 0" if key == "std" else "finite"
                raise CheckpointError(
                    f"checkpoint '{path}': metrics.model.{key}[{i}] = {v!r} must be {rule}"
                )


def _load_weights(model: nn.Module, weights: dict, path) -> None:
    check_weights(weights, path)
    expected = set(model.state_dict())
    unexpected = sorted(set(weights) - expected)
    if unexpected:
        module = unexpected[0].rsplit(".", 1)[0]
        raise NotDeployableError(
            f"checkpoint '{path}': module '{module}' (parameter '{unexpected[0]}') is not part "
            "of a deployable network; only conv/dense layers with BatchNorm deploy"
        )
    missing = sorted(expected - set(weights))
    if missing:
        raise CheckpointError(f"checkpoint '{path}': parameter '{missing[0]}' is missing")
    try:
        model.load_state_dict(weights)
    except RuntimeError as exc:
        raise CheckpointError(
            f"checkpoint '{path}': weights do not fit its config ({state_dict_mismatch(exc)})"
        ) from None
