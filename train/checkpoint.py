"""Checkpoints: written atomically each epoch, loadable with ``torch.load(weights_only=True)``.

A checkpoint holds the model ``state_dict`` (thresholds included, as buffers), the thresholds
again by layer index, the resolved config, the optimizer and scheduler states, the finished
epoch and its metrics. The resolved config is also saved beside it as ``config.toml``.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np
import torch

from snn2loihi.atomic import atomic_path
from snn2loihi.errors import CheckpointError, ConfigError
from snn2loihi.train.config import Config, dump_toml

log = logging.getLogger(__name__)

LAST = "last.pt"
BEST = "best.pt"
PRETRAINED = "pretrained.pt"  # the run at the end of its ANN phase (train.pretrain_epochs)
TEACHER = "teacher"  # the key of train.distill's teacher (a state dict) in a checkpoint
WALL_CLOCK_KEYS = ("epoch_s",)  # seconds per epoch: differ between identical runs


def without_wall_clock(metrics: dict) -> dict:
    """``metrics`` without timings (also in its ``history``), so that the same seed gives
    byte-identical checkpoints; ``log.csv`` keeps the timings."""
    out = {k: v for k, v in metrics.items() if k not in WALL_CLOCK_KEYS}
    if isinstance(out.get("history"), list):
        out["history"] = [
            {k: v for k, v in h.items() if k not in WALL_CLOCK_KEYS} if isinstance(h, dict) else h
            for h in out["history"]
        ]
    return out


def save_checkpoint(
    path: Path,
    *,
    model,
    optimizer,
    scheduler,
    epoch: int,
    config: Config,
    metrics: dict,
    teacher=None,
) -> Path:
    """Write a checkpoint atomically to ``path`` and ``config.toml`` beside it; the config is
    stored as plain dicts (:meth:`Config.to_dict`); ``teacher`` (``train.distill``'s frozen
    ANN), if given, as the state dict ``teacher``."""
    config = config.to_dict() if isinstance(config, Config) else config
    state = {
        "model": model.state_dict(),
        "thresholds": {
            str(i): ly.thresholds.detach().cpu().clone()
            for i, ly in enumerate(model.layers)
            if ly.spiking
        },
        "config": config,
        "optimizer": optimizer.state_dict() if optimizer is not None else {},
        "scheduler": scheduler.state_dict() if scheduler is not None else {},
        "epoch": epoch,
        "metrics": without_wall_clock(metrics),
    }
    if teacher is not None:
        state[TEACHER] = teacher.state_dict()
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        # a file object, not a path: torch names the archive's records after a path's stem,
        # which would put the random temporary name into the bytes
        torch.save(state, fh)
    with atomic_path(path.parent / "config.toml") as tmp:
        tmp.write_text(dump_toml(config))
    log.info("checkpoint %s (epoch %d)", path, epoch)
    return path


def save_epoch(out_dir: Path, *, is_best: bool, ends_pretraining: bool = False, **kwargs) -> None:
    """An epoch's ``last.pt`` in ``out_dir``, and ``best.pt`` too if ``is_best``, and
    ``pretrained.pt`` if the epoch is the last of the ANN phase (``ends_pretraining``: a run to
    ``--resume`` with other settings for the epochs after it, e.g. another ``train.steps``);
    ``kwargs`` as :func:`save_checkpoint`."""
    save_checkpoint(out_dir / LAST, **kwargs)
    if is_best:
        save_checkpoint(out_dir / BEST, **kwargs)
    if ends_pretraining:
        save_checkpoint(out_dir / PRETRAINED, **kwargs)


def checkpoint_config(state: dict, source: str = "checkpoint config") -> Config:
    """The typed config of a loaded checkpoint (keys older checkpoints lack get the defaults)."""
    return Config.from_dict(state["config"], source)


def checkpoint_file(path: str | Path) -> Path:
    """The file a checkpoint argument names: ``last.pt`` of a run folder, else ``path``."""
    path = Path(path)
    return path / LAST if path.is_dir() else path


def checkpoint_input(path: str | Path | None, option: str = "checkpoint") -> dict:
    """``{label: file}`` for :func:`snn2loihi.outputs.check_outputs`: the file a checkpoint
    argument resolves to, labelled with the run folder it came through, so that an output can
    never be the checkpoint however it was named."""
    if path is None:
        return {option: None}
    file = checkpoint_file(path)
    label = option if file == Path(path) else f"{option} (run folder {path})"
    return {label: file}


def data_inputs(data_cfg, where: str = "checkpoint") -> dict:
    """``{label: file}`` of the data files a ``[data]`` section reads (``npz``: ``train`` and
    ``test``), for :func:`snn2loihi.outputs.check_outputs`: an output must never be one."""
    if data_cfg is None or data_cfg.dataset != "npz":
        return {}
    return {
        f"{where}'s data.{key}": getattr(data_cfg, key)
        for key in ("train", "test")
        if getattr(data_cfg, key)
    }


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """Load a checkpoint safely (``weights_only=True``)."""
    path = checkpoint_file(path)
    if not path.is_file():
        raise ConfigError(f"checkpoint '{path}' does not exist")
    try:
        with warnings.catch_warnings():  # a foreign pickle's protocol: the error says enough
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means a bad file
        raise ConfigError(
            f"checkpoint '{path}' cannot be loaded ({_unpickling_cause(exc)})"
        ) from None


def _unpickling_cause(exc: Exception) -> str:
    """torch's multi-line ``weights_only`` failure condensed to its cause, on one line."""
    message = str(exc)
    marker = "WeightsUnpickler error:"
    cause = message.split(marker, 1)[1] if marker in message else message
    return " ".join(cause.split("Check the documentation")[0].split())[:200]


def check_weights(weights, path) -> None:
    """Refuse non-tensor entries, NaN/inf values, thresholds <= 0 and BN variances < 0."""
    if not isinstance(weights, dict):
        raise CheckpointError(
            f"checkpoint '{path}': 'model' is {type(weights).__name__}, not a dict"
        )
    for name, value in weights.items():
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(
                f"checkpoint '{path}': parameter '{name}' is {type(value).__name__}, not a tensor"
            )
        if not value.is_floating_point():
            continue
        v = value.detach().double().cpu()
        bad = ~torch.isfinite(v)
        if name.endswith("thresholds"):
            bad |= v <= 0
        elif name.endswith("running_var"):
            bad |= v < 0
        if bad.any():
            _refuse_value(name, v, bad, path)


def _refuse_value(name: str, v, bad, path) -> None:
    flat = int(bad.reshape(-1).nonzero()[0, 0])
    index = tuple(int(i) for i in np.unravel_index(flat, tuple(v.shape))) if v.ndim else ()
    value = float(v.reshape(-1)[flat])
    need = {"thresholds": "finite and > 0", "running_var": "finite and >= 0"}
    rule = next((r for k, r in need.items() if name.endswith(k)), "finite")
    raise CheckpointError(
        f"checkpoint '{path}': parameter '{name}' = {value} at index {index} "
        f"({int(bad.sum())} bad values); values must be {rule}"
    )


def state_dict_mismatch(exc: RuntimeError) -> str:
    """The first line that names a mismatch in ``load_state_dict``'s multi-line error."""
    lines = [ln.strip() for ln in str(exc).strip().splitlines() if ln.strip()]
    return lines[1] if len(lines) > 1 else lines[0]
