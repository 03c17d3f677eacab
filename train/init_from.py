"""``train.init_from`` (``snn2loihi train --init-from CKPT``): a new run that starts from the
model of an earlier checkpoint, with a fresh optimizer and schedule.

The earlier checkpoint is an input of the run: it is never one of the run folder's files
(:func:`check_init_outputs`, through :func:`snn2loihi.outputs.check_outputs`), and it must hold
the same network: input shape, class count, ``model.arch``, ``model.convs`` and ``model.dense``
are compared field by field (:func:`init_state`) before its state dict is loaded. Everything the
state dict holds comes along: weights, BatchNorm affine parameters and running statistics, and
the thresholds; the input normalization folded into layer 0 is the checkpoint's as well, so the
new run starts from exactly the network the checkpoint holds.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from snn2loihi.errors import CheckpointError, ConfigError
from snn2loihi.outputs import check_outputs
from snn2loihi.train.checkpoint import (
    checkpoint_config,
    checkpoint_file,
    checkpoint_input,
    data_inputs,
    load_checkpoint,
)
from snn2loihi.train.config import Config
from snn2loihi.train.run_folder import RUN_FILES

log = logging.getLogger(__name__)

OPTION = "--init-from"


@dataclass(frozen=True)
class InitState:
    """What a run takes from its ``train.init_from`` checkpoint."""

    path: str
    model: dict  # the state dict
    mean: tuple[float, ...]
    std: tuple[float, ...]


def check_init_outputs(config: Config) -> None:
    """Refuse, before any work, a run folder whose files would overwrite the init checkpoint
    (e.g. ``--init-from runs/a --out runs/a --force``) or the run's data files."""
    init = config.train.init_from
    if not init:
        return
    if not checkpoint_file(init).is_file():
        raise ConfigError(
            f"{OPTION} {init}: no checkpoint there (give a .pt file or a run folder with last.pt)"
        )
    out_dir = Path(config.output.dir)
    outputs = {f"output.dir's {name}": out_dir / name for name in RUN_FILES}
    inputs = {**checkpoint_input(init, OPTION), **data_inputs(config.data, "config")}
    check_outputs(outputs, inputs, force=True)  # existing run files: check_run_folder's job


def _same(field: str, ours, theirs, path) -> None:
    if ours != theirs:
        raise ConfigError(
            f"{OPTION} {path}: {field} = {theirs!r} in the checkpoint but {ours!r} in this "
            "run; give a checkpoint of the same network"
        )


def init_state(config: Config, input_shape: tuple[int, ...], num_classes: int) -> InitState:
    """The checked model state of ``config.train.init_from`` for a run on data of
    ``input_shape`` and ``num_classes``: a checkpoint of another network is refused with a
    :class:`ConfigError` naming the field and both values."""
    path = config.train.init_from
    try:
        state = load_checkpoint(path)
    except ConfigError as exc:
        raise ConfigError(f"{OPTION}: {exc}") from None
    if not isinstance(state, dict) or not {"model", "config", "metrics"} <= set(state):
        raise CheckpointError(f"{OPTION} {path}: not a snn2loihi training checkpoint")
    theirs = checkpoint_config(state, f"{OPTION} {path}: config")
    meta = state["metrics"].get("model") or {}
    _same("input_shape", list(input_shape), list(meta.get("input_shape", [])), path)
    _same("num_classes", num_classes, meta.get("num_classes"), path)
    for key in ("arch", "convs", "dense"):
        _same(f"model.{key}", getattr(config.model, key), getattr(theirs.model, key), path)
    if theirs.model.threshold != config.model.threshold:
        log.warning(
            "%s %s: the thresholds come from the checkpoint (model.threshold %s there), not "
            "model.threshold = %s",
            OPTION,
            path,
            theirs.model.threshold,
            config.model.threshold,
        )
    log.info("initialised from %s (epoch %d of that run)", path, state.get("epoch", -1) + 1)
    return InitState(str(path), state["model"], tuple(meta["mean"]), tuple(meta["std"]))
