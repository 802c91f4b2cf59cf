"""`dmr home backup|restore` on a real SQLite store and real key files: a consistent online
copy, files 0600, a manifest, retention; a restore that refuses what it must, brings the
old state back and moves the sync version past what relays hold, so a relay's agent
admits the restored home's document; the backup-age metric."""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import stat
import threading
import time

import pytest

from dmr_appliance import __version__, cli
from dmr_appliance.home import backup, restore
from dmr_appliance.home.resources.health import live
from dmr_appliance.home.store import MIGRATIONS, Store
from dmr_appliance.relay.agent import Agent
from dmr_appliance.relay.metrics import RelayMetrics
from dmr_appliance.relay.sync_state import SYNC_FILE, Snapshot
from dmr_appliance.sync_signature import HEADER
from tests.support.home import home_under_test, write_toml
from tests.support.relay_kit import relay_config


@pytest.fixture
def home(tmp_path, pki):
    h = home_under_test(
        tmp_path / "state",
        pki,
        backup=dataclasses.replace(backup.HomeConfig().backup, dir=tmp_path / "backups"),
    )
    h.add("alice", ["lobby"])
    yield h
    h.store.close()


def mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def sync(h) -> tuple[bytes, str]:
    resp = h.relay().get("/v1/sync")
    assert resp.status_code == 200, resp.text
    return resp.content, resp.headers[HEADER]


def participants(h) -> list[str]:
    return [p["id"] for p in h.admin.get("/v1/participants").json["participants"]]


def test_backup_is_a_complete_private_copy_with_its_manifest(home, tmp_path):
    made = backup.backup(
        home.config,
        tmp_path / "backups",
        keep=3,
        config_file=write_toml(home.config, tmp_path / "home.toml"),
    )
    assert made.parent == tmp_path / "backups" and made.name.startswith("home-")
    manifest = json.loads((made / "manifest.json").read_text())
    kids = [row["kid"] for row in home.admin.get("/v1/keys").json["keys"]]
    assert manifest["keys"] == sorted(kids) and len(kids) == 1
    assert (
        manifest["kind"],
        manifest["package_version"],
        manifest["schema_version"],
        manifest["sync_version"],
    ) == ("dmr-home-backup", __version__, len(MIGRATIONS), home.store.version())
    assert abs(manifest["created_unix"] - time.time()) < 60
    assert set(manifest["files"]) == {"home.db", "home.toml", f"keys/{kids[0]}.pem"}
    for name, expected in manifest["files"].items():
        assert backup.digest(made / name) == expected
        assert mode(made / name) == 0o600, name
    assert (made / f"keys/{kids[0]}.pem").read_bytes() == (
        home.config.keys_dir / f"{kids[0]}.pem"
    ).read_bytes()
    for directory in (tmp_path / "backups", made, made / "keys"):
        assert mode(directory) == 0o700
    assert not list(made.glob("home.db-*")), "a standalone file, no -wal beside it"


def test_backup_is_one_snapshot_while_home_writes(home, tmp_path):
    stop = threading.Event()

    def write() -> None:
        store = Store(home.config.database)
        while not stop.is_set():
            with store.write() as conn:
                store.bump(conn)
        store.close()

    writer = threading.Thread(target=write)
    writer.start()
    try:
        made = [backup.backup(home.config, tmp_path / "b", keep=5) for _ in range(3)]
    finally:
        stop.set()
        writer.join()
    for path in made:
        manifest = json.loads((path / "manifest.json").read_text())
        copy = Store(path / "home.db")
        assert copy.version() == manifest["sync_version"]  # the copy is what it says
        copy.close()


def test_retention_keeps_the_newest_and_drops_stale_partials(home, tmp_path):
    root = tmp_path / "b"
    stale = root / ".home-19700101T000000.000Z.partial"
    stale.mkdir(parents=True)
    os.utime(stale, (0, 0))
    made = [backup.backup(home.config, root, keep=2) for _ in range(3)]
    assert backup.complete(root) == made[1:]
    assert not stale.exists()


