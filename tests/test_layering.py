"""The import direction of the layers (docs/architecture.md), read from the source with ``ast``.

core (``snn2loihi/*.py``) <- train <- export -> deploy -> core; app on top; testing -> core.
Every import counts, including the lazy ones inside functions. Also: no package function is
longer than :data:`MAX_FUNCTION_LINES` (#31).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# folder in the repository -> layer name (the installed package is snn2loihi.<layer>)
FOLDERS = {
    "snn2loihi": "core",
    "train": "train",
    "export": "export",
    "deploy": "deploy",
    "app": "app",
    "testing": "testing",
}
# layer -> the layers it may import (itself included)
ALLOWED = {
    "core": {"core"},
    "train": {"core", "train"},
    "deploy": {"core", "deploy"},
    "export": {"core", "train", "deploy", "export"},
    "testing": {"core", "testing"},
    "app": {"core", "train", "export", "deploy", "app"},
}
# Program entry points: never imported by a library module, so they may reach any layer.
ENTRY_POINTS = {"snn2loihi/__main__.py"}
# Third-party packages only one layer may import (Lava is heavy and deploy-only).
RESERVED = {"lava": {"deploy"}}
# The longest a package function may be: lines from ``def`` to the end of its body (#31).
MAX_FUNCTION_LINES = 60
PACKAGES = ("snn2loihi", "train", "export", "deploy", "app")


def layer_of_module(name: str) -> str | None:
    """Layer of an absolute module name, or None for a third-party module."""
    parts = name.split(".")
    if parts[0] != "snn2loihi":
        return None
    if len(parts) > 1 and parts[1] in FOLDERS and parts[1] != "snn2loihi":
        return FOLDERS[parts[1]]
    return "core"


def imported_modules(tree: ast.AST) -> list[tuple[int, str]]:
    """``(line, absolute module name)`` of every import in ``tree`` (``from a import b`` -> a.b)."""
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"line {node.lineno}: use absolute imports"
            out += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
    return out


def violations(source: str, layer: str, where: str) -> list[str]:
    """Imports in ``source`` (a file of ``layer``) that point the wrong way."""
    bad = []
    for line, name in imported_modules(ast.parse(source)):
        target = layer_of_module(name)
        top = name.split(".")[0]
        if target is not None and target not in ALLOWED[layer]:
            bad.append(f"{where}:{line}: {layer} imports {name} ({target})")
        if top in RESERVED and layer not in RESERVED[top]:
            bad.append(f"{where}:{line}: {layer} imports {name} (only {RESERVED[top]} may)")
    return bad


def project_files():
    for folder, layer in FOLDERS.items():
        for path in sorted((ROOT / folder).glob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            if rel not in ENTRY_POINTS:
                yield rel, layer


def test_every_import_points_down():
    files = list(project_files())
    assert len(files) > 40  # the glob found the project
    bad = []
    for rel, layer in files:
        bad += violations((ROOT / rel).read_text(), layer, rel)
    assert bad == []


@pytest.mark.parametrize(
    ("source", "layer", "expected"),
    [
        ("from snn2loihi.train.trainer import train", "core", "core imports"),
        ("def f():\n    from snn2loihi.app.demo import run_demo\n", "export", "export imports"),
        ("import snn2loihi.export.exporter", "deploy", "deploy imports"),
        ("from snn2loihi.deploy.emulator import Emulator", "train", "train imports"),
        ("from lava.magma.core.run_configs import Loihi2SimCfg", "core", "only {'deploy'}"),
    ],
)
def test_an_upward_import_is_caught(source, layer, expected):
    found = violations(source, layer, "x.py")
    assert len(found) == 1 and expected in found[0]


@pytest.mark.parametrize(
    ("source", "layer"),
    [
        ("from snn2loihi.schema import NetXNetwork", "deploy"),
        ("from snn2loihi.train.model import SpikingNet", "export"),
        ("from snn2loihi.deploy.emulator import Emulator", "export"),
        ("from snn2loihi import quant", "train"),
        ("from snn2loihi.export.exporter import export_checkpoint", "app"),
    ],
)
def test_a_downward_import_is_allowed(source, layer):
    assert violations(source, layer, "x.py") == []


def long_functions(source: str, where: str, limit: int = MAX_FUNCTION_LINES) -> list[str]:
    """``file:function:lines`` of every function in ``source`` (methods and nested functions
    included) longer than ``limit`` lines, from ``def`` to the end of its body."""
    out = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            lines = node.end_lineno - node.lineno + 1
            if lines > limit:
                out.append(f"{where}:{node.name}:{lines}")
    return out


def test_no_package_function_is_over_60_lines():
    files = [path for folder in PACKAGES for path in sorted((ROOT / folder).rglob("*.py"))]
    assert len(files) > 40  # the glob found the project
    bad = []
    for path in files:
        bad += long_functions(path.read_text(), path.relative_to(ROOT).as_posix())
    assert bad == []


@pytest.mark.parametrize(("body", "expected"), [(58, []), (59, ["x.py:f:61"])])
def test_a_long_function_is_caught(body, expected):
    """``def`` + docstring + ``body`` lines: 60 lines pass, 61 are named (nested in a class)."""
    source = 'class C:\n    def f(self):\n        """Doc."""\n' + "        x = 1\n" * body
    assert long_functions(source, "x.py") == expected
