"""k8s/components/postgres-home's settings against a PostgreSQL set up as its Cluster would
be, without docker or a cluster: the files k8s/make-secrets.sh writes (the Secret
dmr-home-store's password, key_file and ca.crt; the Cluster's server certificate),
tests/k8s/database.py's stand-in for the Cluster on this host's Debian postgresql (TLS,
scram over TLS only), and the component's home.toml with only the Secret's mount point
and the address moved (libpq's hostaddr: the certificate is still checked against the
Service name). Two homes on it, as the Deployment's two replicas: migrations, one sealed
signing key, a participant added through one listed through the other, no file written
(keys_dir and database point nowhere), /readyz a 503 while the database is down and 200
again by itself. tests/k8s/test_image_run_postgres.py runs the same with the image."""

from __future__ import annotations

import dataclasses
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from dmr_appliance import config as config_mod
from dmr_appliance.errors import Unavailable
from dmr_appliance.home import store_pg
from dmr_appliance.local.postgres import PostgresMissing, bin_dir
from tests.k8s.database import on_host
from tests.support.home import home_under_test, postgresql_missing

ROOT = Path(__file__).parents[2]
COMPONENT = ROOT / "k8s/components/postgres-home"
MOUNT = "/etc/dmr-appliance/store"  # where the Deployment mounts dmr-home-store


def _why_not() -> str | None:
    if os.geteuid() != 0:
        return "the Cluster's stand-in runs postgres as the postgres user: needs root"
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        return "no postgres user (Debian's postgresql-common makes it)"
    return None


pytestmark = pytest.mark.skipif(_why_not() is not None, reason=str(_why_not()))


@pytest.fixture(scope="module")
def secrets(tmp_path_factory) -> Path:
    """k8s/make-secrets.sh's pki/, made in a copy of k8s/ as an operator would."""
    tree = tmp_path_factory.mktemp("k8s") / "k8s"
    shutil.copytree(ROOT / "k8s", tree, ignore=shutil.ignore_patterns("pki"))
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    subprocess.run([str(tree / "make-secrets.sh")], env=env, check=True, capture_output=True)
    return tree / "secrets/pki"


class Database:
    """The stand-in, started (and started again) on a loopback port."""

    def __init__(self, pki: Path) -> None:
        self.base = Path(tempfile.mkdtemp(prefix="dmr-k8s-pg-"))  # postgres reaches it
        self.base.chmod(0o755)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.script = on_host(str(pki), str(self.base / "pg"), str(self.base / "run"), self.port)
        self.log = self.base / "log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(["sh", "-c", self.script], stdout=log, stderr=log)
        # Accepting connections, not only its port open: a server still starting answers
        # "the database system is starting up" (a home's migration then failed, in CI).
        ready = [str(bin_dir() / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(self.port)]
        deadline = time.monotonic() + 60
        while subprocess.run(ready, check=False).returncode != 0:
            assert self.proc.poll() is None, self.log.read_text()[-3000:]
            assert time.monotonic() < deadline, self.log.read_text()[-3000:]
            time.sleep(0.2)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # postgres's fast shutdown
            self.proc.wait(30)

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.base, ignore_errors=True)


@pytest.fixture(scope="module")
def database(secrets):
    try:  # as tests/conftest.py's postgres: a skip, or a failure under scripts/test.sh
        if store_pg.psycopg is None:
            raise PostgresMissing(store_pg.INSTALL)
        bin_dir()
    except PostgresMissing as exc:
        postgresql_missing(str(exc))
    db = Database(secrets)
    db.start()
    yield db
    db.remove()


def component_store(secrets: Path, port: int, host: str = "") -> config_mod.HomeStore:
    """The component's [store], the Secret's files where make-secrets.sh wrote them and the
    Service reached at this host's loopback port (hostaddr), its name kept for TLS."""
    store = config_mod.load(config_mod.HomeConfig, COMPONENT / "home.toml", environ={}).store
    url = store.url.replace(MOUNT, str(secrets / "store")).replace(":5432/", f":{port}/")
    if host:
        url = url.replace("@dmr-home-db-rw.dmr-db.svc:", f"@{host}:")
    return dataclasses.replace(
        store,
        url=f"{url}&hostaddr=127.0.0.1",
        password_file=store.password_file.replace(MOUNT, str(secrets / "store")),
        key_file=store.key_file.replace(MOUNT, str(secrets / "store")),
    )


def test_two_homes_on_the_clusters_stand_in_with_the_component_settings(
    database, secrets, tmp_path, pki
):
    store = component_store(secrets, database.port)
    homes = [home_under_test(tmp_path / f"home-{n}", pki, store=store) for n in (1, 2)]
    one, two = homes
    with one.store.read() as conn:
        ssl = conn.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetchone()
        keys = conn.execute("SELECT count(*), count(sealed) FROM signing_keys").fetchone()
    assert ssl[0] is True and tuple(keys) == (1, 1)  # one key, sealed, for both
    assert one.admin.get("/v1/jwks").json == two.admin.get("/v1/jwks").json
    body = {"id": "alice", "rooms": ["lobby"], "endpoint": "https://alice.example/in"}
    assert one.admin.post("/v1/participants", json=body).status_code == 201
    listed = two.admin.get("/v1/participants").json["participants"]
    assert [p["id"] for p in listed] == ["alice"]
    # Nothing on a disk of the pod's own: no key file, no SQLite file.
    assert [p for h in homes for p in (h.config.keys_dir, h.config.database) if p.exists()] == []

    database.stop()
    try:
        assert [h.caller(None).get("/readyz").status_code for h in homes] == [503, 503]
        assert [h.caller(None).get("/healthz").status_code for h in homes] == [200, 200]
    finally:
        database.start()
    started = time.monotonic()
    while [h.caller(None).get("/readyz").status_code for h in homes] != [200, 200]:
        assert time.monotonic() - started < 10
        time.sleep(0.2)
    print(f"\nready again {time.monotonic() - started:.2f} s after the database started")


def test_verify_full_refuses_a_certificate_for_another_name(database, secrets, tmp_path, pki):
    """The CA alone is not enough: the Service name must be in the certificate."""
    store = component_store(secrets, database.port, host="dmr-home-db-ro.dmr-db.svc")
    with pytest.raises(Unavailable):
        home_under_test(tmp_path / "home", pki, store=store)
    password = Path(store.password_file).read_text().strip()
    connect = store_pg.psycopg.connect
    with pytest.raises(store_pg.psycopg.OperationalError, match="does not match"):
        connect(store.url, password=password, connect_timeout=5).close()
    connect(component_store(secrets, database.port).url, password=password).close()