def test_restore_brings_the_backup_back_above_every_version_relays_hold(home, tmp_path, pki):
    made = backup.backup(home.config, tmp_path / "b", keep=3)
    home.add("bob", ["lobby"])  # the change the restore loses
    held, signature = sync(home)  # the newest document a relay holds: the floor
    agent = Agent(relay_config(pki, tmp_path / "relay"), RelayMetrics())
    agent.path.parent.mkdir(parents=True)
    agent.path.write_bytes(held)
    before = Snapshot.parse(held).version
    copied = json.loads((made / "manifest.json").read_text())["sync_version"]
    assert copied < before, "the backup alone would be older than what relays hold"
    home.store.close()

    done = restore.restore(home.config, made)

    assert done.previous_version == before and done.sync_version > before
    assert done.sync_version >= int(time.time() * 1000) - 60_000
    assert mode(home.config.database) == 0o600
    for key in home.config.keys_dir.glob("*.pem"):
        assert mode(key) == 0o600
    after = home_under_test(tmp_path / "state", home.pki)
    try:
        assert participants(after) == ["alice"]
        raw, signature = sync(after)
        assert Snapshot.parse(raw).version == done.sync_version
        agent = Agent(relay_config(pki, tmp_path / "relay"), RelayMetrics())
        assert agent.version == before
        agent.admit(Snapshot.parse(raw), raw, signature)  # raises if it were refused
    finally:
        after.store.close()
    assert agent.path == tmp_path / "relay" / SYNC_FILE


def test_restore_refuses_while_home_has_the_store_open(home, tmp_path):
    made = backup.backup(home.config, tmp_path / "b", keep=3)
    home.admin.get("/v1/participants")  # this thread's connection is open
    with pytest.raises(backup.BackupError, match="home is running: another process has"):
        restore.restore(home.config, made)
    assert participants(home) == ["alice"]


def test_restore_refuses_while_homes_socket_answers(home, tmp_path):
    made = backup.backup(home.config, tmp_path / "b", keep=3)
    home.store.close()
    home.config.gate.socket.parent.mkdir(parents=True, exist_ok=True)
    with socket.socket(socket.AF_UNIX) as listening:
        listening.bind(str(home.config.gate.socket))
        listening.listen()
        with pytest.raises(backup.BackupError, match="answers; stop it first"):
            restore.restore(home.config, made)


def damage(made, how: str) -> None:
    manifest = json.loads((made / "manifest.json").read_text())
    if how == "checksums":
        key = next((made / "keys").glob("*.pem"))
        key.write_bytes(key.read_bytes() + b"\n")
    elif how == "incomplete":
        (made / "manifest.json").unlink()
    elif how == "missing":
        (made / "home.db").unlink()
    elif how == "newer":
        manifest["schema_version"] = len(MIGRATIONS) + 1
        (made / "manifest.json").write_text(json.dumps(manifest))


@pytest.mark.parametrize(
    ("how", "message"),
    [
        ("checksums", "fails its checksums"),
        ("incomplete", "is incomplete (no manifest.json)"),
        ("missing", "is incomplete: home.db is missing"),
        ("newer", f"has schema version {len(MIGRATIONS) + 1}, newer than this package's"),
    ],
)
def test_restore_refuses_a_damaged_or_newer_backup_and_leaves_the_store(
    home, tmp_path, how, message
):
    made = backup.backup(home.config, tmp_path / "b", keep=3)
    home.add("bob", ["lobby"])
    home.store.close()
    damage(made, how)
    with pytest.raises(backup.BackupError, match=message.replace("(", r"\(").replace(")", r"\)")):
        restore.restore(home.config, made)
    assert participants(home) == ["alice", "bob"]


def test_cli_backs_up_and_restores_with_one_line_refusals(home, tmp_path, capsys):
    config = str(write_toml(home.config, tmp_path / "home.toml"))
    assert cli.main(["home", "backup", "--config", config]) == 0
    made = capsys.readouterr().out.strip()
    assert os.path.dirname(made) == str(tmp_path / "backups")
    assert cli.main(["home", "restore", str(tmp_path / "backups"), "--config", config]) == 1
    err = capsys.readouterr().err
    assert (
        err == f"dmr: {tmp_path / 'backups'} holds backups, not one: name one, e.g. "
        f"dmr home restore {made}\n"
    )
    assert cli.main(["home", "restore", made, "--config", config]) == 1
    assert capsys.readouterr().err.startswith("dmr: home is running: another process has ")
    home.add("bob", ["lobby"])
    home.store.close()
    assert cli.main(["home", "restore", made, "--config", config]) == 0
    out = capsys.readouterr()
    assert "sync version " in out.out and "verify: files checked" in out.err
    assert participants(home) == ["alice"]


def test_backup_age_metric_follows_the_newest_backup(home, tmp_path):
    def metric() -> float:
        found = {f.name: f.samples[0].value for f in live(deps(home))}
        return found["dmr_home_backup_age_seconds"]

    assert metric() == float("inf")
    backup.backup(home.config, tmp_path / "backups", keep=2)
    assert 0 <= metric() < 30
    assert backup.age(tmp_path / "backups", now=time.time() + 3 * 86400) > 2 * 86400


def deps(h):
    from dmr_appliance.home.deps import HomeDeps

    return HomeDeps.build(h.config, h.store)
