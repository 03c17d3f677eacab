"""SIGTERM and SIGHUP end a command the way Ctrl-C does: cleanup code runs, then exit 128 + N.

``timeout``, CI cancellation, ``kill`` and a closed terminal send these signals, whose default
action ends Python at once: ``finally`` blocks would not run, so a Lava run's process group and
its temporary folder would be left behind. Here the signal raises :class:`Terminated` in the
main thread instead; further SIGTERM/SIGHUP are ignored while the cleanup runs.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator

HANDLED = (signal.SIGTERM, signal.SIGHUP)


class Terminated(BaseException):  # noqa: N818 - a BaseException like KeyboardInterrupt
    """The command received ``signum``; not an Exception, so ``except Exception`` lets it pass."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


def _raise(signum: int, frame) -> None:
    for sig in HANDLED:  # one signal is enough: let the cleanup finish
        signal.signal(sig, signal.SIG_IGN)
    raise Terminated(signum)


@contextlib.contextmanager
def terminate_as_exception() -> Iterator[None]:
    """Within the block, SIGTERM/SIGHUP raise :class:`Terminated`; handlers restored after."""
    previous = {sig: signal.signal(sig, _raise) for sig in HANDLED}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
