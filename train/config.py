"""Typed training configuration: one dataclass per section, TOML/YAML files, overrides, validation.

A :class:`Config` holds the sections ``data``, ``model``, ``train``, ``ata``, ``bptt``,
``noise`` and ``output``; the field defaults below are the defaults. Choices and ranges live in each field's
metadata. Every key a user gives must exist and match its field's type; values are checked where
a config is built, so a bad key or value fails with a :class:`ConfigError` naming it.
Checkpoints store :meth:`Config.to_dict` (plain dicts); :meth:`Config.from_dict` reads them back,
filling keys that older checkpoints lack with today's defaults.
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from snn2loihi.errors import ConfigError
from snn2loihi.train.ata import GRANULARITIES
from snn2loihi.train.data import DATASETS
from snn2loihi.train.mapping import MAPPING_UNITS
from snn2loihi.train.model import ARCHITECTURES
from snn2loihi.train.noise import DISTRIBUTIONS

METHODS = ("snn2ann", "bptt", "noise")
SEED_MAX = 2**63 - 1  # torch.manual_seed takes a signed 64-bit integer


def _opt(default, *, choices=None, lo=None, hi=None, factory=None):
    """A field with optional ``choices`` or inclusive ``lo``/``hi`` bounds (None = unbounded)."""
    meta = {"choices": choices, "range": None if lo is None and hi is None else (lo, hi)}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


class _Section:
    """Type, choice and range checks of a section's fields, run when the section is built."""

    NAME = ""

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):
            name = f"{self.NAME}.{f.name}"
            value = _check_type(name, hints[f.name], getattr(self, f.name))
            setattr(self, f.name, value)
            choices = f.metadata.get("choices")
            if choices is not None and value not in choices:
                raise ConfigError(f"{name} = {value!r} is not one of {', '.join(choices)}")
            bounds = f.metadata.get("range")
            if bounds is not None:
                lo, hi = bounds
                if (lo is not None and value < lo) or (hi is not None and value > hi):
                    text = f">= {lo}" if hi is None else f"in [{lo}, {hi}]"
                    raise ConfigError(f"{name} = {value!r} must be {text}")


@dataclass
class DataConfig(_Section):
    """``[data]``: source, splits (train / validation / test) and preprocessing."""

    NAME = "data"
    dataset: str = _opt("digits", choices=DATASETS)
    root: str = ""  # torchvision / imagefolder root
    train: str = ""  # npz files
    test: str = ""
    test_fraction: float = _opt(0.2, lo=0.0, hi=0.99)  # test split when the source has none
    val_fraction: float = _opt(0.1, lo=0.001, hi=0.99)  # validation, carved from training data
    split_seed: int = _opt(0, lo=0, hi=SEED_MAX)
    num_classes: int = _opt(0, lo=0)  # 0: inferred from the labels
    channels: int = _opt(0, lo=0, hi=3)  # imagefolder: 1 (grey) or 3 (RGB); 0 = 3
    image_size: int = _opt(0, lo=0)  # imagefolder: resize to this square size; 0 = keep
    augment: str = _opt("auto", choices=("auto", "on", "off"))  # auto: on for cifar
    crop_padding: int = _opt(4, lo=0)
    flip: bool = True  # random horizontal flip when augmenting (off for digits/MNIST)
    # "random": each image flipped with probability 1/2 every epoch; "alternate": a seeded coin
    # per image in the first epoch, then flipped in every other epoch (derandomized, airbench)
    flip_mode: str = _opt("random", choices=("random", "alternate"))
    cutout: int = _opt(0, lo=0)  # augmenting: side (pixels) of a square set to the train mean
    normalize: bool = True  # fold the train set's mean/std into layer 0
    on_device: bool = False  # keep the uint8 splits on the training device; augment there


