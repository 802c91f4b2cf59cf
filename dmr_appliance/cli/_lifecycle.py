"""Running a local Stack from a command: SIGTERM behaves like Ctrl-C, clean-up always runs."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

from dmr_appliance.cli import _numbers
from dmr_appliance.local.stack import Stack

# argparse type for --relays
relay_count = _numbers.whole(1, 16)


class Stopped(Exception):
    """SIGTERM arrived (raised in the main thread, as Ctrl-C raises KeyboardInterrupt)."""


def _raise_stopped(signum: int, frame: FrameType | None) -> None:
    raise Stopped(signal.Signals(signum).name)


@contextmanager
def supervised(stack: Stack) -> Iterator[Stack]:
    """Stop ``stack`` on the way out, whatever happened; a second signal cannot cut the
    clean-up short (a user pressing Ctrl-C twice would otherwise leave processes behind)."""
    previous_term = signal.signal(signal.SIGTERM, _raise_stopped)
    previous_int = signal.getsignal(signal.SIGINT)
    try:
        yield stack
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        try:
            stack.stop()
        finally:
            signal.signal(signal.SIGTERM, previous_term)
            signal.signal(signal.SIGINT, previous_int)
