"""``dmr home copy-store``: an existing single-host home (SQLite at ``database``, key files
in ``keys_dir``) copied into the PostgreSQL of ``[store] url``, its signing keys sealed
with ``[store] key_file`` on the way. The path from one host to several instances:

1. add ``[store] url`` and ``key_file`` to home.toml, 2. stop home, 3. ``dmr home
copy-store``, 4. start home (and more instances with the same ``[store]``).

Refused while home runs (SQLite's exclusive lock, as restore takes it), when the SQLite
store is missing or its schema is newer than this package's, and when the target already
holds participants or keys (a copy never merges). Every row of every table is copied in
one PostgreSQL transaction; the sync version moves one past the copied one, so relays
fetch the (identical) document from the new store once.
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

from dmr_appliance.config import HomeConfig
from dmr_appliance.errors import ConfigError
from dmr_appliance.home import backup as backups
from dmr_appliance.home import restore, store_pg
from dmr_appliance.home.migrations import MIGRATIONS
from dmr_appliance.home.sealing import Sealer
from dmr_appliance.home.store import Store

# Parents before children (foreign keys); sync_state and schema_version are not copied.
TABLES = (
    "participants",
    "participant_rooms",
    "removed_participants",
    "signing_keys",
    "issued_tokens",
    "instances",
    "traffic",
    "failures",
    "failure_attempts",
    "room_policies",
)


def copy_store(config: HomeConfig) -> dict[str, int]:
    """Copy the SQLite store into the PostgreSQL one; rows copied per table."""
    if not config.store.url.startswith(("postgresql:", "postgres:")):
        raise ConfigError("[store] url must name the PostgreSQL to copy into (postgresql://...)")
    if not Path(config.database).is_file():
        raise backups.BackupError(f"no SQLite store at {config.database} (database) to copy")
    if not config.store.key_file:
        raise ConfigError("[store] key_file is required: the signing keys are sealed with it")
    sealer = Sealer.from_file(config.store.key_file)
    _check_schema(Path(config.database))
    Store(config.database).close()  # migrated to this package's schema, if older
    lock = restore._lock(Path(config.database), None)  # home must be stopped
    try:
        target = store_pg.PostgresStore.from_config(config)
        with target.write() as conn:
            _refuse_if_used(conn)
            counts = {table: _copy(lock, conn, table, config, sealer) for table in TABLES}
            version = lock.execute("SELECT version FROM sync_state").fetchone()[0] + 1
            conn.execute("UPDATE sync_state SET version = ?", (version,))
    finally:
        lock.close()
    return counts


def _check_schema(database: Path) -> None:
    with closing(sqlite3.connect(database.resolve().as_uri() + "?mode=ro", uri=True)) as conn:
        version = conn.execute("SELECT version FROM schema_version").fetchone()[0]
    if version > len(MIGRATIONS):
        raise backups.BackupError(
            f"{database} has schema {version}, newer than this package's {len(MIGRATIONS)}: "
            "copy with the dmr-appliance that wrote it"
        )


def _refuse_if_used(conn: store_pg.Connection) -> None:
    for table in ("participants", "signing_keys"):
        if conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]:  # noqa: S608
            raise backups.BackupError(
                f"the PostgreSQL store already holds {table}: copy into an empty database "
                "(a copy never merges)"
            )


def _copy(source, conn: store_pg.Connection, table: str, config: HomeConfig, sealer: Sealer) -> int:
    cursor = source.execute(f"SELECT * FROM {table}")  # noqa: S608 - names from TABLES
    columns = [d[0] for d in cursor.description]
    rows = [list(row) for row in cursor.fetchall()]
    if table == "signing_keys":
        rows = [_sealed(dict(zip(columns, row, strict=True)), config, sealer) for row in rows]
    if rows:
        marks = ", ".join("?" for _ in columns)
        names = ", ".join(columns)  # the table's own column names, as SQLite lists them
        conn.executemany(f"INSERT INTO {table} ({names}) VALUES ({marks})", rows)  # noqa: S608
    return len(rows)


def _sealed(row: dict, config: HomeConfig, sealer: Sealer) -> list:
    if row["sealed"] is None:
        pem = (Path(config.keys_dir) / f"{row['kid']}.pem").read_bytes()
        row["sealed"] = sealer.seal(row["kid"], pem)
    return list(row.values())
