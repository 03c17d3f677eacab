"""The ``snn2loihi`` command line: one parser, subcommands contributed by each stage.

Exit codes for every command: 0 success, 1 a check failed (e.g. parity mismatch),
2 bad usage or bad input (one line on stderr, no traceback).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from snn2loihi.app.allocator import keep_freed_memory
from snn2loihi.app.signals import Terminated, terminate_as_exception
from snn2loihi.errors import Snn2LoihiError

EXIT_OK, EXIT_CHECK_FAILED, EXIT_BAD_INPUT = 0, 1, 2

# Modules whose ``add_commands(subparsers)`` registers subcommands (imported lazily, no heavy work).
COMMAND_MODULES = (
    "snn2loihi.app.deploy_commands",
    "snn2loihi.app.train_commands",
    "snn2loihi.app.export_commands",
    "snn2loihi.app.eval_commands",
    "snn2loihi.app.demo",
)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit 2
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="snn2loihi",
        description="Train SNNs with SNN2ANN, export them to Lava-DL NetX, and check spike-level "
        "parity between Loihi's simulator and a bit-exact PyTorch emulator.",
    )
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="more logging (-vv: debug)"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(name).add_commands(sub)
    return parser


def reference_markdown(width: int = 100) -> str:
    """The CLI reference (docs/cli.md): every subcommand's ``--help`` at a fixed width."""
    import os

    old = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = str(width)
    try:
        parser = build_parser()
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parts = [
            "# CLI reference",
            "",
            "Generated from the parser by `make docs` (a test checks it is current).",
            "",
            "```",
            parser.format_help().rstrip(),
            "```",
        ]
        for name, cmd in sub.choices.items():
            parts += ["", f"## snn2loihi {name}", "", "```", cmd.format_help().rstrip(), "```"]
        return "\n".join(parts) + "\n"
    finally:
        if old is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = old


def _show_progress_lines() -> None:
    """Progress lines (``snn2loihi.progress``, used off a terminal) go to stderr as they are."""
    progress = logging.getLogger("snn2loihi.progress")
    if not progress.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        progress.addHandler(handler)
    progress.setLevel(logging.INFO)
    progress.propagate = False


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    keep_freed_memory()
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    _show_progress_lines()
    try:
        with terminate_as_exception():
            return int(args.func(args) or 0)
    except (Snn2LoihiError, OSError) as exc:  # OSError: a full disk, a vanished folder, ...
        message = " ".join(str(exc).split())  # one line, whatever the message holds
        print(f"snn2loihi {args.command}: error: {message}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print(f"snn2loihi {args.command}: interrupted", file=sys.stderr)
        return 130
    except Terminated as exc:
        print(f"snn2loihi {args.command}: terminated by {exc}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
