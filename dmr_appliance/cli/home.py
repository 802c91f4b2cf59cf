"""`dmr home serve`: run the home service under gunicorn (TLS, client certificates);
`dmr home backup|restore`: its store and signing keys (home/backup.py, home/restore.py);
`dmr home copy-store`: a SQLite store into PostgreSQL (home/copy_store.py)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dmr_appliance import config
from dmr_appliance.cli._numbers import whole
from dmr_appliance.cli._serve import config_option, register_serve
from dmr_appliance.home import backup, copy_store, restore


def register(sub: argparse._SubParsersAction) -> None:
    verbs = register_serve(
        sub,
        "home",
        help_text="run the home service",
        serve_help="serve home with gunicorn (replaces this process)",
    )
    saving = verbs.add_parser(
        "backup",
        help="back up home's store and signing keys (while home serves)",
        description="Write a new backup, DIR/home-<UTC time>: an online copy of the SQLite "
        "store (one consistent snapshot; home keeps serving), its signing keys and home.toml, "
        "and manifest.json (versions, checksums), files 0600. Then remove the oldest beyond "
        "--keep. Run as root, the files go to the store's owner. Prints the new directory.",
    )
    config_option(saving, "home")
    saving.add_argument(
        "dir",
        nargs="?",
        type=Path,
        metavar="DIR",
        help="where backups are kept (default: backup.dir of home.toml)",
    )
    saving.add_argument(
        "--keep",
        type=whole(1),
        help="backups kept in DIR, this one included (default: backup.keep of home.toml)",
    )
    saving.set_defaults(func=run_backup)
    putting = verbs.add_parser(
        "restore",
        help="put a backup back in place of home's store (home stopped)",
        description="Check the backup DIR (complete, its checksums, a schema this package "
        "knows), then replace home's store with it and add its signing keys. Home must be "
        "stopped. The sync version is moved past any the replaced home can have issued "
        "(the clock in milliseconds), so relays take the restored home's documents.",
    )
    config_option(putting, "home")
    putting.add_argument("dir", type=Path, metavar="DIR", help="one backup: .../home-<time>")
    putting.set_defaults(func=run_restore)
    copying = verbs.add_parser(
        "copy-store",
        help="copy a single-host home's SQLite store into PostgreSQL (home stopped)",
        description="Copy every row of the SQLite store at `database` into the empty "
        "PostgreSQL database of [store] url, sealing the key files of keys_dir with [store] "
        "key_file: the path from one home host to several instances (docs/home.md, Store).",
    )
    config_option(copying, "home")
    copying.set_defaults(func=run_copy_store)


def run_backup(args: argparse.Namespace) -> int:
    settings = config.load(config.HomeConfig, args.config)
    root = args.dir if args.dir is not None else settings.backup.dir
    keep = args.keep if args.keep is not None else settings.backup.keep
    try:
        made = backup.backup(
            settings, root, keep=keep, config_file=Path(args.config), progress=sys.stderr
        )
    except OSError as exc:
        raise _refused(exc) from None
    print(made)
    return 0


def run_restore(args: argparse.Namespace) -> int:
    settings = config.load(config.HomeConfig, args.config)
    try:
        done = restore.restore(settings, args.dir, progress=sys.stderr)
    except OSError as exc:
        raise _refused(exc) from None
    made = done.manifest
    into = (
        f"{settings.database}, {len(made['keys'])} signing keys into {settings.keys_dir}"
        if made.get("store", "sqlite") == "sqlite"
        else f"{settings.store.url} (signing keys sealed in it)"
    )
    print(
        f"restored {args.dir} (made {made['created_at']} by dmr-appliance "
        f"{made['package_version']}, schema {made['schema_version']}) into {into}"
    )
    print(
        f"sync version {done.previous_version} -> {done.sync_version} (backup's: "
        f"{made['sync_version']}): relays take it; start home (systemctl start dmr-home)"
    )
    return 0


def run_copy_store(args: argparse.Namespace) -> int:
    settings = config.load(config.HomeConfig, args.config)
    try:
        counts = copy_store.copy_store(settings)
    except OSError as exc:
        raise _refused(exc) from None
    rows = ", ".join(f"{n} {table}" for table, n in counts.items() if n)
    print(f"copied {settings.database} into {settings.store.url}: {rows or 'no rows'}")
    print("start home with this home.toml (and more instances with the same [store])")
    return 0


def _refused(exc: OSError) -> backup.BackupError:
    return backup.BackupError(
        f"{exc.filename or 'a file'}: {exc.strerror}: run as root or as "
        "the store's owner (dmr), with room on the disk"
    )
