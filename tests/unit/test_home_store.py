"""The SQLite store: settings, migrations, transactions, the sync version."""

from __future__ import annotations

import sqlite3

import pytest

from dmr_appliance import cli, serving
from dmr_appliance.errors import Unavailable
from dmr_appliance.home import store as store_mod
from dmr_appliance.home.store import Store


def test_settings_and_schema(tmp_path):
    store = Store(tmp_path / "home.db")
    with store.read() as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == store_mod.BUSY_TIMEOUT_MS
        assert conn.execute("SELECT version FROM schema_version").fetchone()[0] == len(
            store_mod.MIGRATIONS
        )


def test_migrations_run_once_and_forward(tmp_path, monkeypatch):
    path = tmp_path / "home.db"
    Store(path)
    assert Store(path).migrate() == len(store_mod.MIGRATIONS)  # a second start: nothing to do
    extra = "CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT NOT NULL)"
    monkeypatch.setattr(store_mod, "MIGRATIONS", (*store_mod.MIGRATIONS, extra))
    upgraded = Store(path)
    with upgraded.read() as conn:
        assert conn.execute("SELECT version FROM schema_version").fetchone()[0] == len(
            store_mod.MIGRATIONS
        )
        conn.execute("SELECT count(*) FROM notes")


def test_failed_transaction_rolls_back_and_keeps_the_version(tmp_path):
    store = Store(tmp_path / "home.db")
    before = store.version()
    with pytest.raises(sqlite3.IntegrityError), store.write() as conn:
        store.bump(conn)
        conn.execute("INSERT INTO participant_rooms VALUES ('ghost', 'r')")  # foreign key
    assert store.version() == before


def test_a_failed_commit_leaves_no_transaction_open(tmp_path):
    # Otherwise the thread's connection would refuse every later request with 503.
    store = Store(tmp_path / "home.db")
    before = store.version()
    with pytest.raises(sqlite3.IntegrityError), store.write() as conn:
        conn.execute("PRAGMA defer_foreign_keys = ON")  # the violation surfaces at COMMIT
        store.bump(conn)
        conn.execute("INSERT INTO participant_rooms VALUES ('ghost', 'r')")
    assert store.version() == before


def test_an_unusable_database_is_a_503_without_sqlite_details(tmp_path, monkeypatch):
    store = Store(tmp_path / "home.db")

    def broken(self):
        raise sqlite3.OperationalError("unable to open database file /secret/path")

    monkeypatch.setattr(Store, "version", broken)
    with pytest.raises(Unavailable) as caught:
        store.check()
    assert caught.value.status == 503 and "/secret/path" not in caught.value.detail


def test_serve_execs_gunicorn_with_the_home_app(tmp_path, monkeypatch):
    config = tmp_path / "home.toml"
    socket = tmp_path / "run" / "gunicorn.sock"
    config.write_text(f'bind = "127.0.0.1:9700"\nworkers = 3\n[gate]\nsocket = "{socket}"\n')
    left = tmp_path / "run" / "metrics" / "counter_123.db"  # a previous run's
    left.parent.mkdir(parents=True)
    left.write_bytes(b"x")
    seen = {}
    monkeypatch.setattr(
        serving,
        "exec_gunicorn",
        lambda argv, config_path, env: seen.update(argv=argv, path=config_path, env=env),
    )
    assert cli.main(["home", "serve", "--config", str(config)]) == 0
    argv = seen["argv"]
    assert argv[-1] == "dmr_appliance.home.wsgi:app" and seen["path"] == str(config)
    assert argv[argv.index("--bind") + 1] == f"unix:{socket}"
    # prometheus_client's multiprocess directory: named for gunicorn, emptied for it
    assert seen["env"] == {"PROMETHEUS_MULTIPROC_DIR": str(left.parent)}
    assert left.parent.is_dir() and not left.exists()
    assert argv[argv.index("--workers") + 1] == "3"
