"""Conv geometry of the trainable model: the spec grammar, config forms and the pooling fold."""

from __future__ import annotations

import itertools
import logging
import tomllib

import pytest
import torch
import torch.nn.functional as F

from snn2loihi.errors import ConfigError
from snn2loihi.train.config import dump_toml, resolve, validate
from snn2loihi.train.layers import SynapticLayer, pool_fold_error
from snn2loihi.train.model import ConvSpec, build_model


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("64", ConvSpec(64)),
        ("s64", ConvSpec(64, stride=2)),
        ("p64", ConvSpec(64, pool=2)),
        (64, ConvSpec(64, kernel=3, padding=1)),
        ("64k5s2", ConvSpec(64, kernel=5, stride=2, padding=2)),
        ("128k3p2", ConvSpec(128, pool=2)),
        ("64k1pad0", ConvSpec(64, kernel=1, padding=0)),
        ("8p3k5pad0s2", ConvSpec(8, kernel=5, stride=2, padding=0, pool=3)),
        ({"channels": 64, "kernel": 5, "stride": 2, "padding": 2, "pool": 2}, None),
    ],
)
def test_conv_spec_forms(text, expected):
    spec = ConvSpec.parse(text)
    if expected is None:
        expected = ConvSpec(64, kernel=5, stride=2, padding=2, pool=2)
    assert spec == expected
    assert ConvSpec.parse(spec.to_text()) == spec


def _conv_stack(convs, input_shape):
    """A 10-class custom model of ``convs`` (no hidden dense layer) on ``input_shape``, T=2."""
    return build_model(
        "custom",
        input_shape,
        10,
        convs=tuple(convs),
        mean=(0.3,),
        std=(0.3,),
        steps=2,
        step_divisor=2,
    )


def test_short_forms_keep_their_geometry():
    """'64', 's64', 'p64' give the layers they always gave (checkpoints load unchanged)."""
    model = _conv_stack(("4", "s4", "p4"), (1, 8, 8))
    got = [(ly.affine()[0].shape[2], ly.geometry) for ly in model.layers[:3]]
    assert got == [(3, (1, 1)), (3, (2, 1)), (6, (2, 2))]
    assert model.layer_shapes()[:3] == [(4, 8, 8), (4, 4, 4), (4, 2, 2)]


@pytest.mark.parametrize(
    ("entry", "words"),
    [
        ("x9", ["model.convs[0]", "'x9'", "64k5s2pad0p2"]),
        ("64k0", ["kernel = 0"]),
        ("64k3k5", ["kernel is given twice"]),
        ({"channels": 8, "kernal": 5}, ["unknown key 'kernal'", "channels=64"]),
        ({"kernel": 3}, ["missing key 'channels'"]),
        ("64pad100p2", ["padding 100 x pool 2", "127"]),
    ],
)
def test_bad_conv_entries_name_the_entry_and_the_forms(entry, words):
    with pytest.raises(ConfigError) as exc:
        _resolve_convs([entry])
    for w in words:
        assert w in str(exc.value), str(exc.value)


def _resolve_convs(convs):
    config = resolve(None, ["model.arch='custom'"])
    config.model.convs = convs
    return validate(config)


def test_table_and_string_forms_survive_the_saved_config(tmp_path):
    toml = tmp_path / "c.toml"
    toml.write_text(
        '[model]\narch = "custom"\n'
        'convs = ["8k5s2", {channels = 8, kernel = 3, stride = 2, padding = 0, pool = 2}, "s16"]\n'
    )
    config = resolve(toml)
    again = tomllib.loads(dump_toml(config))
    assert again["model"]["convs"] == config.model.convs
    specs = [ConvSpec.parse(e) for e in again["model"]["convs"]]
    assert specs[1] == ConvSpec(8, kernel=3, stride=2, padding=0, pool=2)
    model = _conv_stack(again["model"]["convs"], (1, 24, 24))
    assert model.layer_shapes()[:3] == [(8, 12, 12), (8, 2, 2), (16, 1, 1)]


GEOMETRIES = list(
    itertools.product((5, 6, 7, 9), (1, 2, 3), (1, 2, 5), (1, 2, 3), (0, 1, 2))
)  # n, pool, kernel, stride, padding


def test_folded_pooling_equals_pool_then_conv_exactly_when_allowed():
    """Over many sizes: where ``pool_fold_error`` is None the folded conv is avg_pool -> conv;
    where it names a reason, some input makes them differ."""
    torch.manual_seed(3)
    checked = refused = 0
    for n, p, k, s, q in GEOMETRIES:
        if n // p + 2 * q < k:
            continue
        layer = SynapticLayer("conv", 2, 3, kernel=k, stride=s, padding=q, pool=p).double()
        x = torch.rand(2, 2, n, n, dtype=torch.float64)
        ref = F.conv2d(F.avg_pool2d(x, p), layer.weight, stride=s, padding=q)
        got = layer.synapse(x, layer.affine()[0], None)
        assert got.shape == ref.shape
        equal = torch.allclose(got, ref, rtol=0, atol=1e-12)
        why = pool_fold_error(n, p, k, s, q)
        assert equal == (why is None), (n, p, k, s, q, why)
        checked += 1
        refused += why is not None
    assert checked > 200 and 0 < refused < checked


def test_inexact_pooling_is_refused_naming_layer_and_sizes():
    with pytest.raises(ConfigError) as exc:
        _conv_stack(("4k1", "8k3p2"), (1, 7, 7))
    msg = str(exc.value)
    for w in ["model.convs[1]", "'8k3p2'", "layer 1", "7x7", "pool 2", "padding 1"]:
        assert w in msg, msg
    # padding 0 is exact on any size
    _conv_stack(("4k1", "8k3p2pad0"), (1, 7, 7))


def test_legacy_pool_form_on_an_odd_input_still_loads_with_a_warning(caplog):
    with caplog.at_level(logging.WARNING):
        model = _conv_stack(("4", "p8"), (1, 7, 7))
    assert model.layer_shapes()[1] == (8, 3, 3)
    assert "model.convs[1] = 'p8'" in caplog.text


def test_a_conv_larger_than_its_input_is_refused():
    with pytest.raises(ConfigError, match=r"model.convs\[1\].*input 2x2 is too small"):
        _conv_stack(("4k3s4", "8k5pad0"), (1, 8, 8))
