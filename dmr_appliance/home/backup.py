"""Backups of home's store and signing keys (``dmr home backup``; restore: restore.py;
a PostgreSQL store: backup_pg.py, pg_dump, into the same directories and manifests).

A backup is a directory ``<dir>/home-<UTC time>`` holding ``home.db``, an online copy
made by SQLite's backup API inside one read transaction (a consistent snapshot while home
serves: WAL readers never block its writers), ``keys/<kid>.pem`` for every key that copy
lists, a copy of ``home.toml`` for reference, and ``manifest.json`` with the sizes and
SHA-256 of each file. It is written under a hidden ``.partial`` name and renamed once its
manifest is, so a ``home-*`` directory with a manifest is complete. Files 0600,
directories 0700; run as root, they are given to the store's owner (``dmr``) so that the
timer's service and home's metric can read them.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from dmr_appliance import __version__
from dmr_appliance.config import HomeConfig
from dmr_appliance.errors import DmrError
from dmr_appliance.home.store import BUSY_TIMEOUT_MS
from dmr_appliance.progress import ProgressBar
from dmr_appliance.timefmt import rfc3339

FORMAT = 1
KIND = "dmr-home-backup"
MANIFEST = "manifest.json"
PREFIX = "home-"
DATABASE = "home.db"
PAGES = 1024  # pages copied per backup step, between progress reports
STALE_PARTIAL = 86400  # a crashed run's .partial directory is removed after this many seconds

Owner = tuple[int, int] | None


class BackupError(DmrError):
    code = "backup-refused"


@dataclass(frozen=True)
class Snapshot:
    """What the copied store says about itself, read in the snapshot it was copied from."""

    schema_version: int
    sync_version: int
    kids: list[str]


def backup(
    config: HomeConfig,
    root: Path,
    *,
    keep: int,
    config_file: Path | None = None,
    progress: IO[str] | None = None,
) -> Path:
    """A new complete backup under ``root``; older ones beyond ``keep`` are removed."""
    if config.store.url.startswith(("postgresql:", "postgres:")):
        from dmr_appliance.home import backup_pg

        return backup_pg.backup(config, root, keep=keep, config_file=config_file, progress=progress)
    database = config.database
    if not database.is_file():
        raise BackupError(
            f"no home store at {database}: check database in the config "
            "(--config), or start home once to create it"
        )
    owner = store_owner(database)
    make_dir(root, owner)
    created = time.time()
    name = backup_name(created)
    partial = root / f".{name}.partial"
    make_dir(partial, owner)
    try:
        files = _fill(partial, config, config_file, owner, progress)
        snapshot = files.pop("")
        write_file(partial / MANIFEST, manifest_doc(config, created, snapshot, files), owner)
        os.rename(partial, root / name)
        _fsync_dir(root)
    except BaseException:
        remove_partial(partial)
        raise
    prune(root, keep)
    return root / name


def backup_name(created: float) -> str:
    return (
        PREFIX
        + time.strftime("%Y%m%dT%H%M%S", time.gmtime(created))
        + f".{int(created * 1000) % 1000:03d}Z"
    )


def remove_partial(partial: Path) -> None:
    shutil.rmtree(partial, ignore_errors=True)


def _fill(
    partial: Path,
    config: HomeConfig,
    config_file: Path | None,
    owner: Owner,
    progress: IO[str] | None,
) -> dict[str, Any]:
    """The backup's files; their sizes and digests by name ("": the store's snapshot)."""
    snapshot = copy_store(config.database, partial / DATABASE, owner, progress)
    files: dict[str, Any] = {"": snapshot, DATABASE: digest(partial / DATABASE)}
    make_dir(partial / "keys", owner)
    for kid in snapshot.kids:
        source = Path(config.keys_dir) / f"{kid}.pem"
        try:
            data = source.read_bytes()
        except OSError as exc:
            raise BackupError(
                f"cannot read signing key {source} ({exc.strerror}): run the "
                "backup as the store's owner (dmr) or root"
            ) from exc
        write_file(partial / "keys" / f"{kid}.pem", data, owner)
        files[f"keys/{kid}.pem"] = digest(partial / "keys" / f"{kid}.pem")
    if config_file is not None and config_file.is_file():
        write_file(partial / "home.toml", config_file.read_bytes(), owner)
        files["home.toml"] = digest(partial / "home.toml")
    return files


def copy_store(database: Path, target: Path, owner: Owner, progress: IO[str] | None) -> Snapshot:
    """Copy ``database`` (live) to ``target`` (new) within one read snapshot."""
    create_private(target, owner)
    source = sqlite3.connect(
        database.resolve().as_uri() + "?mode=rw",
        uri=True,
        timeout=BUSY_TIMEOUT_MS / 1000,
        isolation_level=None,
    )
    try:
        # The backup reuses this read transaction for every step: one snapshot, never
        # restarted by home's writes, which go on meanwhile.
        source.execute("BEGIN")
        snapshot = read_snapshot(source)
        copy_pages(source, target, progress, "backup: ")
        source.execute("COMMIT")
    except sqlite3.Error as exc:
        raise BackupError(f"cannot copy the store {database}: {exc}") from exc
    finally:
        source.close()
    return snapshot


def copy_pages(
    source: sqlite3.Connection,
    target: Path | sqlite3.Connection,
    progress: IO[str] | None,
    prefix: str,
) -> None:
    """SQLite's backup API from ``source`` into ``target``, with a progress bar by pages;
    a new ``target`` file is left standalone (rollback journal, no -wal beside it)."""
    dest = sqlite3.connect(target, isolation_level=None) if isinstance(target, Path) else target
    bar: list[ProgressBar] = []

    def report(status: int, remaining: int, total: int) -> None:
        if progress is None:
            return
        if not bar:
            bar.append(ProgressBar(total, progress, prefix=prefix, verb="pages copied"))
        bar[0].update(total - remaining)

    try:
        source.backup(dest, pages=PAGES, progress=report)
        if bar:
            bar[0].finish()
        if dest is not target:
            dest.execute("PRAGMA journal_mode = DELETE")
            if dest.execute("PRAGMA quick_check").fetchone()[0] != "ok":
                raise BackupError("the copy of the store fails SQLite's quick_check")
    finally:
        if dest is not target:
            dest.close()


def read_snapshot(conn: Any) -> Snapshot:
    schema = conn.execute("SELECT version FROM schema_version").fetchone()[0]
    sync = conn.execute("SELECT version FROM sync_state").fetchone()[0]
    kids = [row[0] for row in conn.execute("SELECT kid FROM signing_keys ORDER BY kid")]
    return Snapshot(schema, sync, kids)


def manifest_doc(
    config: HomeConfig,
    created: float,
    snapshot: Snapshot,
    files: dict[str, Any],
    store: str = "sqlite",
) -> bytes:
    doc = {
        "store": store,
        "format": FORMAT,
        "kind": KIND,
        "created_at": rfc3339(int(created)),
        "created_unix": round(created, 3),
        "package_version": __version__,
        "instance": config.instance,
        "schema_version": snapshot.schema_version,
        "sync_version": snapshot.sync_version,
        "keys": snapshot.kids,
        "files": files,
    }
    return (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode()


# --- the backups in a directory --------------------------------------------------------


def complete(root: Path) -> list[Path]:
    """The complete backups under ``root``, oldest first (names sort by time)."""
    try:
        names = sorted(os.listdir(root))
    except OSError:
        return []
    return [root / n for n in names if n.startswith(PREFIX) and (root / n / MANIFEST).is_file()]


def newest(root: Path) -> dict[str, Any] | None:
    """The newest complete backup's manifest under ``root``, or None."""
    for path in reversed(complete(root)):
        try:
            return json.loads((path / MANIFEST).read_text())
        except (OSError, ValueError):
            continue
    return None


