"""Progress that reads well both on a terminal and in a log file.

On a terminal: a tqdm bar. Elsewhere (CI logs, ``make demo > log``): one line per item on
stderr, through the ``snn2loihi.progress`` logger, instead of thousands of carriage returns.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable, Iterator

log = logging.getLogger("snn2loihi.progress")


def on_terminal() -> bool:
    """Whether stderr is a terminal (bars redraw in place there)."""
    return sys.stderr.isatty()


def progress(
    iterable: Iterable, *, desc: str, total: int | None = None, unit: str = "it", enabled=True
) -> Iterable:
    """``iterable``, with a bar on a terminal or one logged line per item elsewhere."""
    if not enabled:
        return iterable
    if on_terminal():
        from tqdm.auto import tqdm

        return tqdm(iterable, desc=desc, total=total, unit=unit)
    return _lines(iterable, desc, total, unit)


def _lines(iterable: Iterable, desc: str, total: int | None, unit: str) -> Iterator:
    of = f"/{total}" if total is not None else ""
    for k, item in enumerate(iterable, start=1):
        yield item
        log.info("%s: %s %d%s done", desc, unit, k, of)
