"""Time as home stores it (epoch seconds) and as its API shows it (RFC 3339 UTC)."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from dmr_appliance.envelope import format_time


def now() -> int:
    return int(time.time())


def rfc3339(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    return format_time(datetime.fromtimestamp(int(epoch), tz=UTC))