@dataclass
class ModelConfig(_Section):
    """``[model]``: architecture preset or custom conv/dense stack, initial threshold."""

    NAME = "model"
    arch: str = _opt("digits", choices=(*ARCHITECTURES, "custom"))
    convs: list = _opt(None, factory=list)  # e.g. ["64", "p128", "s256", "64k5s2pad0"]
    dense: list = _opt(None, factory=list)  # hidden dense widths
    threshold: float = _opt(0.5, lo=1e-9)  # initial firing threshold (float units)
    # "mse": at the end of the ANN phase each layer's threshold is placed where its counts best
    # represent its activations (train/threshold_placement.py); "fixed": model.threshold
    threshold_placement: str = _opt("fixed", choices=("fixed", "mse"))
    # BatchNorm's running-statistics momentum (weight of each new batch): the integer SNN branch
    # folds the running statistics, so a larger value makes it follow the weights more closely
    bn_momentum: float = _opt(0.1, lo=1e-6, hi=1.0)
    channels_last: bool = False
    # how a fresh network starts (train/init_schemes.py): conv layer 0 as the whitening of the
    # training images' patches; every later conv as identity (Dirac) filters
    whiten: bool = False
    identity_init: bool = False


@dataclass
class TrainConfig(_Section):
    """``[train]``: method, time steps, optimisation recipe, quantization and device."""

    NAME = "train"
    # noise: single-step training with noise, deployed at T = train.steps (section [noise])
    method: str = _opt("snn2ann", choices=METHODS)
    # ANN pre-training (Lin et al., arXiv 2203.01158): the first N epochs train the ANN branch
    # alone (ReLU, no SNN branch, no ATA), then the method trains on from those weights
    pretrain_epochs: int = _opt(0, lo=0)
    # > 0: the epochs after pre-training get a schedule of their own that peaks at this learning
    # rate (warm-up fraction snn_warmup); 0: one schedule over the whole run
    snn_lr: float = _opt(0.0, lo=0.0)
    snn_warmup: float = _opt(0.0, lo=0.0, hi=0.99)
    # > 0: the epochs after the ANN phase also learn from a frozen copy of that phase's ANN
    # (train/distill.py): (1 - distill) * cross-entropy + distill * tau^2 * KL(teacher || student)
    # at temperature tau = distill_temperature (Hinton et al., arXiv 1503.02531)
    distill: float = _opt(0.0, lo=0.0, hi=1.0)
    distill_temperature: float = _opt(4.0, lo=0.01, hi=100.0)
    # a checkpoint (or run folder: its last.pt) of the same network whose model (weights, BN,
    # thresholds) this run starts from, with a fresh optimizer and schedule ("" = none)
    init_from: str = ""
    steps: int = _opt(4, lo=1, hi=4096)
    epochs: int = _opt(30, lo=1)
    batch_size: int = _opt(64, lo=1)
    optimizer: str = _opt(
        "adam", choices=("sgd", "adam", "adamw")
    )  # measured recipes: docs/training.md
    lr: float = _opt(0.001, lo=1e-12)
    momentum: float = _opt(0.9, lo=0.0, hi=1.0)
    nesterov: bool = False  # sgd: Nesterov momentum
    # sgd: BatchNorm biases learn at this multiple of the rate, with weight decay divided by it
    # (the same decay per step; airbench's scaled BN biases, arXiv 2404.00498)
    bn_bias_lr: float = _opt(1.0, lo=1e-6, hi=1e4)
    # sgd: false exempts BatchNorm weights and biases from weight decay. With a BatchNorm after
    # every synapse the ANN is blind to the scale of the BN weights, so decay shrinks them, and
    # with them the currents that reach the fixed thresholds of the spiking layers
    bn_decay: bool = True
    weight_decay: float = _opt(0.0, lo=0.0)
    scheduler: str = _opt("cosine", choices=("cosine", "onecycle", "none"))
    warmup: float = _opt(0.2, lo=0.0, hi=0.99)  # onecycle: fraction of the steps warming up
    label_smoothing: float = _opt(0.0, lo=0.0, hi=0.99)
    seed: int = _opt(0, lo=0, hi=SEED_MAX)  # torch.manual_seed: a signed 64-bit integer
    mapping: str = _opt("stsu", choices=MAPPING_UNITS)
    dropout: float = _opt(0.0, lo=0.0, hi=0.99)
    float_snn: bool = False  # ablation: unquantized float SNN branch
    weight_bits: int = _opt(8, lo=2, hi=9)
    compile_neuron: bool = False  # fused neuron kernels via torch.compile, CPU (same integers)
    bf16: bool = True  # bf16 autocast of the ANN branch on CUDA
    bf16_cpu: bool = False  # the same on a CPU with native bf16 (AVX512-BF16 / AMX)
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    num_threads: int = _opt(0, lo=0)  # torch CPU threads; 0 = torch's default
    eval_batch_size: int = _opt(256, lo=1)