def age(root: Path, now: float | None = None) -> float:
    """Seconds since the newest complete backup under ``root`` was made (inf: none)."""
    manifest = newest(root)
    if manifest is None or not isinstance(manifest.get("created_unix"), int | float):
        return float("inf")
    return max(0.0, (time.time() if now is None else now) - manifest["created_unix"])


def prune(root: Path, keep: int) -> list[Path]:
    """Remove complete backups beyond the newest ``keep``, and stale partial ones."""
    removed = complete(root)[:-keep] if keep > 0 else []
    for path in removed:
        shutil.rmtree(path)
    for path in root.glob(f".{PREFIX}*.partial"):
        if time.time() - path.stat().st_mtime > STALE_PARTIAL:
            shutil.rmtree(path, ignore_errors=True)
    return removed


# --- files -----------------------------------------------------------------------------


def digest(path: Path) -> dict[str, Any]:
    sha = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            sha.update(chunk)
    return {"bytes": path.stat().st_size, "sha256": sha.hexdigest()}


def store_owner(database: Path) -> Owner:
    """Run as root, whom new files go to: the owner of the store's directory."""
    if os.geteuid() != 0:
        return None
    st = database.parent.stat()
    return st.st_uid, st.st_gid


def make_dir(path: Path, owner: Owner) -> None:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path, 0o700)
    if owner is not None:
        os.chown(path, *owner)


def write_file(path: Path, data: bytes, owner: Owner) -> None:
    """Create ``path`` 0600 with ``data``, durably (never replacing a file)."""
    fd = create_private(path, owner, keep_open=True)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def create_private(path: Path, owner: Owner, *, keep_open: bool = False) -> int:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.fchmod(fd, 0o600)  # whatever the caller's umask
    if owner is not None:
        os.fchown(fd, *owner)
    if keep_open:
        return fd
    os.close(fd)
    return -1


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
