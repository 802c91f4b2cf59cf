"""PostgreSQL store (psycopg 3, optional): several home instances on one database.

The same interface as home/store.py's SQLite ``Store``: ``read()`` and ``write()``
transactions whose connection takes ``?`` placeholders (turned into psycopg's ``%s`` here,
the dialect seam: no ORM) and returns rows readable by index and by name.

- **Writes are serialised** by ``pg_advisory_xact_lock(WRITE_LOCK)`` at their start, as
  SQLite's ``BEGIN IMMEDIATE`` serialises them on one host: the domain modules' read-then-
  write rules (quotas, the instance bound) stay correct across instances without
  ``SERIALIZABLE`` retries. Home's writes are few and short; reads never wait for them.
- **Reads** are ``REPEATABLE READ`` transactions: every query inside sees one snapshot.
- **Migrations** run under ``pg_advisory_xact_lock(MIGRATE_LOCK)``: instances starting
  together wait, then find nothing to do.
- **The sync version** is bumped with ``NOTIFY dmr_home_sync`` in the same transaction
  (delivered at commit). ``changes()`` LISTENs on its own connection and reads the version
  from the table at every wake-up and at least every ``CATCH_UP`` seconds, so a missed
  notification (NOTIFY has no replay) is caught up.
- **Connections** are lent per transaction from a small pool per process (``[store]
  pool_size``, 8): a lost one (a failover) is a 503 ``Unavailable`` and is replaced at the
  next call.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import re
import select
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from dmr_appliance import logs
from dmr_appliance.config import HomeConfig
from dmr_appliance.errors import ConfigError, Unavailable
from dmr_appliance.home import migrations

try:
    import psycopg
except ImportError:  # optional: only a postgresql:// store needs it
    psycopg = None  # type: ignore[assignment]

INSTALL = (
    "[store] url asks for PostgreSQL, which needs psycopg 3: "
    "apt install python3-psycopg (or pip install 'dmr-appliance[postgresql]')"
)
CHANNEL = "dmr_home_sync"
MIGRATE_LOCK = 0x646D72_0001  # "dmr" 1 and 2: any bigint no other client of the
WRITE_LOCK = 0x646D72_0002  # database uses for its own advisory locks
CATCH_UP = 1.0  # seconds: the longest a missed notification stays unnoticed
CONNECT_TIMEOUT = 5
POOL_WAIT = 10.0  # seconds a call waits for a free connection before its 503
_log = logs.get_logger("dmr.home.store")


class Row(tuple):
    """A result row readable by index and by column name, like ``sqlite3.Row``."""

    _index: dict[str, int]

    def __new__(cls, values: Sequence[Any], index: dict[str, int]) -> Row:
        row = super().__new__(cls, values)
        row._index = index
        return row

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            return tuple.__getitem__(self, self._index[key])
        return tuple.__getitem__(self, key)

    def keys(self) -> list[str]:
        return list(self._index)


def _row_factory(cursor: Any) -> Any:
    index = {column.name: i for i, column in enumerate(cursor.description or ())}
    return lambda values: Row(values, index)


# Home's SQL is written once, in what SQLite and PostgreSQL share (ON CONFLICT upserts,
# CASE, row values); the few spellings that differ are rewritten here.
_SPELLINGS = ((re.compile(r"length\(CAST\((\w+) AS BLOB\)\)"), r"octet_length(\1)"),)


@functools.lru_cache(maxsize=512)
def _sql(query: str) -> str:
    # Home's SQL holds no '?' or '%' in literals (the same rule as the SQLite store's ';').
    for pattern, spelling in _SPELLINGS:
        query = pattern.sub(spelling, query)
    return query.replace("%", "%%").replace("?", "%s")


class Connection:
    """A psycopg connection taking the SQLite store's ``?`` placeholders."""

    def __init__(self, raw: Any) -> None:
        self.raw = raw

    def execute(self, query: str, params: Sequence[Any] = ()) -> Any:
        return self.raw.cursor().execute(_sql(query), tuple(params))

    def executemany(self, query: str, rows: Any) -> Any:
        cursor = self.raw.cursor()
        cursor.executemany(_sql(query), [tuple(r) for r in rows])
        return cursor


