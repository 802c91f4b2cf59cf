"""The one retry policy (ADR-009): pure, no sockets, tested alone.

Exponential backoff with full jitter (AWS architecture blog, "Exponential Backoff and
Jitter"), never sooner than a ``Retry-After`` the server asked for (up to a cap). The
sender takes up to ``attempts`` tries per router, then the next router; failure reports
take a few; the relay's sync agent counts its failures without end and uses only the
delays (``relay/agent.py SYNC_RETRY``).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 3
    base_delay: float = 0.2
    max_delay: float = 5.0
    max_retry_after: float = 30.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("attempts must be at least 1")
        if self.base_delay < 0 or self.max_delay < self.base_delay:
            raise ValueError("need 0 <= base_delay <= max_delay")

    def ceiling(self, attempt: int) -> float:
        """min(max_delay, base_delay * 2**(attempt-1)); the exponent is bounded, so that a
        caller that never stops counting (the sync agent) never overflows a float."""
        return min(self.max_delay, self.base_delay * 2.0 ** min(max(attempt - 1, 0), 64))

    def backoff(self, attempt: int, rng: random.Random | None = None) -> float:
        """Full jitter: uniform in [0, ceiling(attempt)]."""
        return (rng or random).uniform(0.0, self.ceiling(attempt))

    def longest_pauses(self) -> float:
        """The most one router's backoff can add up to (no Retry-After): the bound that
        `dmr send` documents, with attempts x the connect timeout."""
        return sum(self.ceiling(n) for n in range(1, self.attempts))

    def delay(
        self, attempt: int, retry_after: float | None = None, rng: random.Random | None = None
    ) -> float:
        """How long to wait after failed try ``attempt`` (1-based) before the next one."""
        wait = self.backoff(attempt, rng)
        if retry_after is not None:
            wait = max(wait, min(retry_after, self.max_retry_after))
        return wait


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP-date), or None."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())
