"""SQLite store shared by every gunicorn worker: connections, transactions, migrations.

One connection per thread (gthread workers serve each request on one thread), WAL so
readers never block the writer, ``busy_timeout`` so concurrent writers queue instead of
failing, and ``BEGIN IMMEDIATE`` for writes so a read-then-write never deadlocks.
``synchronous=FULL``: an acknowledged write survives a crash of the process or host.

The sync version is a counter in ``sync_state``; ``bump`` increments it inside the
caller's write transaction, so relays see a change and its version atomically.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

from dmr_appliance import logs
from dmr_appliance.errors import Unavailable

BUSY_TIMEOUT_MS = 10_000
_log = logs.get_logger("dmr.home.store")

# Forward migrations: MIGRATIONS[n] takes the schema from version n to n + 1. Append only.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE sync_state (id INTEGER PRIMARY KEY CHECK (id = 1), version INTEGER NOT NULL);
    INSERT INTO sync_state (id, version) VALUES (1, 1);
    CREATE TABLE participants (
        id TEXT PRIMARY KEY,
        endpoint TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('active', 'suspended', 'revoked')),
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
    );
    CREATE TABLE participant_rooms (
        participant_id TEXT NOT NULL REFERENCES participants (id) ON DELETE CASCADE,
        room TEXT NOT NULL,
        PRIMARY KEY (participant_id, room)
    );
    CREATE INDEX participant_rooms_room ON participant_rooms (room);
    -- Deleted participants stay refused by relays until their last token has expired.
    CREATE TABLE removed_participants (id TEXT PRIMARY KEY, until INTEGER NOT NULL);
    CREATE TABLE signing_keys (
        kid TEXT PRIMARY KEY,
        created_at INTEGER NOT NULL,
        retired_at INTEGER
    );
    CREATE TABLE issued_tokens (
        jti TEXT PRIMARY KEY,
        subject TEXT NOT NULL,
        kid TEXT NOT NULL,
        issued_at INTEGER NOT NULL,
        expires_at INTEGER NOT NULL,
        revoked_at INTEGER
    );
    CREATE INDEX issued_tokens_revoked ON issued_tokens (revoked_at) WHERE revoked_at IS NOT NULL;
    CREATE TABLE instances (
        id TEXT PRIMARY KEY,
        address TEXT NOT NULL,
        version TEXT NOT NULL,
        sync_version INTEGER NOT NULL,
        counters TEXT NOT NULL,
        first_seen REAL NOT NULL,
        last_beat REAL NOT NULL
    );
    CREATE TABLE failures (
        message_id TEXT PRIMARY KEY,
        room TEXT NOT NULL,
        sender TEXT NOT NULL,
        recipients TEXT NOT NULL,
        envelope TEXT NOT NULL,
        reported_by TEXT NOT NULL,
        first_reported_at INTEGER NOT NULL,
        last_reported_at INTEGER NOT NULL,
        reports INTEGER NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('open', 'resolved')),
        resolved_at INTEGER,
        resolved_by TEXT,
        note TEXT
    );
    CREATE INDEX failures_status_room ON failures (status, room);
    CREATE TABLE failure_attempts (
        message_id TEXT NOT NULL REFERENCES failures (message_id) ON DELETE CASCADE,
        target TEXT NOT NULL,
        at TEXT NOT NULL,
        outcome TEXT NOT NULL,
        status INTEGER,
        detail TEXT,
        UNIQUE (message_id, target, at, outcome)
    );
    """,
    """
    ALTER TABLE instances ADD COLUMN sync_age REAL;
    -- A relay's counters as its last heartbeat of each minute reported them: the status
    -- page charts the differences (home/traffic.py keeps two hours).
    CREATE TABLE traffic (
        instance TEXT NOT NULL,
        minute INTEGER NOT NULL,
        counters TEXT NOT NULL,
        PRIMARY KEY (instance, minute)
    ) WITHOUT ROWID;
    """,
    """
    -- A failure report belongs to its sender: (sender, message_id), so one participant's
    -- report of an id never blocks another's. Rebuilt, as SQLite cannot change a primary
    -- key in place: every existing row and attempt is kept. (No semicolons in comments.)
    CREATE TABLE failures_v3 (
        sender TEXT NOT NULL,
        message_id TEXT NOT NULL,
        room TEXT NOT NULL,
        recipients TEXT NOT NULL,
        envelope TEXT NOT NULL,
        reported_by TEXT NOT NULL,
        first_reported_at INTEGER NOT NULL,
        last_reported_at INTEGER NOT NULL,
        reports INTEGER NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('open', 'resolved')),
        resolved_at INTEGER,
        resolved_by TEXT,
        note TEXT,
        PRIMARY KEY (sender, message_id)
    );
    INSERT INTO failures_v3 SELECT sender, message_id, room, recipients, envelope,
        reported_by, first_reported_at, last_reported_at, reports, status, resolved_at,
        resolved_by, note FROM failures;
    CREATE TABLE failure_attempts_v3 (
        sender TEXT NOT NULL,
        message_id TEXT NOT NULL,
        target TEXT NOT NULL,
        at TEXT NOT NULL,
        outcome TEXT NOT NULL,
        status INTEGER,
        detail TEXT,
        FOREIGN KEY (sender, message_id) REFERENCES failures_v3 (sender, message_id)
            ON DELETE CASCADE,
        UNIQUE (sender, message_id, target, at, outcome)
    );
    INSERT INTO failure_attempts_v3 SELECT f.sender, a.message_id, a.target, a.at, a.outcome,
        a.status, a.detail FROM failure_attempts a JOIN failures f USING (message_id);
    DROP TABLE failure_attempts;
    DROP TABLE failures;
    ALTER TABLE failures_v3 RENAME TO failures;
    ALTER TABLE failure_attempts_v3 RENAME TO failure_attempts;
    CREATE INDEX failures_status_room ON failures (status, room);
    CREATE INDEX failures_message_id ON failures (message_id);
    CREATE INDEX failures_status_sender ON failures (status, sender, last_reported_at)
    """,
    """
    -- When an instance's last beat was its leaving one (a clean stop): its health is left,
    -- not down, whatever its age. NULL for every existing row, and again at its next beat.
    ALTER TABLE instances ADD COLUMN left_at REAL
    """,
    """
    -- A room's policy (issue 26): signed = 1, relays refuse its unsigned messages. The
    -- flag travels in access tokens, so a room needs no participants to have one, and a
    -- room without a row is unsigned. Relays never read this table (no sync bump).
    CREATE TABLE room_policies (
        room TEXT PRIMARY KEY,
        signed INTEGER NOT NULL CHECK (signed IN (0, 1)),
        updated_at INTEGER NOT NULL
    ) WITHOUT ROWID
    """,
)