@dataclass
class AtaConfig(_Section):
    """``[ata]``: adaptive threshold adjustment against noisy spikes."""

    NAME = "ata"
    enabled: bool = True
    tolerance: float = _opt(0.1, lo=0.0, hi=1.0)
    step: float = _opt(0.01, lo=0.0)
    granularity: str = _opt("layer", choices=GRANULARITIES)


@dataclass
class BpttConfig(_Section):
    """``[bptt]``: neuron of the BPTT baseline and its surrogate gradient."""

    NAME = "bptt"
    neuron: str = _opt("if", choices=("if", "lif"))
    leak: float = _opt(0.5, lo=0.0, hi=1.0)  # LIF: v <- leak * v + I (vDecay = 4096 (1 - leak))
    alpha: float = _opt(2.0, lo=1e-6)  # arctan surrogate sharpness


@dataclass
class NoiseConfig(_Section):
    """``[noise]``: the noise route (``train.method = "noise"``, arXiv 2211.05453): a T = 1 SNN
    trained with noise on the membrane potential, deployed at T = ``train.steps``. The noise is
    in units of each channel's threshold; the defaults are the mean and standard deviation of a
    residue spread uniformly over [0, threshold) (docs/training.md)."""

    NAME = "noise"
    distribution: str = _opt("gaussian", choices=DISTRIBUTIONS)
    mean: float = _opt(0.5, lo=-1.0, hi=1.0)  # thresholds
    std: float = _opt(0.2887, lo=0.0, hi=1.0)  # thresholds; 1/sqrt(12) by default
    alpha: float = _opt(2.0, lo=1e-6)  # arctan surrogate sharpness


@dataclass
class OutputConfig(_Section):
    """``[output]``: run folder, progress bars, TensorBoard."""

    NAME = "output"
    dir: str = "runs/train"
    progress: bool = True
    tensorboard: bool = False


SECTIONS: dict[str, type] = {
    "data": DataConfig,
    "model": ModelConfig,
    "train": TrainConfig,
    "ata": AtaConfig,
    "bptt": BpttConfig,
    "noise": NoiseConfig,
    "output": OutputConfig,
}


@dataclass
class Config:
    """The resolved training configuration; built valid (see :func:`validate`)."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    ata: AtaConfig = field(default_factory=AtaConfig)
    bptt: BpttConfig = field(default_factory=BpttConfig)
    noise: NoiseConfig = field(default_factory=NoiseConfig)
    output: OutputConfig = field(default_factory=OutputConfig)

    def __post_init__(self) -> None:
        _check_cross(self)

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """Plain nested dicts (for checkpoints, ``torch.load(weights_only=True)`` and TOML)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(
        cls, values: Mapping, source: str = "config", base: Config | Mapping | None = None
    ) -> Config:
        """``base`` (default: the defaults) updated by ``{section: {key: value}}``, validated.

        Keys missing from ``values`` (older checkpoints) keep the base's values.
        """
        merged = _as_dict(base) if base is not None else Config().to_dict()
        merge(merged, values, source)
        return _build(merged)


def _as_dict(config: Config | Mapping) -> dict:
    """A config (or plain dict, e.g. a checkpoint's, merged over the defaults) as plain dicts."""
    if isinstance(config, Config):
        return config.to_dict()
    return merge(defaults(), config, "base config")


def _build(values: dict) -> Config:
    return Config(**{name: SECTIONS[name](**values[name]) for name in SECTIONS})


def default_config() -> Config:
    """A fresh config of the defaults."""
    return Config()


def defaults() -> dict[str, dict[str, Any]]:
    """The defaults as plain nested dicts."""
    return Config().to_dict()


