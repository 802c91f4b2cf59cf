"""``dmr home copy-store``: a single-host home's SQLite store and key files into an empty
PostgreSQL, keys sealed; the same participants, failures and signing key after."""

from __future__ import annotations

import dataclasses

import jwt
import pytest

from dmr_appliance.errors import ConfigError
from dmr_appliance.home import copy_store
from dmr_appliance.home.backup import BackupError
from tests.support import home as home_support
from tests.support.home import failure_report, home_under_test


def test_a_sqlite_home_moves_to_postgresql_with_its_keys(postgres, tmp_path, pki):
    on_sqlite = home_under_test(tmp_path / "home", pki, rooms={"lobby": ["alice", "bob"]})
    assert (
        on_sqlite.participant("alice").post("/v1/failures", json=failure_report()).status_code
        == 201
    )
    old_kid = jwt.get_unverified_header(
        on_sqlite.participant("alice").post("/v1/tokens").json["access_token"]
    )["kid"]
    version = on_sqlite.store.version()
    on_sqlite.store.close()
    home_support.POSTGRES = postgres
    try:
        store = home_support.postgres_store(tmp_path / "home")
    finally:
        home_support.POSTGRES = None
    config = dataclasses.replace(on_sqlite.config, store=store)
    counts = copy_store.copy_store(config)
    assert counts["participants"] == 2 and counts["signing_keys"] == 1
    assert counts["failures"] == 1 and counts["failure_attempts"] == 1
    moved = home_under_test(tmp_path / "home", pki, store=store)
    assert moved.store.dialect == "postgresql" and moved.store.version() == version + 1
    listed = moved.admin.get("/v1/participants").json["participants"]
    assert [p["id"] for p in listed] == ["alice", "bob"]
    token = moved.participant("alice").post("/v1/tokens").json["access_token"]
    assert jwt.get_unverified_header(token)["kid"] == old_kid  # the same key, now sealed
    assert moved.admin.get("/v1/failures").json["failures"]
    with pytest.raises(BackupError, match="already holds"):
        copy_store.copy_store(config)  # never merges


def test_copy_store_needs_a_postgresql_url(tmp_path, pki):
    home = home_under_test(tmp_path / "home", pki)
    with pytest.raises(ConfigError, match="postgresql"):
        copy_store.copy_store(home.config)
