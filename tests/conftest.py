"""Shared fixtures. ``pki``: one deployment CA with a certificate of every kind.

The session-wide ``pki`` is shared by every test: never revoke or re-issue in it. A test
that changes a PKI uses ``fresh_pki`` (its own directory, same certificates).

``pytest.mark.needs_nginx``: the test runs nginx (the router, a gate, ``nginx -t``) and
is skipped where the product would find none (``serving.binary``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from dmr_appliance import pki as pki_mod
from dmr_appliance import serving

# tests/k8s needs the Kubernetes tools of .venv-k8s: scripts/k8s.sh runs it there.
collect_ignore = [] if os.environ.get("DMR_K8S_TESTS") == "1" else ["k8s"]

SERVERS = ("router", "home", "recipient")  # server/router: a non-router holding a server cert
ROUTERS = ("router", "router-2")
RELAYS = ("relay-1", "relay-2")
PARTICIPANTS = ("alice", "bob", "carol")
ADMINS = ("admin",)
LOCAL_SANS = {"dns": ("localhost",), "ips": ("127.0.0.1",)}


@pytest.hookimpl(tryfirst=True)  # before pytest's tmp_path factory reads basetemp
def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "needs_nginx: runs nginx; skipped where none is installed")
    config.addinivalue_line(
        "markers", "sqlite_only: in a both-stores module, a test of SQLite's own files"
    )
    # pytest-xdist gives each worker BASETEMP/popen-gwN; a stack's unix sockets live in its
    # state directory, and the 6 more characters take the longest past the 107 bytes a
    # socket path may have (nginx: "too long path in the unix domain socket"): BASETEMP/gwN.
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    basetemp = config.option.basetemp
    if worker and basetemp and Path(basetemp).name == f"popen-{worker}":
        config.option.basetemp = str(Path(basetemp).with_name(worker))


@pytest.hookimpl(tryfirst=True)  # before -m selects: the markers added below count
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    _deselect_sqlite_only(config, items)
    _postgresql_processes_once(items)
    try:
        serving.binary()
    except serving.NginxError:
        skip = pytest.mark.skip(reason="needs nginx (apt-get install nginx)")
        for item in items:
            if item.get_closest_marker("needs_nginx"):
                item.add_marker(skip)


@dataclass(frozen=True)
class Pki:
    dir: Path

    @property
    def ca(self) -> Path:
        return pki_mod.paths(self.dir).ca

    @property
    def crl(self) -> Path:
        return pki_mod.paths(self.dir).crl

    def cert(self, kind: str, name: str) -> Path:
        return pki_mod.paths(self.dir).cert(kind, name)

    def key(self, kind: str, name: str) -> Path:
        return pki_mod.paths(self.dir).key(kind, name)

    def pem(self, kind: str, name: str) -> str:
        return self.cert(kind, name).read_text()


def build_pki(directory: Path) -> Pki:
    pki_mod.init_ca(directory)
    for name in SERVERS:
        pki_mod.issue(directory, "server", name, **LOCAL_SANS)
    for name in ROUTERS:
        pki_mod.issue(directory, "router", name, **LOCAL_SANS)
    for name in RELAYS:
        pki_mod.issue(directory, "relay", name, **LOCAL_SANS)
    for name in PARTICIPANTS:
        pki_mod.issue(directory, "participant", name)
    for name in ADMINS:
        pki_mod.issue(directory, "admin", name)
    return Pki(directory)


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return build_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def fresh_pki(tmp_path: Path) -> Pki:
    return build_pki(tmp_path / "pki")


# --- the two store back ends (issue 25) ------------------------------------------------
# A module whose home tests run on both says ``pytestmark = pytest.mark.usefixtures(
# "store_backend")``: each test runs once on SQLite and once on PostgreSQL (a database of
# its own on one server per xdist worker, started from Debian's postgresql binaries).
# Without psycopg or those binaries the PostgreSQL half is skipped, saying what to
# install; DMR_NEEDS_POSTGRESQL=1 (scripts/test.sh) makes that skip a failure.


@pytest.fixture(scope="session")
def postgres():
    from dmr_appliance.home import store_pg
    from dmr_appliance.local.postgres import LocalPostgres, PostgresMissing
    from tests.support import home as home_support

    try:
        if store_pg.psycopg is None:
            raise PostgresMissing(store_pg.INSTALL)
        server = LocalPostgres().start()
    except PostgresMissing as exc:
        home_support.postgresql_missing(str(exc))
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_backend(request: pytest.FixtureRequest):
    from tests.support import home as home_support

    if request.param == "postgresql":
        home_support.POSTGRES = request.getfixturevalue("postgres")
    try:
        yield request.param
    finally:
        home_support.POSTGRES = None
        # The test's homes are done: their watchers stop (and close their LISTEN).
        from dmr_appliance.home import sync

        sync.release_waiters()


def _postgresql_processes_once(items: list[pytest.Item]) -> None:
    """The PostgreSQL half of a test that starts real processes (tests/integration: home
    under gunicorn, its relays' agents) is marked ``once``: what those add to the unit
    tests is the processes, not psycopg, whose paths the unit tests cover on both back
    ends in every dependency set (Debian 12's psycopg 3.1.7, Debian 13's 3.2.6)."""
    integration = Path(__file__).parent / "integration"
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        if params.get("store_backend") == "postgresql" and item.path.is_relative_to(integration):
            item.add_marker(pytest.mark.once)


def _deselect_sqlite_only(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A ``sqlite_only`` test (its files, its migrations from an older file) is not
    collected for PostgreSQL at all: nothing to skip, nothing to read past."""
    kept, dropped = [], []
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        if item.get_closest_marker("sqlite_only") and params.get("store_backend") == "postgresql":
            dropped.append(item)
        else:
            kept.append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept
