"""Every third-party module the package imports is declared in pyproject.toml (dependencies or
an extra), so that `pip install ".[lava,onnx]"` gives a working snn2loihi."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE_FOLDERS = ("snn2loihi", "train", "export", "deploy", "app", "testing")
# Installed by `make setup` with --no-deps (see the Makefile); documented in the README.
INSTALLED_APART = {"lava-nc", "lava-dl"}


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[; ]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def declared() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = {_name(r) for r in project["dependencies"]}
    for extra in project.get("optional-dependencies", {}).values():
        names |= {_name(r) for r in extra}
    return names


def imported_top_level() -> dict[str, str]:
    """Top-level module -> one file importing it, over the installed package's sources."""
    found: dict[str, str] = {}
    for folder in PACKAGE_FOLDERS:
        for path in sorted((ROOT / folder).glob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    found.setdefault(name.split(".")[0], str(path.relative_to(ROOT)))
    return found


def test_every_imported_distribution_is_declared():
    dists = packages_distributions()
    have = declared()
    missing = []
    for module, where in sorted(imported_top_level().items()):
        if module in sys.stdlib_module_names or module == "snn2loihi":
            continue
        names = {d.lower().replace("_", "-") for d in dists.get(module, [module])}
        if not names & (have | INSTALLED_APART):
            missing.append(f"{module} ({where}): one of {sorted(names)}")
    assert missing == []


def test_the_check_sees_the_imports():
    modules = imported_top_level()
    assert {"torch", "numpy", "h5py", "yaml", "tomli_w", "sklearn", "lava"} <= set(modules)
