"""Build the model of a resolved config (shared by the trainer and checkpoint loading)."""

from __future__ import annotations

from snn2loihi.loihi import DECAY_UNITY
from snn2loihi.train.config import Config
from snn2loihi.train.model import SpikingNet, build_model


def model_from_config(
    config: Config,
    input_shape: tuple[int, int, int],
    num_classes: int,
    mean: tuple[float, ...],
    std: tuple[float, ...],
) -> SpikingNet:
    """The network described by ``config.model`` and ``config.train``; ``input_shape`` is
    (C, H, W), ``mean``/``std`` per input channel of ``pixels / 255``."""
    m, t, b = config.model, config.train, config.bptt
    bptt = t.method == "bptt"
    # BPTT and the noise route (its T = 1 currents repeated N times) use the full currents
    # every step; SNN2ANN spreads them over the T steps
    full_steps = t.method in ("bptt", "noise")
    if not config.data.normalize:
        mean, std = (0.0,) * len(mean), (1.0,) * len(std)
    v_decay = round(DECAY_UNITY * (1 - b.leak)) if bptt and b.neuron == "lif" else 0
    return build_model(
        m.arch,
        input_shape,
        num_classes,
        convs=tuple(m.convs) or None,
        dense=tuple(m.dense) or None,
        mean=mean,
        std=std,
        steps=t.steps,
        step_divisor=1 if full_steps else t.steps,
        threshold=m.threshold,
        v_decay=v_decay,
        bn_momentum=m.bn_momentum,
    )


def model_from_checkpoint(state: dict) -> SpikingNet:
    """Rebuild the trained model of a loaded checkpoint (eval mode)."""
    meta = state["metrics"]["model"]
    model = model_from_config(
        Config.from_dict(state["config"], "checkpoint config"),
        tuple(meta["input_shape"]),
        meta["num_classes"],
        tuple(meta["mean"]),
        tuple(meta["std"]),
    )
    model.load_state_dict(state["model"])
    return model.eval()
