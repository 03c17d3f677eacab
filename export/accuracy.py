"""Accuracy of the exported ``.net`` on the emulator, next to training's integer SNN branch.

Prediction rule of the exported network: ``argmax(v[:, -1] >> 6)`` of the readout layer after
the T-th step (:mod:`snn2loihi.readout`), first index on ties. The
integer SNN branch predicts ``argmax`` of its logits; both must agree sample by sample.
"""

from __future__ import annotations

import logging
from pathlib import Path

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


@torch.no_grad()
def emulator_predictions(net, x: torch.Tensor, steps: int, batch_size: int = 256) -> torch.Tensor:
    """Predicted classes (N,) of the NetX network ``net`` (path or record) for images ``x``.

    ``x``: uint8 (N, C, H, W), shown as graded input at every one of the ``steps`` steps.
    """
    from snn2loihi.deploy.emulator import Emulator
    from snn2loihi.readout import readout_logits

    emu = Emulator(net, batch_size=batch_size)
    preds = []
    for chunk in torch.split(x, batch_size):
        graded = chunk.unsqueeze(1).expand(-1, steps, *chunk.shape[1:])
        readout = emu.run(graded, record_state="last").layers[-1]
        preds.append(readout_logits(readout.v[:, -1]).argmax(1))
    return torch.cat(preds)


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
    emu = emulator_predictions(net_path, data.x, model.steps)
    snn = snn_predictions(model, layers, data.x)
    n = len(data)
    out = {
        "samples": n,
        "emulator_acc": int((emu == data.y).sum()) / n,
        "integer_snn_acc": int((snn == data.y).sum()) / n,
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
