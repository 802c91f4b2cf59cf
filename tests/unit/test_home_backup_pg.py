"""``dmr home backup`` and ``restore`` on a PostgreSQL store: pg_dump into the same
backup directories, pg_restore back, refused while an instance is connected."""

from __future__ import annotations

import json

import pytest

from dmr_appliance.home import backup, restore
from dmr_appliance.home.backup import BackupError
from tests.support import home as home_support
from tests.support.home import home_under_test


@pytest.fixture
def home(postgres, tmp_path, pki):
    home_support.POSTGRES = postgres
    try:
        yield home_under_test(tmp_path / "home", pki, rooms={"lobby": ["alice", "bob"]})
    finally:
        home_support.POSTGRES = None


def test_backup_then_restore_brings_the_participants_back(home, tmp_path):
    made = backup.backup(home.config, tmp_path / "backups", keep=2)
    manifest = json.loads((made / "manifest.json").read_text())
    assert manifest["store"] == "postgresql" and set(manifest["files"]) == {"home.dump"}
    assert b"PRIVATE KEY" not in (made / "home.dump").read_bytes()  # keys are sealed
    before = home.store.version()
    assert home.admin.delete("/v1/participants/alice").status_code == 204
    with pytest.raises(BackupError, match="stop every instance"):
        restore.restore(home.config, made)  # this home's store is still connected
    home.store.close()
    done = restore.restore(home.config, made)
    assert done.sync_version > before
    listed = home.admin.get("/v1/participants").json["participants"]
    assert [p["id"] for p in listed] == ["alice", "bob"]
    assert home.participant("alice").post("/v1/tokens").status_code == 201


def test_a_backup_of_one_store_is_not_restored_into_the_other(home, tmp_path, pki):
    server, home_support.POSTGRES = home_support.POSTGRES, None
    try:
        on_sqlite = home_under_test(tmp_path / "sqlite", pki)
    finally:
        home_support.POSTGRES = server
    of_sqlite = backup.backup(on_sqlite.config, tmp_path / "sqlite-backups", keep=2)
    of_postgresql = backup.backup(home.config, tmp_path / "backups", keep=2)
    home.store.close()
    with pytest.raises(BackupError, match="SQLite backup"):
        restore.restore(home.config, of_sqlite)
    with pytest.raises(BackupError, match="PostgreSQL backup"):
        restore.restore(on_sqlite.config, of_postgresql)
