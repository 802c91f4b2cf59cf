"""``dmr home restore``: a backup (backup.py) back in place of home's store and keys.

Refused, with one line saying why and what to do: while home runs against the store (its
gunicorn socket answers, or another process has the store open: SQLite's exclusive lock
is taken for the whole restore, so home cannot start meanwhile either), when the backup
is incomplete or fails its checksums, or when its schema is newer than this package's.

Relays refuse a sync document older than the one they hold (relay/agent.py ``admit``),
so the restored store's sync version moves past any the lost home can have issued:
``max(backup's + 1, replaced store's + 1, now in milliseconds)``. The counter moves by
one per change, so it stays below the clock in milliseconds unless home made more than a
change per millisecond on average since its last restore (or since 1970).
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import time
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from dmr_appliance.config import HomeConfig
from dmr_appliance.home import backup as backups
from dmr_appliance.home.store import MIGRATIONS
from dmr_appliance.progress import ProgressBar

STOP = "stop it first (systemctl stop dmr-home), then restore again"


@dataclass(frozen=True)
class Restored:
    manifest: dict[str, Any]
    previous_version: int | None  # the replaced store's sync version (None: there was none)
    sync_version: int


def restore(config: HomeConfig, source: Path, *, progress: IO[str] | None = None) -> Restored:
    """Replace home's store and add the backup's keys; home must be stopped."""
    found = _manifest(source)  # before anything else: is it a backup at all
    if config.store.url.startswith(("postgresql:", "postgres:")):
        from dmr_appliance.home import backup_pg

        manifest = verify(source, progress)
        previous, version = backup_pg.restore(config, source, manifest)
        return Restored(manifest, previous, version)
    if found.get("store", "sqlite") != "sqlite":
        raise backups.BackupError(
            f"{source} is a PostgreSQL backup: restore it with [store] url naming the database"
        )
    database = config.database
    if not database.parent.is_dir():
        raise backups.BackupError(
            f"no directory {database.parent} for the store: start home "
            "once so that it makes it, stop it, then restore"
        )
    if _answers(config.gate.socket):
        raise backups.BackupError(f"home is running: {config.gate.socket} answers; {STOP}")
    owner = backups.store_owner(database)
    lock = _lock(database, owner)  # held until the end: home cannot start meanwhile
    try:
        manifest = verify(source, progress)
        previous = _version(lock)
        version = max(manifest["sync_version"] + 1, (previous or 0) + 1, int(time.time() * 1000))
        _put_keys(source, manifest["keys"], Path(config.keys_dir), owner)
        _replace(lock, database, source / backups.DATABASE, version, owner, progress)
    finally:
        lock.close()
    os.chmod(database, 0o600)  # a store created before by another umask
    return Restored(manifest, previous, version)


def verify(source: Path, progress: IO[str] | None = None) -> dict[str, Any]:
    """The manifest of the complete, intact backup ``source``, whose schema this package
    knows; else BackupError saying what is wrong."""
    manifest = _manifest(source)
    files = manifest["files"]
    bar = (
        ProgressBar(len(files), progress, prefix="verify: ", verb="files checked")
        if progress is not None
        else None
    )
    for done, (name, expected) in enumerate(sorted(files.items()), 1):
        path = source / name
        if not path.is_file():
            raise backups.BackupError(
                f"backup {source} is incomplete: {name} is missing; restore another one"
            )
        if backups.digest(path) != expected:
            raise backups.BackupError(
                f"backup {source} fails its checksums ({name} changed): restore another one"
            )
        if bar is not None:
            bar.update(done, name)
    if bar is not None:
        bar.finish()
    schema = manifest["schema_version"]
    if schema > len(MIGRATIONS):
        raise backups.BackupError(
            f"backup {source} has schema version {schema}, newer than this package's "
            f"{len(MIGRATIONS)} (dmr-appliance {manifest['package_version']} made it): "
            "install that version or a newer one, then restore"
        )
    return manifest


def _manifest(source: Path) -> dict[str, Any]:
    if not source.is_dir():
        raise backups.BackupError(
            f"no backup at {source}: name a directory 'dmr home backup' wrote (home-<time>)"
        )
    path = source / backups.MANIFEST
    if not path.is_file():
        found = backups.complete(source)
        if found:
            raise backups.BackupError(
                f"{source} holds backups, not one: name one, e.g. dmr home restore {found[-1]}"
            )
        raise backups.BackupError(
            f"backup {source} is incomplete (no {backups.MANIFEST}): restore another one"
        )
    try:
        doc = json.loads(path.read_text())
        sqlite = doc.get("store", "sqlite") == "sqlite"  # else PostgreSQL: keys sealed in it
        ok = (
            doc.get("kind") == backups.KIND
            and doc.get("format") == backups.FORMAT
            and (backups.DATABASE if sqlite else "home.dump") in doc["files"]
            and (not sqlite or all(f"keys/{kid}.pem" in doc["files"] for kid in doc["keys"]))
            and isinstance(doc["schema_version"], int)
            and isinstance(doc["sync_version"], int)
        )
    except (ValueError, KeyError, TypeError, AttributeError):
        ok = False
    if not ok:
        raise backups.BackupError(
            f"{path} is not a dmr home backup manifest this version reads: restore another backup"
        )
    return doc


def _answers(sock: Path) -> bool:
    """Whether a process (home's gunicorn) accepts connections on ``sock``."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(2)
    try:
        probe.connect(str(sock))
        return True
    except OSError:
        return False
    finally:
        probe.close()


def _lock(database: Path, owner: backups.Owner) -> sqlite3.Connection:
    """A connection holding the store's exclusive lock until closed: refused (no wait)
    while any other connection, home's included, has the store open."""
    if not database.exists():
        backups.create_private(database, owner)
    conn = sqlite3.connect(database, timeout=0, isolation_level=None)
    try:
        conn.execute("PRAGMA locking_mode = EXCLUSIVE")
        conn.execute("BEGIN EXCLUSIVE")
        conn.execute("COMMIT")
    except sqlite3.OperationalError as exc:
        conn.close()
        raise backups.BackupError(
            f"home is running: another process has {database} open ({exc}); {STOP}"
        ) from exc
    return conn


def _version(conn: sqlite3.Connection) -> int | None:
    try:
        return conn.execute("SELECT version FROM sync_state").fetchone()[0]
    except (sqlite3.Error, TypeError):
        return None


def _put_keys(source: Path, kids: list[str], keys_dir: Path, owner: backups.Owner) -> None:
    """The backup's key files into ``keys_dir`` (before the rows that name them, as the
    keyring writes them); other files there are left alone."""
    backups.make_dir(keys_dir, owner)
    for kid in kids:
        data = (source / "keys" / f"{kid}.pem").read_bytes()
        target = keys_dir / f"{kid}.pem"
        if target.is_file() and target.read_bytes() == data:
            continue
        staged = keys_dir / f".{kid}.pem.restoring"
        staged.unlink(missing_ok=True)
        backups.write_file(staged, data, owner)
        os.replace(staged, target)


def _replace(
    lock: sqlite3.Connection,
    database: Path,
    copy: Path,
    version: int,
    owner: backups.Owner,
    progress: IO[str] | None,
) -> None:
    """The backup's store, at sync version ``version``, in place of the locked one, in
    one step: a restore cut short leaves the old store or the new one, never a mix."""
    staged = database.with_name(f".{database.name}.restoring")
    staged.unlink(missing_ok=True)
    try:
        backups.create_private(staged, owner)
        with closing(sqlite3.connect(copy.resolve().as_uri() + "?mode=ro", uri=True)) as source:
            backups.copy_pages(source, staged, None, "")
        with closing(sqlite3.connect(staged, isolation_level=None)) as conn:
            conn.execute("UPDATE sync_state SET version = ?", (version,))
            backups.copy_pages(conn, lock, progress, "restore: ")
    finally:
        staged.unlink(missing_ok=True)