class PostgresStore:
    dialect = "postgresql"

    def __init__(self, url: str, password: str | None = None, pool_size: int = 8) -> None:
        if psycopg is None:
            raise ConfigError(INSTALL)
        self.url = url
        self._password = password
        self._pool_size = pool_size
        self._reset_pool()
        self.Error = psycopg.Error
        self.IntegrityError = psycopg.IntegrityError
        self.migrate()

    @classmethod
    def from_config(cls, config: HomeConfig) -> PostgresStore:
        if not config.store.key_file:
            raise ConfigError(
                "[store] key_file is required with PostgreSQL: the signing keys are sealed "
                "in the database with it (docs/home.md, Store)"
            )
        return cls(config.store.url, password(config), config.store.pool_size)

    def connect(self) -> Any:
        """A new autocommit psycopg connection (the caller owns it); transactions are
        begun by hand, as with SQLite."""
        extra = {} if self._password is None else {"password": self._password}
        try:
            return psycopg.connect(
                self.url,
                autocommit=True,
                row_factory=_row_factory,
                connect_timeout=CONNECT_TIMEOUT,
                application_name="dmr-home",
                **extra,
            )
        except psycopg.Error as exc:
            raise _unavailable(exc) from exc

    # A few connections per process, each lent for one transaction: a gunicorn worker has
    # 64 threads, and one connection each would exhaust PostgreSQL's max_connections (100).
    def _reset_pool(self) -> None:
        self._pid = os.getpid()  # a fork (gunicorn --preload) must not share connections
        self._idle: list[Any] = []
        self._idle_lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(self._pool_size)

    def _checkout(self) -> Any:
        if self._pid != os.getpid():
            self._reset_pool()
        if not self._slots.acquire(timeout=POOL_WAIT):
            raise _unavailable(RuntimeError(f"all {self._pool_size} store connections busy"))
        with self._idle_lock:
            raw = self._idle.pop() if self._idle else None
        if raw is not None and not raw.closed:
            return raw
        try:
            return self.connect()
        except BaseException:
            self._slots.release()
            raise

    def _checkin(self, raw: Any) -> None:
        if not raw.closed:
            with self._idle_lock:
                self._idle.append(raw)
        self._slots.release()

    @contextlib.contextmanager
    def write(self) -> Iterator[Connection]:
        """One writer at a time across every instance: committed on exit, rolled back on error."""
        with self._transaction("BEGIN", WRITE_LOCK) as conn:
            yield conn

    @contextlib.contextmanager
    def read(self) -> Iterator[Connection]:
        """A read transaction: every query inside sees the same snapshot."""
        with self._transaction("BEGIN ISOLATION LEVEL REPEATABLE READ") as conn:
            yield conn

    @contextlib.contextmanager
    def _transaction(self, begin: str, *locks: int) -> Iterator[Connection]:
        held = [self._checkout()]
        try:
            held[0] = self._begin(held[0], begin, locks)
            yield from self._within(held[0])
        finally:
            self._checkin(held[0])

    def _begin(self, raw: Any, begin: str, locks: tuple[int, ...]) -> Any:
        """``raw`` with its transaction begun; an idle connection the server dropped (a
        restart, a failover) is replaced once, as nothing was done on it yet."""
        for attempt in (1, 2):
            try:
                raw.execute(begin)
                for lock in locks:
                    raw.execute("SELECT pg_advisory_xact_lock(%s)", (lock,))
                return raw
            except psycopg.Error as exc:
                _close(raw)
                if attempt == 2 or not isinstance(exc, psycopg.OperationalError):
                    raise _unavailable(exc) from exc
                raw = self.connect()
        raise AssertionError("unreachable")

    def _within(self, raw: Any) -> Iterator[Connection]:
        try:
            yield Connection(raw)
            raw.execute("COMMIT")
        except psycopg.OperationalError as exc:  # the server went away: 503, reconnect
            _close(raw)
            raise _unavailable(exc) from exc
        except BaseException:
            _rollback(raw)
            raise

    def migrate(self) -> int:
        """Bring the schema to the newest version under the migration lock; returns it."""
        from dmr_appliance.home import store as store_mod  # its MIGRATIONS, patchable

        steps = store_mod.MIGRATIONS
        with self._transaction("BEGIN", MIGRATE_LOCK, WRITE_LOCK) as conn:
            conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version BIGINT NOT NULL)")
            row = conn.execute("SELECT version FROM schema_version").fetchone()
            current = row[0] if row else 0
            if row is None:
                conn.execute("INSERT INTO schema_version (version) VALUES (0)")
            for version in range(current, len(steps)):
                for statement in migrations.statements(migrations.for_postgresql(steps[version])):
                    conn.execute(statement)
            conn.execute("UPDATE schema_version SET version = ?", (max(current, len(steps)),))
        return len(steps)

    def version(self, conn: Connection | None = None) -> int:
        """The current sync version."""
        if conn is not None:
            return conn.execute("SELECT version FROM sync_state").fetchone()[0]
        with self.read() as conn:
            return self.version(conn)

    def bump(self, conn: Connection) -> int:
        """Increment the sync version within the caller's write transaction; every
        instance's watcher hears of it when that transaction commits."""
        row = conn.execute("UPDATE sync_state SET version = version + 1 RETURNING version")
        version = row.fetchone()[0]
        conn.execute("SELECT pg_notify(?, ?)", (CHANNEL, str(version)))
        return version

    def check(self) -> int:
        """The sync version, or ``Unavailable`` if the database cannot answer (for /readyz)."""
        try:
            return self.version()
        except psycopg.Error as exc:
            raise _unavailable(exc) from exc

    def changes(self, interval: float = CATCH_UP) -> Iterator[int]:
        """The sync version, then again at every NOTIFY (within milliseconds of another
        instance's commit) and at least every ``interval`` seconds (catch-up)."""
        raw = self.connect()
        heard = []
        raw.add_notify_handler(heard.append)
        try:
            raw.execute(f"LISTEN {CHANNEL}")
            while True:
                heard.clear()
                yield raw.execute("SELECT version FROM sync_state").fetchone()[0]
                if not heard:  # one that arrived during the query: read again at once
                    select.select([raw.fileno()], [], [], interval)
        finally:
            raw.close()

    def close(self) -> None:
        """Close the idle connections (those lent out close when given back closed)."""
        with self._idle_lock:
            idle, self._idle = self._idle, []
        for raw in idle:
            _close(raw)


def _rollback(raw: Any) -> None:
    # A transaction left open would refuse every later call that borrows this connection.
    try:
        if raw.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            raw.execute("ROLLBACK")
    except psycopg.Error:
        _close(raw)


def _close(raw: Any) -> None:
    with contextlib.suppress(Exception):
        raw.close()


def password(config: HomeConfig) -> str | None:
    """The PostgreSQL password: ``[store] password_file``, else DMR_STORE_PASSWORD, else
    none (peer, certificate or .pgpass authentication)."""
    if config.store.password_file:
        try:
            return Path(config.store.password_file).read_text().strip()
        except OSError as exc:
            raise ConfigError(f"[store] password_file: cannot read it: {exc.strerror}") from exc
    return os.environ.get("DMR_STORE_PASSWORD") or None


def _unavailable(exc: Exception) -> Unavailable:
    # The server's words (hosts, users) go to the log only, never to the client.
    logs.log_event(_log, "store-unavailable", logging.WARNING, detail=str(exc))
    return Unavailable("the home database is unavailable; try again shortly")
