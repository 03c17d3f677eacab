"""Training configuration: defaults, TOML/YAML files, ``key=value`` overrides and validation.

A config is a dict of sections (``data``, ``model``, ``train``, ``ata``, ``bptt``, ``output``).
Every key a user gives must exist in :data:`DEFAULTS` and match its type; values are checked up
front so a bad key or value fails with a :class:`ConfigError` naming it.
"""

from __future__ import annotations

import copy
import math
import tomllib
from pathlib import Path
from typing import Any

from snn2loihi.errors import ConfigError
from snn2loihi.train.ata import GRANULARITIES
from snn2loihi.train.data import DATASETS
from snn2loihi.train.mapping import MAPPING_UNITS
from snn2loihi.train.model import ARCHITECTURES

DEFAULTS: dict[str, dict[str, Any]] = {
    "data": {
        "dataset": "digits",
        "root": "",  # torchvision / imagefolder root
        "train": "",  # npz files
        "test": "",
        "test_fraction": 0.2,  # held-out split when the source has no test set
        "split_seed": 0,
        "num_classes": 0,  # 0: inferred from the labels
        "channels": 0,  # imagefolder: 1 (grey) or 3 (RGB); 0 = 3
        "image_size": 0,  # imagefolder: resize to this square size; 0 = keep
        "augment": "auto",  # "auto" (on for cifar), "on", "off"
        "crop_padding": 4,
        "flip": True,  # random horizontal flip when augmenting (off for digits/MNIST)
        "normalize": True,  # fold the train set's mean/std into layer 0
    },
    "model": {
        "arch": "digits",  # digits | mnist | vgg11 | custom
        "convs": [],  # custom (or preset override): e.g. ["64", "p128", "s256", "64k5s2pad0"]
        "dense": [],  # hidden dense widths
        "threshold": 0.5,  # initial firing threshold (float units); see docs/training.md
        "channels_last": False,
    },
    "train": {
        "method": "snn2ann",  # snn2ann | bptt
        "steps": 4,
        "epochs": 30,
        "batch_size": 64,
        "optimizer": "adam",  # adam | sgd (see docs/training.md for the measured recipes)
        "lr": 0.001,
        "momentum": 0.9,
        "weight_decay": 0.0,
        "scheduler": "cosine",  # cosine | none
        "seed": 0,
        "mapping": "stsu",  # stsu | resu
        "dropout": 0.0,
        "float_snn": False,  # ablation: unquantized float SNN branch
        "weight_bits": 8,
        "compile_neuron": False,  # run cuba_step through torch.compile (same integers)
        "bf16": True,  # bf16 autocast of the ANN branch on CUDA
        "device": "auto",  # auto | cpu | cuda | cuda:N
        "num_threads": 0,  # torch CPU threads; 0 = torch's default
        "eval_batch_size": 256,
    },
    "ata": {
        "enabled": True,
        "tolerance": 0.1,
        "step": 0.01,
        "granularity": "layer",  # layer | channel
    },
    "bptt": {
        "neuron": "if",  # if | lif
        "leak": 0.5,  # LIF: v <- leak * v + I (deployed as vDecay = 4096 * (1 - leak))
        "alpha": 2.0,  # arctan surrogate sharpness
    },
    "output": {
        "dir": "runs/train",
        "progress": True,
        "tensorboard": False,
    },
}

CHOICES = {
    ("data", "dataset"): DATASETS,
    ("data", "augment"): ("auto", "on", "off"),
    ("model", "arch"): (*ARCHITECTURES, "custom"),
    ("train", "method"): ("snn2ann", "bptt"),
    ("train", "optimizer"): ("sgd", "adam"),
    ("train", "scheduler"): ("cosine", "none"),
    ("train", "mapping"): MAPPING_UNITS,
    ("ata", "granularity"): GRANULARITIES,
    ("bptt", "neuron"): ("if", "lif"),
}

# (section, key) -> (low, high) inclusive; None = unbounded.
RANGES = {
    ("data", "test_fraction"): (0.0, 0.99),
    ("data", "num_classes"): (0, None),
    ("data", "channels"): (0, 3),
    ("data", "image_size"): (0, None),
    ("data", "crop_padding"): (0, None),
    ("train", "steps"): (1, 4096),
    ("train", "epochs"): (1, None),
    ("train", "batch_size"): (1, None),
    ("train", "lr"): (1e-12, None),
    ("train", "momentum"): (0.0, 1.0),
    ("train", "weight_decay"): (0.0, None),
    ("train", "dropout"): (0.0, 0.99),
    ("train", "weight_bits"): (2, 9),
    ("train", "num_threads"): (0, None),
    ("train", "eval_batch_size"): (1, None),
    ("ata", "tolerance"): (0.0, 1.0),
    ("ata", "step"): (0.0, None),
    ("bptt", "leak"): (0.0, 1.0),
    ("bptt", "alpha"): (1e-6, None),
    ("model", "threshold"): (1e-9, None),
}


