"""Draining a relay before it stops (a rolling upgrade, a host's maintenance).

While the flag file ``draining`` exists in the instance's runtime directory (beside
gunicorn's socket), ``POST /v1/messages`` and ``/readyz`` answer 503 ``draining``: nothing
is attempted, so the router passes the message to another relay at once
(``proxy_next_upstream http_503``) and leaves this one out, and a Kubernetes readiness
probe takes the pod out of its Service. Deliveries already admitted finish. ``dmr relay
drain`` sets the flag and waits until no delivery is in flight; the gunicorn master
clears it when it starts (``relay/gunicorn_conf.py``), so a restarted (upgraded) relay
takes messages again.

Workers look for the flag at most every ``CHECK_INTERVAL`` (``Flag``): not a system call
per request.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from pathlib import Path

from dmr_appliance import metrics
from dmr_appliance.errors import Unavailable
from dmr_appliance.relay import metrics as relay_metrics

FLAG = "draining"
CHECK_INTERVAL = 0.1  # seconds between a worker's looks at the flag


class Flag:
    """A worker's look at the drain flag: ``refuse_if_set()`` answers 503 ``draining`` while
    it exists. Threads may race to look again; each sees a recent answer."""

    def __init__(self, path: Path, interval: float = CHECK_INTERVAL) -> None:
        self.path = path
        self.interval = interval
        self._set = False
        self._next_look = 0.0

    def refuse_if_set(self) -> None:
        now = time.monotonic()
        if now >= self._next_look:
            self._next_look = now + self.interval
            self._set = self.path.exists()
        if self._set:
            raise Unavailable(
                "this relay is draining (it is about to stop); another relay takes the message",
                code="draining",
                title="Draining",
            )


def flag_path(socket: Path | str) -> Path:
    return Path(socket).parent / FLAG


def start(socket: Path | str) -> Path:
    """Set the flag (idempotent); the path written."""
    path = flag_path(socket)
    path.touch(mode=0o644, exist_ok=True)
    return path


def stop(socket: Path | str) -> bool:
    """Clear the flag; whether it was set."""
    try:
        flag_path(socket).unlink()
    except FileNotFoundError:
        return False
    return True


def in_flight(socket: Path | str) -> float:
    """Deliveries in flight in the relay serving on ``socket``: its workers' gauge, read
    from the instance's metrics directory (``relay/metrics.py`` names it)."""
    return relay_metrics.in_flight(metrics.directory(Path(socket)))


def wait_idle(
    socket: Path | str,
    timeout: float,
    *,
    settle: float,
    on_wait: Callable[[float, float], None] | None = None,
) -> float | None:
    """Wait ``settle`` seconds (every worker sees the flag), then until no delivery is in
    flight; the seconds waited, or None when deliveries were still running at ``timeout``."""
    began = time.monotonic()
    time.sleep(settle)
    while True:
        with contextlib.suppress(OSError, ValueError):  # a file being written: read again
            left = in_flight(socket)
            if left <= 0:
                return time.monotonic() - began
            if on_wait is not None:
                on_wait(left, time.monotonic() - began)
        if time.monotonic() - began >= timeout:
            return None
        time.sleep(0.1)
