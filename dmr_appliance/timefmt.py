"""Time as the project writes it: RFC 3339 in UTC with a ``Z`` (envelopes, home's API,
the PKI index), and the epoch seconds home stores.

Pure: stdlib only.
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime

_RFC3339 = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]+)?(?:[Zz]|[+-][0-9]{2}:[0-9]{2})"
)


def format_time(dt: datetime) -> str:
    """RFC 3339 in UTC with a ``Z``; microseconds only when there are any."""
    if dt.tzinfo is None:
        raise ValueError("format_time needs a timezone-aware datetime")
    return dt.astimezone(UTC).replace(tzinfo=None).isoformat() + "Z"


def parse_time(text: str) -> datetime:
    """Parse a strict RFC 3339 date-time (explicit offset or Z) into aware UTC.

    Raises ValueError otherwise. Leap seconds (``:60``) are refused: Python cannot
    represent them, and no sender needs one.
    """
    if not _RFC3339.fullmatch(text):
        raise ValueError(f"not an RFC 3339 date-time with an offset: {text[:40]!r}")
    try:
        return datetime.fromisoformat(text.upper()).astimezone(UTC)
    except OverflowError as exc:  # an offset pushes it past year 1 or 9999
        raise ValueError(f"date-time out of range: {text!r}") from exc


def now() -> int:
    """Epoch seconds, as home stores times."""
    return int(time.time())


def rfc3339(epoch: float | None) -> str | None:
    """Stored epoch seconds as the API shows them (None stays None)."""
    if epoch is None:
        return None
    return format_time(datetime.fromtimestamp(int(epoch), tz=UTC))
