"""Accuracy of the exported ``.net`` on the emulator, next to training's integer SNN branch.

Predictions of the exported network by its rule (:mod:`snn2loihi.readout`; snn2loihi's exports:
``argmax(v[:, -1] >> 6)`` of the readout layer after the T-th step, first index on ties). The
integer SNN branch predicts ``argmax`` of its logits; both must agree sample by sample.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from snn2loihi.errors import ConfigError
from snn2loihi.export.errors import DataUnavailableError

log = logging.getLogger(__name__)

SPLITS = ("val", "test", "train")  # training's validation, test and training splits


def load_eval_data(
    data_cfg,
    split: str = "val",
    data_file: str | Path | None = None,
    samples: int | None = None,
):
    """Images of ``split`` (``val``, ``test`` or ``train``, as training split them) of a
    checkpoint's ``[data]`` section (:class:`~snn2loihi.train.config.DataConfig`), or of one
    ``.npz`` file (x uint8 NHWC/NHW, y labels) used whole as every split.

    ``samples`` keeps the first N. Returns :class:`ImageData` (x (N, C, H, W)).
    """
    from snn2loihi.train.data import ImageData, load_datasets, load_npz_images

    if split not in SPLITS:
        raise DataUnavailableError(f"data split '{split}' is not one of {', '.join(SPLITS)}")
    try:
        if data_file is not None:
            data = load_npz_images(str(data_file), "--data")
            if len(data) == 0:
                raise ConfigError(f"--data = '{data_file}' holds no images")
        else:
            data = getattr(load_datasets(data_cfg), split)
    except ConfigError as exc:
        raise DataUnavailableError(f"no data for the accuracy check: {exc}") from None
    if samples is not None:
        data = ImageData(data.x[:samples], data.y[:samples])
    return data


def emulator_predictions(net_path, x: torch.Tensor, steps: int, clock=None) -> np.ndarray:
    """Predicted classes (N,) of the ``.net`` file ``net_path`` for images ``x``, by its rule.

    ``x``: uint8 (N, *input_shape), shown as graded input at every one of the ``steps`` steps
    (``clock``: a :class:`~snn2loihi.deploy.runner.GlobalClock`, None for the per-sample clock).
    """
    return emulator_run(net_path, x, steps, clock).predictions


def emulator_run(net_path, x, steps: int | None, clock=None):
    """The emulator's :class:`~snn2loihi.deploy.runner.RunResult` of the ``.net`` file
    ``net_path``: ``x`` as in :func:`emulator_predictions`, or (``steps`` None) frames
    (N, T, *input_shape)."""
    from snn2loihi.deploy.runner import Runner
    from snn2loihi.netx_io import read_network

    runner = Runner(read_network(net_path), net_path, "emulator", clock=clock)
    return runner.run(np.asarray(x), steps)


@torch.no_grad()
def snn_predictions(model, layers, x: torch.Tensor, batch_size: int = 256):
    """Predicted classes (N,) of training's integer SNN branch on ``model``'s integer ``layers``
    (:func:`snn2loihi.train.fold.integer_layers`)."""
    from snn2loihi.train.snn_branch import run_integer_snn

    preds = [
        run_integer_snn(layers, chunk, model.steps, model.flatten_index).logits.argmax(1)
        for chunk in torch.split(x, batch_size)
    ]
    return torch.cat(preds)


def compare_accuracy(net_path, model, layers, data) -> dict:
    """Emulator accuracy of the exported file and the integer SNN branch's, on ``data``."""
    from snn2loihi.deploy.evaluate import accuracy

    emu = emulator_predictions(net_path, data.x, model.steps)
    snn = snn_predictions(model, layers, data.x).numpy()
    n = len(data)
    out = {
        "samples": n,
        "emulator_acc": accuracy(emu, data.y)[1],
        "integer_snn_acc": accuracy(snn, data.y)[1],
        "prediction_mismatches": int((emu != snn).sum()),
    }
    out["equal"] = out["prediction_mismatches"] == 0
    if not out["equal"]:
        log.warning(
            "emulator and integer SNN disagree on %d of %d samples",
            out["prediction_mismatches"],
            n,
        )
    return out
