"""SIGTERM and SIGHUP end a command the way Ctrl-C does: cleanup code runs, then exit 128 + N.

``timeout``, CI cancellation, ``kill`` and a closed terminal send these signals, whose default
action ends Python at once: ``finally`` blocks would not run, so a Lava run's process group and
its temporary folder would be left behind. Here the signal raises :class:`Terminated` in the
main thread instead; further SIGTERM/SIGHUP are ignored while the cleanup runs.

:func:`deadline` bounds a whole command (``--timeout``) the same way: SIGALRM raises
:class:`~snn2loihi.errors.LavaRunError` in the main thread, wherever the command is (drawing
inputs, the emulator, waiting for Lava), and the same cleanup runs.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

from snn2loihi.errors import LavaRunError

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


@contextlib.contextmanager
def deadline(seconds: float | None, what: str) -> Iterator[None]:
    """Within the block, raise :class:`LavaRunError` ("``what`` exceeded the --timeout ...")
    once ``seconds`` have passed (None: no limit). Main thread only (elsewhere: no limit here;
    the Lava runs keep their own timeouts)."""
    if seconds is None or threading.current_thread() is not threading.main_thread():
        yield
        return

    def expire(signum: int, frame) -> None:
        signal.setitimer(signal.ITIMER_REAL, 0)
        raise LavaRunError(f"{what} exceeded the --timeout of {seconds:g} s and was stopped")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
