"""Home for tests: a config in a temp dir, and a real gunicorn home on a free port."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import NoReturn
from urllib.parse import urlsplit

import pytest
import requests
from requests.adapters import BaseAdapter
from requests.structures import CaseInsensitiveDict

from dmr_appliance.config import HomeConfig, HomeStore, Tls, to_toml
from dmr_appliance.home import sealing
from dmr_appliance.home import store as store_mod
from tests.support.apps import App, home_gate
from tests.support.https import mtls_session
from tests.support.processes import free_port, http_ok


def postgresql_missing(reason: str) -> NoReturn:
    """A test that needs PostgreSQL (its binaries, psycopg) and has not got it: skipped
    saying what to install, or failed where it must run (DMR_NEEDS_POSTGRESQL=1)."""
    if os.environ.get("DMR_NEEDS_POSTGRESQL") == "1":
        pytest.fail(reason)
    pytest.skip(reason)


# The PostgreSQL server of the test running on that back end (tests/conftest.py,
# ``store_backend``), else None: home_config then gives each state directory a database.
POSTGRES = None


def home_config(state: Path, pki, **overrides) -> HomeConfig:
    """HomeConfig with its state under ``state`` and TLS from the test ``pki``; on
    PostgreSQL (``store_backend``), a database of its own and a key-encryption key."""
    tls = Tls(
        ca=pki.ca, cert=pki.cert("server", "home"), key=pki.key("server", "home"), crl=pki.crl
    )
    if POSTGRES is not None and "store" not in overrides:
        overrides["store"] = postgres_store(state)
    return dataclasses.replace(
        HomeConfig(),
        database=state / "home.db",
        keys_dir=state / "keys",
        tls=tls,
        gate=home_gate(state),
        **overrides,
    )


def postgres_store(state: Path, name: str | None = None) -> HomeStore:
    """``[store]`` on the test PostgreSQL: the database named after ``name`` (default: the
    state directory: one per home under test; several homes share one by naming it) and
    the key-encryption key ``kek`` in ``state``."""
    state.mkdir(parents=True, exist_ok=True)
    kek = state / "kek"
    if not kek.exists():
        sealing.new_key_file(kek)
    url = POSTGRES.database(name or str(state.resolve()))
    return HomeStore(url=url, key_file=str(kek))


def write_toml(config: HomeConfig, path: Path) -> Path:
    """``config`` as a home.toml, every setting written."""
    path.write_text(to_toml(config))
    return path


@dataclasses.dataclass
class RunningHome:
    url: str
    config: HomeConfig
    config_path: Path
    process: App


@contextmanager
def running_home(
    state: Path, pki, *, workers: int = 2, threads: int = 16, **overrides
) -> Iterator[RunningHome]:
    """Home under real gunicorn behind its gate (TLS, client certificate required)."""
    state.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config = home_config(
        state, pki, bind=f"127.0.0.1:{port}", workers=workers, threads=threads, **overrides
    )
    path = write_toml(config, state / "home.toml")
    home = start_home(config, path, state / "gunicorn.log")
    try:
        wait_ready(home, pki)
        yield home
    finally:
        home.process.stop()


def start_home(config: HomeConfig, config_path: Path, log_path: Path) -> RunningHome:
    """gunicorn and the gate; their logs beside ``log_path`` (NAME.log, NAME-gate.log)."""
    process = App("home", config_path, log_path.parent, name=log_path.stem).start()
    url = f"https://{config.bind}"
    return RunningHome(url, config, config_path, process)


def wait_ready(home: RunningHome, pki, timeout: float = 30.0) -> RunningHome:
    session = router_session(pki)
    home.process.wait_ready(http_ok(session, f"{home.url}/readyz"), timeout)
    return home


def router_session(pki, headers: dict[str, str] | None = None):
    """What the router presents to home's gate: its router certificate (the only kind
    whose forwarded X-DMR-Client-Cert home believes), home verified by the CA."""
    return mtls_session(pki.ca, pki.cert("router", "router"), pki.key("router", "router"), headers)


@dataclasses.dataclass
class HomeUnderTest:
    """An in-process home (falcon.testing) with a caller per test certificate."""

    app: object
    config: HomeConfig
    store: object
    pki: object

    def caller(self, kind: str | None, name: str | None = None):
        import falcon.testing

        from tests.support.identity import Caller

        return Caller(falcon.testing.TestClient(self.app), self.pki, kind, name)

    @property
    def admin(self):
        return self.caller("admin", "admin")

    def participant(self, name: str):
        return self.caller("participant", name)

    def relay(self, name: str = "relay-1"):
        return self.caller("relay", name)

    def add(self, pid: str, rooms: list[str], endpoint: str | None = None) -> dict:
        resp = self.admin.post(
            "/v1/participants",
            json={
                "id": pid,
                "rooms": rooms,
                "endpoint": endpoint or f"https://{pid}.example/inbox",
            },
        )
        assert resp.status_code == 201, resp.text
        return resp.json


def home_under_test(
    state: Path, pki, *, rooms: Mapping[str, Sequence[str]] | None = None, **overrides
) -> HomeUnderTest:
    """An in-process home holding the participants of ``rooms`` (room -> ids)."""
    from dmr_appliance import identity
    from dmr_appliance.home.app import create_app
    from dmr_appliance.home.deps import HomeDeps
    from dmr_appliance.home.store import open_store

    config = home_config(state, pki, **overrides)
    store = open_store(config)
    app = create_app(
        HomeDeps.build(config, store), identity.Verifier.from_files(config.tls.ca, config.tls.crl)
    )
    home = HomeUnderTest(app, config, store, pki)
    for pid, joined in members(rooms or {}).items():
        home.add(pid, joined)
    return home


def members(rooms: Mapping[str, Sequence[str]]) -> dict[str, list[str]]:
    """room -> participants, turned into participant -> rooms (in the order given)."""
    found: dict[str, list[str]] = {}
    for room, pids in rooms.items():
        for pid in pids:
            found.setdefault(pid, []).append(room)
    return found


MID = "0190b4a2-1234-7000-8000-00000000abcd"  # the message id of ``failure_report``


def failure_report(**changes) -> dict:
    """A failure report as alice files it (message MID to bob in the lobby), ``changes``
    applied."""
    doc = {
        "message_id": MID,
        "room": "lobby",
        "from": "alice",
        "to": ["bob"],
        "attempts": [
            {
                "target": "https://router-1:8443",
                "at": "2026-01-02T03:04:05Z",
                "outcome": "failed",
                "status": 503,
                "detail": "relay overloaded",
            }
        ],
        "envelope": {"id": MID, "room": "lobby", "from": "alice", "payload": {"hi": 1}},
        "reported_at": "2026-01-02T03:04:06Z",
    }
    return {**doc, **changes}


def older_store(path: Path, migrations: int, rows: list[tuple[str, tuple]]) -> None:
    """A store at ``path`` as the first ``migrations`` left it, holding ``rows`` (SQL and
    its parameters): what a newer home then opens and migrates. On PostgreSQL, the
    database of ``path``'s directory."""
    newest = store_mod.MIGRATIONS
    store_mod.MIGRATIONS = newest[:migrations]
    try:
        if POSTGRES is None:
            old = store_mod.Store(path)
        else:  # the database home_config gives the state directory holding ``path``
            from dmr_appliance.home.store_pg import PostgresStore

            old = PostgresStore(postgres_store(path.parent).url)
        with old.write() as conn:
            for sql, params in rows:
                conn.execute(sql, params)
        old.close()
    finally:
        store_mod.MIGRATIONS = newest


class InProcess(BaseAdapter):
    """A requests adapter that sends each request to a falcon.testing ``Caller`` (a home
    under test, as one certificate) instead of the network: the real ``HomeClient``
    against the real home app, without sockets."""

    def __init__(self, caller) -> None:
        super().__init__()
        self.caller = caller

    def send(self, request, **kwargs) -> requests.Response:
        url = urlsplit(request.url)
        result = self.caller.request(
            request.method,
            url.path,
            query_string=url.query,
            body=request.body or b"",
            headers=dict(request.headers),
        )
        resp = requests.Response()
        resp.status_code, resp._content = result.status_code, result.content
        resp.headers = CaseInsensitiveDict(result.headers)
        resp.url, resp.request, resp.reason = request.url, request, result.status
        return resp

    def close(self) -> None:
        pass
