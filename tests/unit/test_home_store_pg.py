"""Several home instances on one PostgreSQL (issue 25): migrations once under a lock,
signing keys sealed in the store and shared, a change through one instance waking the
long polls of another within 100 ms, the version caught up when a NOTIFY is missed."""

from __future__ import annotations

import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import jwt
import pytest

from dmr_appliance import config as config_mod
from dmr_appliance.config import HomeConfig
from dmr_appliance.errors import ConfigError, Unavailable
from dmr_appliance.home import migrations, participants, store_pg
from dmr_appliance.home.sealing import Sealer, SealError, new_key_file
from dmr_appliance.home.store import open_store, store_url
from dmr_appliance.home.sync import ChangeWatcher
from tests.support import home as home_support
from tests.support.home import home_under_test


@pytest.fixture
def shared(postgres, tmp_path):
    """The [store] table two home instances share: one database, one key file."""
    home_support.POSTGRES = postgres
    try:
        yield home_support.postgres_store(tmp_path / "shared", name=str(tmp_path))
    finally:
        home_support.POSTGRES = None


def active_kid(home) -> str:
    [key] = [k for k in home.admin.get("/v1/keys").json["keys"] if k["status"] == "active"]
    return key["kid"]


def two_homes(tmp_path, pki, store):
    return [home_under_test(tmp_path / f"home-{n}", pki, store=store) for n in (1, 2)]


def test_the_url_chooses_the_store_and_sqlite_stays_the_default(tmp_path):
    assert store_url(HomeConfig()) == "sqlite:///var/lib/dmr-home/home.db"
    config = HomeConfig(store=config_mod.HomeStore(url=f"sqlite:///{tmp_path}/h.db"))
    assert open_store(config).path == tmp_path / "h.db"


@pytest.mark.parametrize(
    "url",
    ["postgresql://dmr:secret@db/home", "postgresql://db/home?password=x", "mysql://db/x"],
)
def test_a_password_in_the_url_or_another_engine_is_refused(tmp_path, url):
    path = tmp_path / "home.toml"
    path.write_text(f'[store]\nurl = "{url}"\n')
    with pytest.raises(ConfigError, match=r"store\.url"):
        config_mod.load(HomeConfig, path)


def test_without_psycopg_home_says_what_to_install(monkeypatch):
    monkeypatch.setattr(store_pg, "psycopg", None)
    config = HomeConfig(store=config_mod.HomeStore(url="postgresql://db/home", key_file="k"))
    with pytest.raises(ConfigError) as caught:
        open_store(config)
    assert "apt install python3-psycopg" in str(caught.value)
    assert "pip install 'dmr-appliance[postgresql]'" in str(caught.value)


def test_postgresql_needs_a_key_file(postgres):
    config = HomeConfig(store=config_mod.HomeStore(url=postgres.database("no-kek")))
    with pytest.raises(ConfigError, match="key_file"):
        open_store(config)


def test_the_password_comes_from_its_file_or_the_environment(tmp_path, monkeypatch):
    secret = tmp_path / "pw"
    secret.write_text("s3cret\n")
    with_file = HomeConfig(store=config_mod.HomeStore(password_file=str(secret)))
    assert store_pg.password(with_file) == "s3cret"
    monkeypatch.setenv("DMR_STORE_PASSWORD", "from-env")
    assert store_pg.password(HomeConfig()) == "from-env"


def test_migrations_run_once_when_instances_start_together(postgres):
    url = postgres.database("race")
    errors: list[BaseException] = []

    def start() -> None:
        try:
            store_pg.PostgresStore(url)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    store = store_pg.PostgresStore(url)
    with store.read() as conn:
        assert conn.execute("SELECT version FROM schema_version").fetchall() == [
            (len(migrations.MIGRATIONS),)
        ]


def test_dialect_types(postgres):
    store = store_pg.PostgresStore(postgres.database("types"))
    with store.read() as conn:
        types = dict(
            conn.execute(
                "SELECT column_name, data_type FROM information_schema.columns"
                " WHERE table_name = 'instances'"
            ).fetchall()
        )
    assert types["last_beat"] == "double precision" and types["sync_version"] == "bigint"


def test_keys_are_sealed_in_the_store_never_in_clear(tmp_path, pki, shared):
    one, two = two_homes(tmp_path, pki, shared)
    with one.store.read() as conn:
        [(kid, sealed)] = conn.execute("SELECT kid, sealed FROM signing_keys").fetchall()
    assert b"PRIVATE KEY" not in sealed and len(sealed) > 100
    assert not list((tmp_path / "home-1" / "keys").glob("*.pem"))
    assert active_kid(one) == active_kid(two) == kid
    wrong = tmp_path / "wrong.kek"
    new_key_file(wrong)
    with pytest.raises(SealError, match="does not open"):
        Sealer.from_file(wrong).open(kid, sealed)


def test_a_rotation_through_one_instance_is_seen_by_the_other(tmp_path, pki, shared):
    one, two = two_homes(tmp_path, pki, shared)
    one.add("alice", ["lobby"])
    rotated = one.admin.post("/v1/keys/rotate")
    assert rotated.status_code in (200, 201), rotated.text
    new_kid = rotated.json["active"]
    assert active_kid(two) == new_kid
    issued = two.participant("alice").post("/v1/tokens")  # signed by the other instance
    assert issued.status_code == 201, issued.text
    assert jwt.get_unverified_header(issued.json["access_token"])["kid"] == new_kid


