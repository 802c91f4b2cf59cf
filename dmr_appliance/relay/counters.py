"""Message counters of a relay instance, shared by all its worker processes.

The gunicorn master creates ``Counters`` in shared memory before it forks workers and
the sync agent (``share()``); every process then adds to and reads the same numbers.
Nothing touches the disk, and a restarted worker does not take its counts with it.
Outside gunicorn (tests, a single process) ``shared()`` makes a private set.
"""

from __future__ import annotations

import ctypes
import multiprocessing

NAMES = ("messages", "delivered", "rejected", "failed", "refused")
_INDEX = {name: i for i, name in enumerate(NAMES)}

_shared: Counters | None = None


class Counters:
    """Monotonic counters in one shared-memory array, guarded by its lock."""

    def __init__(self) -> None:
        self._values = multiprocessing.get_context("fork").Array(ctypes.c_uint64, len(NAMES))

    def add(self, **increments: int) -> None:
        with self._values.get_lock():
            for name, n in increments.items():
                self._values[_INDEX[name]] += n

    def snapshot(self) -> dict[str, int]:
        with self._values.get_lock():
            return dict(zip(NAMES, self._values[:], strict=True))


def share() -> Counters:
    """Create the instance's counters; call in the gunicorn master, before the fork."""
    global _shared
    _shared = Counters()
    return _shared


def shared() -> Counters:
    """The instance's counters (inherited from the master), or a private set."""
    global _shared
    if _shared is None:
        _shared = Counters()
    return _shared
