"""Each relay's traffic by minute, from the counters its heartbeats carry.

A heartbeat's counters are totals since the relay instance started. The last beat of
each minute is kept (two hours of them); a minute's traffic is its totals less the
previous kept minute's. A relay that restarted starts again from zero: totals lower
than before count whole, never negative.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from dmr_appliance.home.store import Conn, Store

KEEP_MINUTES = 120
WINDOW_MINUTES = 60  # what the status page shows
SERIES = ("messages", "delivered", "rejected", "failed", "refused")


@dataclass(frozen=True)
class Minute:
    start: int  # Unix time of the minute's first second
    counts: dict[str, int]


def record(
    conn: Conn,
    instance: str,
    counters: dict[str, int],
    stamp: float,
    *,
    first: bool = False,
) -> None:
    """Keep ``counters`` as this minute's totals (inside the heartbeat's transaction).

    ``first``: home has never heard of the instance, which has just started: its totals
    grew from zero, kept as the minute before, so its first minute shows too.
    """
    minute = int(stamp // 60)
    if first:
        conn.execute(
            "INSERT INTO traffic (instance, minute, counters) VALUES (?, ?, '{}')"
            " ON CONFLICT DO NOTHING",
            (instance, minute - 1),
        )
    conn.execute(
        "INSERT INTO traffic (instance, minute, counters) VALUES (?, ?, ?)"
        " ON CONFLICT (instance, minute) DO UPDATE SET counters = excluded.counters",
        (instance, minute, json.dumps(counters, sort_keys=True)),
    )
    conn.execute(
        "DELETE FROM traffic WHERE instance = ? AND minute < ?", (instance, minute - KEEP_MINUTES)
    )


def per_minute(
    store: Store, instance: str, now: float | None = None, minutes: int = WINDOW_MINUTES
) -> list[Minute]:
    """The last ``minutes`` minutes up to this one, oldest first; no beat: all zero."""
    current = int((now if now is not None else time.time()) // 60)
    first = current - minutes + 1
    with store.read() as conn:
        rows = conn.execute(
            "SELECT minute, counters FROM traffic WHERE instance = ? AND minute >= ?"
            " ORDER BY minute",
            (instance, first - KEEP_MINUTES),
        ).fetchall()
    found: dict[int, dict[str, int]] = {}
    previous: dict[str, Any] | None = None
    for row in rows:
        totals = json.loads(row["counters"])
        if previous is not None and row["minute"] >= first:
            found[row["minute"]] = {k: _difference(totals, previous, k) for k in SERIES}
        previous = totals
    zero = dict.fromkeys(SERIES, 0)
    return [Minute(m * 60, found.get(m, zero)) for m in range(first, current + 1)]


def _difference(totals: dict[str, Any], previous: dict[str, Any], key: str) -> int:
    now, before = int(totals.get(key, 0)), int(previous.get(key, 0))
    return now - before if now >= before else now  # lower: the relay restarted
