"""``SeenIds``: turn at-least-once delivery into exactly-once processing, for recipients.

A relay may deliver one message twice: the sender retries with the same message id when
it did not hear the outcome (its relay died mid-answer, the router timed out). A
recipient therefore acts on a message only when ``first_time(message_id, sender=...)``
says so and answers a repeat with the same 2xx without acting again.

A message is its sender's id: the key is (scope, sender, message id), so an id that
another participant used (by chance, or to squat it while this sender's copy was still
failing) is never a duplicate of this sender's message. The sender is the ``X-DMR-From``
header the relay sets (the relay checked it against the sender's token).

The ids live in SQLite (stdlib, WAL), so they survive a restart of the recipient, which
is exactly when a retry is most likely; several processes may share the file. Each id is
kept until its message's ``expires_at`` (no relay delivers an expired message, so no
copy can arrive later), which bounds the store by the messages still alive; ``max_ids``
is a hard cap on top (the oldest expiries go first, with a warning, since forgetting a
live id re-opens the door to a duplicate). A store written before ids had a sender is
migrated on open: its rows keep their sender unknown (``LEGACY``) and still make any
copy of their id a repeat, until they expire, as they did before.

Mark-then-act: ``first_time`` records the id before the application acts. If acting
fails, call ``forget(message_id, sender=...)`` and answer non-2xx, so the sender's retry is
processed; a crash between the two loses that message's processing, so an application
that must never lose one records the id in the same transaction as its effect instead.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from datetime import datetime
from pathlib import Path

from dmr_appliance import logs
from dmr_appliance.timefmt import parse_time

DEFAULT_HOLD = 7 * 86400.0  # seconds an id is kept when its expiry is unknown (the max TTL)
DEFAULT_MAX_IDS = 1_000_000
PRUNE_EVERY = 1000  # inserts between sweeps of expired ids

_log = logs.get_logger("dmr.dedup")

LEGACY = "*"  # the sender of a row from before senders were kept: never a participant id

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS seen (
        scope TEXT NOT NULL,
        sender TEXT NOT NULL,
        message_id TEXT NOT NULL,
        expires_at REAL NOT NULL,
        PRIMARY KEY (scope, sender, message_id)
    ) WITHOUT ROWID""",
    "CREATE INDEX IF NOT EXISTS seen_expiry ON seen (expires_at)",
)

# A table from before senders were kept, (scope, message_id), becomes the new one.
_MIGRATE = (
    "ALTER TABLE seen RENAME TO seen_v1",
    "DROP INDEX IF EXISTS seen_expiry",
    *_SCHEMA,
    "INSERT INTO seen SELECT scope, '*', message_id, expires_at FROM seen_v1",  # LEGACY
    "DROP TABLE seen_v1",
)

Expiry = float | datetime | str | None


class SeenIds:
    """Message ids already processed, per ``scope`` (e.g. the recipient they were for)."""

    def __init__(
        self,
        path: Path | str = ":memory:",
        *,
        max_ids: int = DEFAULT_MAX_IDS,
        hold: float = DEFAULT_HOLD,
    ) -> None:
        if str(path) != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.max_ids = max_ids
        self.hold = hold
        self._db = sqlite3.connect(
            str(path), timeout=10.0, isolation_level=None, check_same_thread=False
        )
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")  # WAL: durable across a process crash
        self._migrate()
        self._lock = threading.Lock()
        self._inserts = 0

    def first_time(
        self,
        message_id: str,
        expires_at: Expiry = None,
        *,
        sender: str,
        scope: str = "",
        now: float | None = None,
    ) -> bool:
        """True the first time ``sender``'s ``message_id`` is offered in ``scope``; False
        for a repeat. The same id from another sender is another message."""
        now = time.time() if now is None else now
        until = _timestamp(expires_at, now + self.hold)
        with self._lock:
            # A row whose message expired is stale: a "new" copy of it is not a repeat.
            self._db.execute(
                "DELETE FROM seen WHERE scope = ? AND sender IN (?, ?) AND"
                " message_id = ? AND expires_at < ?",
                (scope, sender, LEGACY, message_id, now),
            )
            if self._db.execute(
                "SELECT 1 FROM seen WHERE scope = ? AND sender = ? AND message_id = ?",
                (scope, LEGACY, message_id),
            ).fetchone():
                return False  # processed before senders were kept
            added = (
                self._db.execute(
                    "INSERT OR IGNORE INTO seen (scope, sender, message_id, expires_at)"
                    " VALUES (?, ?, ?, ?)",
                    (scope, sender, message_id, until),
                ).rowcount
                == 1
            )
            if added:
                self._inserts += 1
                if self._inserts % PRUNE_EVERY == 0:
                    self._prune(now)
            return added

    def forget(self, message_id: str, *, sender: str, scope: str = "") -> None:
        """Processing failed: let the next copy of ``sender``'s ``message_id`` be processed."""
        with self._lock:
            self._db.execute(
                "DELETE FROM seen WHERE scope = ? AND sender IN (?, ?) AND message_id = ?",
                (scope, sender, LEGACY, message_id),
            )

    def prune(self, now: float | None = None) -> None:
        with self._lock:
            self._prune(time.time() if now is None else now)

    def __len__(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT count(*) FROM seen").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _migrate(self) -> None:
        """Create the table, or bring one from before senders were kept to this schema
        (in one IMMEDIATE transaction: another process opening the file waits, then finds
        nothing to do)."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            columns = {row[1] for row in self._db.execute("PRAGMA table_info(seen)")}
            for statement in _MIGRATE if columns and "sender" not in columns else _SCHEMA:
                self._db.execute(statement)
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise

    def _prune(self, now: float) -> None:
        self._db.execute("DELETE FROM seen WHERE expires_at < ?", (now,))
        held = int(self._db.execute("SELECT count(*) FROM seen").fetchone()[0])
        excess = held - self.max_ids
        if excess > 0:
            self._db.execute(
                "DELETE FROM seen WHERE (scope, sender, message_id) IN (SELECT"
                " scope, sender, message_id FROM seen ORDER BY expires_at"
                " LIMIT ?)",
                (excess,),
            )
            logs.log_event(
                _log, "dedup.evicted", logging.WARNING, count=excess, max_ids=self.max_ids
            )


def _timestamp(value: Expiry, default: float) -> float:
    if value is None:
        return default
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, str):
        try:
            return parse_time(value).timestamp()
        except ValueError:
            return default
    return float(value)
