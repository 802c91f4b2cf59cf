"""Caps on the long polls (GET /v1/sync) one home worker holds at once.

Under gthread each waiting poll holds one of the worker's threads for up to
``sync.max_wait`` seconds. Uncapped, one relay certificate opening enough polls would
take every thread and every other call (admin, tokens, /readyz) would queue behind them.
So a worker holds at most ``max_polls`` polls (never more than three quarters of its
threads: the rest always serve other calls) and at most ``max_polls_per_caller`` for one
certificate; a poll beyond either is refused at once, with Retry-After.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from dmr_appliance.config import HomeConfig
from dmr_appliance.errors import DmrError, Unavailable

RETRY_AFTER = 5  # seconds: a well-behaved relay polls again after this (relay/agent.py)


class PollLimits:
    """Counts this worker's waiting polls, in total and per caller."""

    def __init__(self, total: int, per_caller: int) -> None:
        self.total = total
        self.per_caller = min(per_caller, total)
        self._held: dict[str, int] = {}
        self._count = 0
        self._lock = threading.Lock()

    @classmethod
    def for_config(cls, config: HomeConfig) -> PollLimits:
        reserved = max(1, config.threads * 3 // 4)  # a quarter of the threads never wait
        return cls(min(config.sync.max_polls, reserved), config.sync.max_polls_per_caller)

    @contextmanager
    def hold(self, caller: str) -> Iterator[None]:
        """One poll of ``caller`` waiting; refused (429 / 503) beyond the caps."""
        with self._lock:
            mine = self._held.get(caller, 0)
            if mine >= self.per_caller:
                raise DmrError(
                    f"{caller} already holds {mine} long polls here (at most "
                    f"{self.per_caller}); poll again after the ones open answer",
                    code="sync-polls-per-caller",
                    status=429,
                    title="Too many long polls",
                    headers={"Retry-After": str(RETRY_AFTER)},
                )
            if self._count >= self.total:
                raise Unavailable(
                    f"this worker holds {self._count} long polls, its most; poll again shortly",
                    code="sync-polls-busy",
                    headers={"Retry-After": str(RETRY_AFTER)},
                )
            self._held[caller] = mine + 1
            self._count += 1
        try:
            yield
        finally:
            with self._lock:
                self._count -= 1
                self._held[caller] -= 1
                if not self._held[caller]:
                    del self._held[caller]

    def held(self, caller: str | None = None) -> int:
        with self._lock:
            return self._count if caller is None else self._held.get(caller, 0)