class Store:
    """The home database at ``path``; safe to share between threads and processes."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._local = threading.local()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.migrate()

    def connect(self) -> sqlite3.Connection:
        """A new connection with home's settings (the caller owns it)."""
        conn = sqlite3.connect(
            self.path,
            timeout=BUSY_TIMEOUT_MS / 1000,
            isolation_level=None,
            check_same_thread=False,
        )
        conn.row_factory = sqlite3.Row
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA foreign_keys = ON")
        return conn

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self.connect()
        return conn

    @contextlib.contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """A short ``BEGIN IMMEDIATE`` transaction: committed on exit, rolled back on error."""
        with self._transaction("BEGIN IMMEDIATE") as conn:
            yield conn

    @contextlib.contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        """A read transaction: every query inside sees the same snapshot."""
        with self._transaction("BEGIN") as conn:
            yield conn

    @contextlib.contextmanager
    def _transaction(self, begin: str) -> Iterator[sqlite3.Connection]:
        conn = self._conn()
        try:
            conn.execute(begin)
        except sqlite3.OperationalError as exc:  # locked beyond busy_timeout, disk gone, ...
            raise _unavailable(exc) from exc
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException:
            # Also when COMMIT itself failed: a transaction left open on this thread's
            # connection would refuse every later request the thread serves.
            if conn.in_transaction:  # some errors have already rolled it back
                conn.execute("ROLLBACK")
            raise

    def migrate(self) -> int:
        """Bring the schema to the newest version; returns it. Safe to race: the
        IMMEDIATE transaction makes other workers wait, then find nothing to do."""
        with self.write() as conn:
            conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            row = conn.execute("SELECT version FROM schema_version").fetchone()
            current = row[0] if row else 0
            if row is None:
                conn.execute("INSERT INTO schema_version (version) VALUES (0)")
            for version in range(current, len(MIGRATIONS)):
                for statement in _statements(MIGRATIONS[version]):
                    conn.execute(statement)
            conn.execute("UPDATE schema_version SET version = ?", (len(MIGRATIONS),))
        return len(MIGRATIONS)

    def version(self, conn: sqlite3.Connection | None = None) -> int:
        """The current sync version."""
        if conn is not None:
            return conn.execute("SELECT version FROM sync_state").fetchone()[0]
        with self.read() as conn:
            return self.version(conn)

    @staticmethod
    def bump(conn: sqlite3.Connection) -> int:
        """Increment the sync version within the caller's write transaction."""
        conn.execute("UPDATE sync_state SET version = version + 1")
        return conn.execute("SELECT version FROM sync_state").fetchone()[0]

    def check(self) -> int:
        """The sync version, or ``Unavailable`` if the database cannot answer (for /readyz)."""
        try:
            return self.version()
        except sqlite3.Error as exc:
            raise _unavailable(exc) from exc

    def close(self) -> None:
        """Close this thread's connection (other threads' close when they end)."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None


def _unavailable(exc: sqlite3.Error) -> Unavailable:
    # SQLite's own words (paths, lock states) go to the log only, never to the client.
    logs.log_event(_log, "store-unavailable", logging.WARNING, detail=str(exc))
    return Unavailable("the home database is unavailable; try again shortly")


def _statements(script: str) -> list[str]:
    # executescript() would COMMIT our transaction first; split instead (no ';' in literals).
    return [s.strip() for s in script.split(";") if s.strip()]
