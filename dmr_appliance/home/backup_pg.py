"""``dmr home backup`` and ``dmr home restore`` when the store is PostgreSQL.

A backup is the same directory as for SQLite (backup.py: ``home-<UTC time>``, manifest
with sizes and SHA-256, written under ``.partial`` and renamed, kept ``keep`` deep), but
its store is ``home.dump``, made by ``pg_dump --format=custom`` (one consistent snapshot
while every home instance serves) and its manifest says ``"store": "postgresql"``. The
signing keys are in the dump, sealed: the key-encryption key (``[store] key_file``) is
never in a backup; keep it apart (vault, Secret), as a backup is useless without it.

Restore is ``pg_restore --clean --single-transaction`` into the database of ``[store]
url``, refused while any home instance is connected to it (``application_name``
dmr-home), under the migration lock so that none starts meanwhile; then the sync
version moves past any a lost instance can have issued, as for SQLite (restore.py).
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from typing import IO, Any

from dmr_appliance.config import HomeConfig
from dmr_appliance.home import backup as backups
from dmr_appliance.home import store_pg

DUMP = "home.dump"


def _env(config: HomeConfig) -> dict[str, str]:
    env = dict(os.environ, PGAPPNAME="dmr-home-backup", PGCONNECT_TIMEOUT="10")
    password = store_pg.password(config)
    if password:
        env["PGPASSWORD"] = password  # to the child only, never on its command line
    return env


def _run(command: list[str], config: HomeConfig) -> None:
    try:
        done = subprocess.run(command, env=_env(config), capture_output=True, text=True)
    except FileNotFoundError:
        raise backups.BackupError(
            f"no {command[0]}: apt install postgresql-client (the server's major version or newer)"
        ) from None
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["(no message)"])[-1]
        raise backups.BackupError(f"{command[0]} failed: {last}")


def backup(
    config: HomeConfig,
    root: Path,
    *,
    keep: int,
    config_file: Path | None = None,
    progress: IO[str] | None = None,
) -> Path:
    """A new complete backup of the PostgreSQL store under ``root``."""
    store = store_pg.PostgresStore(config.store.url, store_pg.password(config))
    snapshot = _snapshot(store)  # read before the dump: the dump holds at least this
    owner = backups.store_owner(root / "x") if root.exists() else None
    backups.make_dir(root, owner)
    created = time.time()
    name = backups.backup_name(created)
    partial = root / f".{name}.partial"
    backups.make_dir(partial, owner)
    try:
        backups.create_private(partial / DUMP, owner)
        _run(["pg_dump", "--format=custom", f"--file={partial / DUMP}", config.store.url], config)
        files: dict[str, Any] = {DUMP: backups.digest(partial / DUMP)}
        if config_file is not None and config_file.is_file():
            backups.write_file(partial / "home.toml", config_file.read_bytes(), owner)
            files["home.toml"] = backups.digest(partial / "home.toml")
        manifest = backups.manifest_doc(config, created, snapshot, files, store="postgresql")
        backups.write_file(partial / backups.MANIFEST, manifest, owner)
        os.rename(partial, root / name)
    except BaseException:
        backups.remove_partial(partial)
        raise
    backups.prune(root, keep)
    return root / name


def _snapshot(store: store_pg.PostgresStore) -> backups.Snapshot:
    with store.read() as conn:
        return backups.read_snapshot(conn)


def restore(config: HomeConfig, source: Path, manifest: dict[str, Any]) -> tuple[int | None, int]:
    """``source``'s dump in place of the store's contents; (previous, new) sync versions."""
    if manifest.get("store") != "postgresql":
        raise backups.BackupError(
            f"{source} is a SQLite backup: restore it on a home whose [store] is SQLite"
        )
    if store_pg.psycopg is None:
        raise backups.BackupError(store_pg.INSTALL)
    extra = {"password": p} if (p := store_pg.password(config)) else {}
    with store_pg.psycopg.connect(
        config.store.url, autocommit=True, application_name="dmr-home-restore", **extra
    ) as conn:
        _refuse_if_served(conn)
        conn.execute("SELECT pg_advisory_lock(%s)", (store_pg.MIGRATE_LOCK,))
        previous = _version(conn)
        command = ["pg_restore", "--clean", "--if-exists", "--single-transaction"]
        command += ["--no-owner", "--no-privileges", f"--dbname={config.store.url}"]
        _run([*command, str(source / DUMP)], config)
        version = max(manifest["sync_version"] + 1, (previous or 0) + 1, int(time.time() * 1000))
        conn.execute("UPDATE sync_state SET version = %s", (version,))
    return previous, version


def _refuse_if_served(conn: Any) -> None:
    served = conn.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
        " AND application_name = 'dmr-home'"
    ).fetchone()[0]
    if served:
        raise backups.BackupError(
            f"{served} connections of running home instances hold the database: stop every "
            "instance (systemctl stop dmr-home on each host), then restore again"
        )


def _version(conn: Any) -> int | None:
    try:
        return conn.execute("SELECT version FROM sync_state").fetchone()[0]
    except store_pg.psycopg.Error:
        return None
