"""Home's store: one interface, two back ends chosen by ``[store] url`` in home.toml.

``sqlite:///PATH`` (the default, this module) for one host; ``postgresql://...``
(home/store_pg.py) for several home instances on one database. Both offer ``read()`` and
``write()`` transactions yielding a connection whose ``execute(sql, params)`` takes
``?`` placeholders and returns rows readable by index and by name, the same numbered
migrations (home/migrations.py), the sync version (``version``, ``bump``), ``changes()``
for the long-poll watcher, and ``Error``/``IntegrityError`` to catch.

SQLite store shared by every gunicorn worker: connections, transactions, migrations.

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
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dmr_appliance import logs
from dmr_appliance.errors import Unavailable
from dmr_appliance.home.migrations import MIGRATIONS, statements

if TYPE_CHECKING:
    from dmr_appliance.config import HomeConfig

BUSY_TIMEOUT_MS = 10_000
_log = logs.get_logger("dmr.home.store")

__all__ = ["MIGRATIONS", "Conn", "Row", "Store", "open_store", "store_url"]

# A connection inside a transaction and one of its rows, of either back end: sqlite3's, or
# home/store_pg.py's Connection and Row (the same execute(), ? placeholders, row[0]/row["id"]).
Conn = Any
Row = Any


class Store:
    """The home database at ``path``; safe to share between threads and processes."""

    dialect = "sqlite"
    Error: Any = sqlite3.Error
    IntegrityError: Any = sqlite3.IntegrityError

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
                for statement in statements(MIGRATIONS[version]):
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

    @property
    def url(self) -> str:
        return f"sqlite:///{self.path}"

    def changes(self, interval: float = 0.05) -> Iterator[int]:
        """The sync version, then again each time it may have moved (for the long-poll
        watcher): SQLite's ``PRAGMA data_version`` changes when another connection
        commits; it is cheap, so it is read every ``interval`` seconds."""
        conn = self.connect()
        try:
            seen = None
            while True:
                data_version = conn.execute("PRAGMA data_version").fetchone()[0]
                if data_version != seen:
                    seen = data_version
                    yield self.version(conn)
                time.sleep(interval)
        finally:
            conn.close()

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


def store_url(config: HomeConfig) -> str:
    """The store home.toml names: ``[store] url``, or SQLite at ``database`` when empty
    (``database`` is the older setting, kept as the default's path). ``sqlite:///PATH``
    and ``sqlite:////PATH`` both name the absolute PATH."""
    return config.store.url or f"sqlite://{Path(config.database).resolve()}"


def open_store(config: HomeConfig) -> Any:
    """The store of ``config``: SQLite, or PostgreSQL (psycopg 3, optional) by its URL."""
    url = store_url(config)
    if url.startswith("sqlite:///"):
        return Store("/" + url.removeprefix("sqlite:///").lstrip("/"))
    from dmr_appliance.home import store_pg

    return store_pg.PostgresStore.from_config(config)