def _check_type(name: str, kind: type, value: Any) -> Any:
    """``value`` checked against the field type ``kind`` (ints widen to float, tuples to list)."""
    if kind is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{name} = {value!r} must be true or false")
    elif kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{name} = {value!r} must be an integer")
        if not -(2**63) <= value < 2**63:  # torch and numpy take signed 64-bit integers
            raise ConfigError(f"{name} = {value} does not fit a signed 64-bit integer")
    elif kind is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{name} = {value!r} must be a number")
        value = float(value)
        if not math.isfinite(value):
            raise ConfigError(f"{name} = {value!r} must be a finite number")
    elif kind is str:
        if not isinstance(value, str):
            raise ConfigError(f"{name} = {value!r} must be a string")
    elif kind is list:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{name} = {value!r} must be a list")
        value = list(value)
    return value


def merge(config: dict, updates: Mapping, source: str = "config") -> dict:
    """Merge ``{section: {key: value}}`` into the plain dict ``config`` (in place), rejecting
    unknown sections/keys and values of the wrong type."""
    if not isinstance(updates, Mapping):
        raise ConfigError(f"{source}: expected a table of sections, got {type(updates).__name__}")
    for section, values in updates.items():
        if section not in SECTIONS:
            raise ConfigError(
                f"{source}: unknown section '{section}' (expected one of {', '.join(SECTIONS)})"
            )
        if not isinstance(values, Mapping):
            raise ConfigError(f"{source}: section '{section}' must be a table")
        hints = typing.get_type_hints(SECTIONS[section])
        for key, value in values.items():
            if key not in config[section]:
                raise ConfigError(f"{source}: unknown key '{section}.{key}' = {value!r}")
            config[section][key] = _check_type(f"{section}.{key}", hints[key], value)
    return config


def load_file(path: str | Path) -> dict:
    """Read a TOML (``.toml``) or YAML (``.yaml``/``.yml``) config file as nested dicts."""
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as exc:
        raise ConfigError(f"config file '{path}': {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"config file '{path}': byte {exc.start} is not UTF-8 (0x{exc.object[exc.start]:02x})"
        ) from None
    try:
        if path.suffix in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text) or {}
        else:
            data = tomllib.loads(text)
    except Exception as exc:  # noqa: BLE001 - any parse error is a config error
        raise ConfigError(f"config file '{path}': cannot parse ({_one_line(exc)})") from None
    if not isinstance(data, dict):
        raise ConfigError(
            f"config file '{path}': expected sections of keys, got {type(data).__name__}"
        )
    return data


def _one_line(exc: Exception) -> str:
    """A parser's error in one line: YAML's problem and position, else the text joined."""
    mark = getattr(exc, "problem_mark", None)
    if mark is not None:
        problem = getattr(exc, "problem", None) or type(exc).__name__
        return f"line {mark.line + 1}, column {mark.column + 1}: {problem}"
    return " ".join(str(exc).split())