def test_heartbeats_and_failures_written_by_one_are_seen_by_the_other(tmp_path, pki, shared):
    one, two = two_homes(tmp_path, pki, shared)
    beat = {"instance": "relay-1", "address": "r1:8443", "version": "1", "sync_version": 1}
    beat |= {"counters": {}, "sync_age": 0.5}
    assert one.relay().post("/v1/heartbeats", json=beat).status_code in (200, 202, 204)
    listed = two.admin.get("/v1/instances").json
    assert [i["instance"] for i in listed["instances"]] == ["relay-1"]
    page_one = one.admin.get("/").text
    page_two = two.admin.get("/").text
    assert "relay-1" in page_one and "relay-1" in page_two


def wake_up_ms(watcher: ChangeWatcher, writer, n: int) -> float:
    """A poll waiting on ``watcher``'s instance; a participant created through
    ``writer``'s; milliseconds from the start of that write to the poll's wake-up."""
    seen: list[float] = []
    version = watcher.store.version()
    waiter = threading.Thread(
        target=lambda: (watcher.wait_beyond(version, 5), seen.append(time.monotonic()))
    )
    waiter.start()
    time.sleep(0.05)  # the poll is waiting
    started = time.monotonic()  # an upper bound: the write's own time is counted too
    participants.create(writer, f"p{n}", f"https://p{n}.example/in", ["lobby"])
    waiter.join(5)
    assert seen, "the poll was not woken"
    return (seen[0] - started) * 1000


def test_a_change_through_one_instance_wakes_the_polls_of_another(tmp_path, pki, shared):
    one, two = two_homes(tmp_path, pki, shared)
    watcher = ChangeWatcher(two.store)
    watcher.wait_beyond(-1, 0)  # started
    latencies = [wake_up_ms(watcher, one.store, n) for n in range(20)]
    median, worst = statistics.median(latencies), max(latencies)
    print(f"\ncross-instance wake-up: median {median:.1f} ms, max {worst:.1f} ms, 20 changes")
    assert worst < 100


def test_a_missed_notification_is_caught_up_from_the_table(postgres):
    url = postgres.database("missed")
    writer, reader = store_pg.PostgresStore(url), store_pg.PostgresStore(url)
    changes = reader.changes(interval=0.2)
    first = next(changes)
    with writer.write() as conn:  # a version moved without NOTIFY (as if missed)
        conn.execute("UPDATE sync_state SET version = version + 1")
    started = time.monotonic()
    assert next(changes) == first + 1
    assert time.monotonic() - started < 1
    changes.close()


def test_a_dropped_idle_connection_is_replaced_a_lost_call_is_a_503(postgres):
    store = store_pg.PostgresStore(postgres.database("lost"))
    other = store_pg.PostgresStore(postgres.database("lost"))

    def terminate(pid: int) -> None:
        with other.read() as conn:
            conn.execute("SELECT pg_terminate_backend(?)", (pid,))

    version = store.version()
    with store.read() as conn:
        pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
    terminate(pid)  # the pool's idle connection
    assert store.version() == version  # a new connection, nothing lost: no error
    with pytest.raises(Unavailable), store.read() as conn:  # dropped mid-transaction
        terminate(conn.execute("SELECT pg_backend_pid()").fetchone()[0])
        conn.execute("SELECT 1")
    assert store.version() == version


def test_threads_share_a_bounded_pool_of_connections(postgres):
    url = postgres.database("pool")
    store = store_pg.PostgresStore(url, pool_size=3)
    with ThreadPoolExecutor(16) as pool:
        versions = list(pool.map(lambda _: store.version(), range(200)))
    assert set(versions) == {1}
    with store_pg.PostgresStore(url).read() as conn:
        held = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND application_name = 'dmr-home'"
        ).fetchone()[0]
    assert held <= 3 + 1  # the pool, and the connection asking


def test_readyz_follows_the_database_for_the_kubernetes_probes(postgres, shared, tmp_path, pki):
    """k8s/components/postgres-home's readiness: while the database refuses connections,
    /readyz is a 503 within the probes' timeouts (3 s at the gate, 5 s for the app), so
    the replica leaves the Service, and /healthz stays 200 (no restart); /readyz is 200
    again by itself once the database answers."""
    home = home_under_test(tmp_path / "home", pki, store=shared)
    db = shared.url.split("?", 1)[0].rsplit("/", 1)[1]  # "d" and hex digits: no quoting
    assert home.caller(None).get("/readyz").status_code == 200
    postgres._psql(f"ALTER DATABASE {db} WITH ALLOW_CONNECTIONS false")
    try:
        postgres._psql(
            f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{db}'"  # noqa: S608
        )
        started = time.monotonic()
        resp = home.caller(None).get("/readyz")
        took = time.monotonic() - started
        assert resp.status_code == 503 and took < 3, (resp.status_code, took)
        assert home.caller(None).get("/healthz").status_code == 200
    finally:
        postgres._psql(f"ALTER DATABASE {db} WITH ALLOW_CONNECTIONS true")
    assert home.caller(None).get("/readyz").status_code == 200
    print(f"\n/readyz with the database refusing connections: 503 in {took * 1000:.0f} ms")