def default_config() -> dict[str, dict[str, Any]]:
    """A fresh copy of the defaults."""
    return copy.deepcopy(DEFAULTS)


def _check_type(section: str, key: str, value: Any) -> Any:
    default = DEFAULTS[section][key]
    name = f"{section}.{key}"
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"{name} = {value!r} must be true or false")
    elif isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{name} = {value!r} must be an integer")
    elif isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{name} = {value!r} must be a number")
        value = float(value)
        if not math.isfinite(value):
            raise ConfigError(f"{name} = {value!r} must be a finite number")
    elif isinstance(default, str):
        if not isinstance(value, str):
            raise ConfigError(f"{name} = {value!r} must be a string")
    elif isinstance(default, list):
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{name} = {value!r} must be a list")
        value = list(value)
    return value


def merge(config: dict, updates: dict, source: str = "config") -> dict:
    """Merge ``{section: {key: value}}`` into ``config`` (in place), rejecting unknown keys."""
    if not isinstance(updates, dict):
        raise ConfigError(f"{source}: expected a table of sections, got {type(updates).__name__}")
    for section, values in updates.items():
        if section not in DEFAULTS:
            raise ConfigError(
                f"{source}: unknown section '{section}' (expected one of {', '.join(DEFAULTS)})"
            )
        if not isinstance(values, dict):
            raise ConfigError(f"{source}: section '{section}' must be a table")
        for key, value in values.items():
            if key not in DEFAULTS[section]:
                raise ConfigError(f"{source}: unknown key '{section}.{key}' = {value!r}")
            config[section][key] = _check_type(section, key, value)
    return config


def load_file(path: str | Path) -> dict:
    """Read a TOML (``.toml``) or YAML (``.yaml``/``.yml``) config file as nested dicts."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"config file '{path}': {exc.strerror}") from None
    try:
        if path.suffix in (".yaml", ".yml"):
            import yaml

            return yaml.safe_load(text) or {}
        return tomllib.loads(text)
    except Exception as exc:  # noqa: BLE001 - any parse error is a config error
        raise ConfigError(f"config file '{path}': cannot parse ({exc})") from None


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


def validate(config: dict) -> dict:
    """Check choices and ranges of a merged config; returns it unchanged."""
    for (section, key), choices in CHOICES.items():
        value = config[section][key]
        if value not in choices:
            raise ConfigError(f"{section}.{key} = {value!r} is not one of {', '.join(choices)}")
    for (section, key), (lo, hi) in RANGES.items():
        value = config[section][key]
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            bounds = f">= {lo}" if hi is None else f"in [{lo}, {hi}]"
            raise ConfigError(f"{section}.{key} = {value!r} must be {bounds}")
    from snn2loihi.train.model import CONV_SPEC_FORMS, ConvSpec

    for i, spec in enumerate(config["model"]["convs"]):
        try:
            ConvSpec.parse(spec)
        except ValueError as exc:
            raise ConfigError(
                f"model.convs[{i}] = {spec!r}: {exc}; accepted forms: {CONV_SPEC_FORMS}"
            ) from None
    for width in config["model"]["dense"]:
        if isinstance(width, bool) or not isinstance(width, int) or width < 1:
            raise ConfigError(f"model.dense entry {width!r} must be a positive integer")
    data = config["data"]
    if data["dataset"] in ("mnist", "cifar10", "cifar100", "imagefolder") and not data["root"]:
        raise ConfigError(f"data.root must be set for data.dataset = '{data['dataset']}'")
    return config


def resolve(
    file: str | Path | None = None, overrides: list[str] | None = None, base: dict | None = None
) -> dict:
    """Defaults (or ``base``) <- config file <- overrides, validated."""
    config = copy.deepcopy(base) if base is not None else default_config()
    if file is not None:
        merge(config, load_file(file), str(file))
    for text in overrides or []:
        merge(config, parse_override(text), f"override '{text}'")
    return validate(config)


def dump_toml(config: dict) -> str:
    """The config as TOML text (for saving beside checkpoints)."""
    import tomli_w

    return tomli_w.dumps(config)