def parse_override(text: str) -> dict:
    """``"train.steps=2"`` -> ``{"train": {"steps": 2}}``; the value is read as TOML, else a string."""
    if "=" not in text or "." not in text.split("=", 1)[0]:
        raise ConfigError(f"override '{text}' must look like section.key=value")
    dotted, raw = text.split("=", 1)
    section, key = dotted.strip().split(".", 1)
    try:
        value = tomllib.loads(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()
    return {section: {key: value}}


def _check_residual_method(config: Config) -> None:
    """Residual convs (a trailing ``r``) are trained by SNN2ANN only: the BPTT and noise
    forwards run plain stacks."""
    from snn2loihi.train.model import ARCHITECTURES, ConvSpec

    convs = config.model.convs
    if not convs and config.model.arch in ARCHITECTURES:
        convs = ARCHITECTURES[config.model.arch][0]
    for i, spec in enumerate(convs):
        if ConvSpec.parse(spec).residual and config.train.method != "snn2ann":
            raise ConfigError(
                f"model.convs[{i}] = {spec!r} (residual) with train.method = "
                f"'{config.train.method}': residual blocks train with train.method = 'snn2ann'"
            )


def _check_cross(config: Config) -> None:
    """Checks spanning fields: conv specs, dense widths, a root for folder datasets."""
    from snn2loihi.train.model import CONV_SPEC_FORMS, ConvSpec

    for i, spec in enumerate(config.model.convs):
        try:
            ConvSpec.parse(spec)
        except ValueError as exc:
            raise ConfigError(
                f"model.convs[{i}] = {spec!r}: {exc}; accepted forms: {CONV_SPEC_FORMS}"
            ) from None
    _check_residual_method(config)
    for width in config.model.dense:
        if isinstance(width, bool) or not isinstance(width, int) or width < 1:
            raise ConfigError(f"model.dense entry {width!r} must be a positive integer")
    t = config.train
    if t.pretrain_epochs >= t.epochs:
        raise ConfigError(
            f"train.pretrain_epochs = {t.pretrain_epochs} must be below train.epochs = "
            f"{t.epochs} (the epochs after it train the SNN)"
        )
    if t.snn_lr > 0 and t.pretrain_epochs == 0:
        raise ConfigError(
            f"train.snn_lr = {t.snn_lr} needs train.pretrain_epochs > 0 (it is the learning rate "
            "of the epochs after ANN pre-training)"
        )
    if t.distill > 0 and t.pretrain_epochs == 0:
        raise ConfigError(
            f"train.distill = {t.distill} needs train.pretrain_epochs > 0 (the teacher is the "
            "ANN that phase trains)"
        )
    if config.model.threshold_placement == "mse" and t.pretrain_epochs == 0:
        raise ConfigError(
            "model.threshold_placement = 'mse' needs train.pretrain_epochs > 0 (it places the "
            "thresholds on the activations of the ANN that phase trains)"
        )
    _check_sgd_only(t)
    _check_noise(config)
    data = config.data
    if data.dataset in ("mnist", "cifar10", "cifar100", "imagefolder") and not data.root:
        raise ConfigError(f"data.root must be set for data.dataset = '{data.dataset}'")


def _check_sgd_only(t: TrainConfig) -> None:
    """SGD's own settings (Nesterov momentum, BatchNorm's rate and decay) need the SGD optimizer."""
    if t.optimizer == "sgd":
        if t.nesterov and t.momentum == 0:
            raise ConfigError("train.nesterov = true needs train.momentum > 0 (got 0)")
        return
    set_fields = (
        ("nesterov", "true", t.nesterov, ""),
        ("bn_bias_lr", t.bn_bias_lr, t.bn_bias_lr != 1.0, ""),
        ("bn_decay", "false", not t.bn_decay, "; adamw never decays BatchNorm"),
    )
    for name, value, is_set, note in set_fields:
        if is_set:
            raise ConfigError(
                f"train.{name} = {value} needs train.optimizer = 'sgd' (got '{t.optimizer}'{note})"
            )


def _check_noise(config: Config) -> None:
    """The noise route's combinations: IF neurons only."""
    t = config.train
    if t.method != "noise":
        return
    if config.bptt.neuron != "if":
        raise ConfigError(
            f"bptt.neuron = '{config.bptt.neuron}' with train.method = 'noise': the noise route "
            "trains and deploys IF neurons (its T = 1 -> T = N conversion has no leak); set "
            "bptt.neuron = 'if' or train.method = 'bptt'"
        )


def validate(config: Config) -> Config:
    """Re-check a config changed after it was built (fields set by hand); returns it."""
    _build(config.to_dict())
    return config


def resolve(
    file: str | Path | None = None,
    overrides: list[str] | None = None,
    base: Config | Mapping | None = None,
) -> Config:
    """Defaults (or ``base``, e.g. a checkpoint's config dict) <- config file <- overrides."""
    merged = _as_dict(base) if base is not None else Config().to_dict()
    if file is not None:
        merge(merged, load_file(file), str(file))
    for text in overrides or []:
        merge(merged, parse_override(text), f"override '{text}'")
    return _build(merged)


def dump_toml(config: Config | Mapping) -> str:
    """The config as TOML text (for saving beside checkpoints)."""
    import tomli_w

    return tomli_w.dumps(config.to_dict() if isinstance(config, Config) else dict(config))
