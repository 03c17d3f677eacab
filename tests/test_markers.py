"""The markers say what a test needs, read from the test sources (no test is run):

- a test that skips without a CUDA GPU (``skipif(not torch.cuda.is_available())``, or
  ``pytest.skip`` under ``if not torch.cuda.is_available()``) carries ``cuda``, so that
  bench/device_run.sh (``-m cuda``) runs it on the GPU machine;
- a test marked ``multiprocess`` starts another process (``run_cli``, ``subprocess``, ``Popen``,
  ``spawn``, ...) in its body, in a function of its module that it calls or in a fixture of its
  module that it requests, so that ``make test-fast`` (``-m "not multiprocess"``) leaves out
  only what needs the process boundary; and one that starts another process is marked
  ``multiprocess`` (or ``lava``: the Lava simulator runs in processes of its own).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
# names whose use starts another process: the CLI helpers (cli_helpers.run_cli,
# nir_library_helpers.convert_and_parity_cli), subprocess, multiprocessing/DDP
STARTS_A_PROCESS = {
    "run_cli",
    "convert_and_parity_cli",
    "subprocess",
    "Popen",
    "spawn",
    "start_processes",
    "executable",
}


def _mark_names(node: ast.expr) -> set[str]:
    """The ``pytest.mark.NAME`` names in a decorator, a ``pytestmark`` value or a param's marks."""
    names = set()
    for sub in ast.walk(node):
        if (
            isinstance(sub, ast.Attribute)
            and isinstance(sub.value, ast.Attribute)
            and sub.value.attr == "mark"
        ):
            names.add(sub.attr)
    return names


def _is_not_cuda_available(test: ast.expr) -> bool:
    """``not <...>.cuda.is_available()``."""
    return (
        isinstance(test, ast.UnaryOp)
        and isinstance(test.op, ast.Not)
        and isinstance(test.operand, ast.Call)
        and isinstance(test.operand.func, ast.Attribute)
        and test.operand.func.attr == "is_available"
        and isinstance(test.operand.func.value, ast.Attribute)
        and test.operand.func.value.attr == "cuda"
    )


def _skips_without_cuda(decorators: list[ast.expr], body: list[ast.stmt]) -> bool:
    for dec in decorators:
        for sub in ast.walk(dec):
            if (
                isinstance(sub, ast.Call)
                and isinstance(sub.func, ast.Attribute)
                and sub.func.attr == "skipif"
                and sub.args
                and _is_not_cuda_available(sub.args[0])
            ):
                return True
    for stmt in body:
        for sub in ast.walk(stmt):
            if isinstance(sub, ast.If) and _is_not_cuda_available(sub.test):
                for inner in sub.body:
                    for call in ast.walk(inner):
                        if isinstance(call, ast.Call) and getattr(call.func, "attr", "") == "skip":
                            return True
    return False


def _used_names(node: ast.AST) -> set[str]:
    names = set()
    for sub in ast.walk(node):
        if isinstance(sub, ast.Name):
            names.add(sub.id)
        elif isinstance(sub, ast.Attribute):
            names.add(sub.attr)
    return names


def marker_problems(source: str, filename: str = "<test>") -> list[str]:
    """The tests in ``source`` whose markers disagree with what they do, one line each."""
    tree = ast.parse(source, filename)
    module_marks: set[str] = set()
    functions: dict[str, ast.FunctionDef] = {}
    module_skips = []
    for stmt in tree.body:
        if isinstance(stmt, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "pytestmark" for t in stmt.targets
        ):
            module_marks |= _mark_names(stmt.value)
            module_skips.append(stmt.value)
        elif isinstance(stmt, ast.FunctionDef):
            functions[stmt.name] = stmt

    def starts_a_process(name: str, seen: set[str]) -> bool:
        if name in seen or name not in functions:
            return False
        seen.add(name)
        fn = functions[name]
        used = _used_names(fn) | {a.arg for a in fn.args.args}
        return bool(used & STARTS_A_PROCESS) or any(starts_a_process(n, seen) for n in used)

    problems = []
    for name, fn in functions.items():
        if not name.startswith("test_"):
            continue
        marks = module_marks | set().union(*map(_mark_names, fn.decorator_list))
        where = f"{filename}:{fn.lineno} {name}"
        if "cuda" not in marks and _skips_without_cuda(
            [*fn.decorator_list, *module_skips], fn.body
        ):
            problems.append(f"{where} skips without a CUDA GPU but is not marked cuda")
        starts = starts_a_process(name, set())
        if "multiprocess" in marks and not starts:
            problems.append(f"{where} is marked multiprocess but starts no other process")
        if starts and not marks & {"multiprocess", "lava"}:
            problems.append(f"{where} starts another process but is not marked multiprocess")
    return problems


def test_every_test_module_has_markers_that_match_what_its_tests_do():
    problems = []
    for path in sorted(TESTS.glob("test_*.py")):
        problems += marker_problems(path.read_text(), path.name)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(
    ("source", "problem"),
    [
        (
            "import pytest, torch\n"
            "@pytest.mark.skipif(not torch.cuda.is_available(), reason='GPU')\n"
            "def test_a(): pass\n",
            "not marked cuda",
        ),
        (
            "import pytest, torch\n"
            "def test_a():\n"
            "    if not torch.cuda.is_available():\n"
            "        pytest.skip('needs a CUDA GPU')\n",
            "not marked cuda",
        ),
        (
            "import pytest\n"
            "pytestmark = pytest.mark.multiprocess\n"
            "def helper(): return 1\n"
            "def test_a(tmp_path): helper()\n",
            "starts no other process",
        ),
        (
            "import subprocess, sys\n"
            "def test_a(): subprocess.run([sys.executable, '-c', 'pass'])\n",
            "not marked multiprocess",
        ),
    ],
    ids=["skipif", "skip-in-body", "module-mark", "unmarked-subprocess"],
)
def test_the_marker_check_finds_a_missing_or_wrong_mark(source, problem):
    (found,) = marker_problems(source)
    assert problem in found


@pytest.mark.parametrize(
    "source",
    [
        "import pytest, torch\n"
        "pytestmark = [pytest.mark.cuda,\n"
        "    pytest.mark.skipif(not torch.cuda.is_available(), reason='GPU')]\n"
        "def test_a(): pass\n",
        "import pytest, torch\n"
        "def test_a():\n"
        "    if torch.cuda.is_available():\n"
        "        pytest.skip('this machine has a GPU')\n",
        "import pytest\n"
        "from cli_helpers import run_cli\n"
        "def cli(out): return run_cli('train', out)\n"
        "@pytest.fixture\n"
        "def done(tmp_path): return cli(tmp_path)\n"
        "@pytest.mark.multiprocess\n"
        "def test_a(done): pass\n",
    ],
    ids=["module-cuda", "skips-with-a-gpu", "process-in-a-fixture"],
)
def test_the_marker_check_accepts_what_is_right(source):
    assert marker_problems(source) == []
