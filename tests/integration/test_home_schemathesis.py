"""schemathesis against the live home (real gunicorn, TLS): no 500, nothing outside the
OpenAPI document (status codes, content types, bodies, headers)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from dmr_appliance.config import HomeSync
from tests.support.home import router_session, running_home
from tests.support.identity import CLIENT_CERT_HEADER, forwarded

# Each test runs on SQLite and on PostgreSQL (tests/conftest.py).
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("store_backend")]

ST = Path(sys.executable).parent / "st"
CHECKS = ",".join(
    (
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_schema_conformance",
        "response_headers_conformance",
    )
)


@pytest.fixture(scope="module")
def home(tmp_path_factory, pki):
    if not ST.exists():
        pytest.skip(f"schemathesis is not installed in {sys.prefix} (requirements/test.txt)")
    # A short max_wait: a generated If-None-Match may match and make /v1/sync wait.
    with running_home(
        tmp_path_factory.mktemp("home"), pki, workers=2, threads=16, sync=HomeSync(max_wait=1)
    ) as home:
        admin = router_session(pki, forwarded(pki, "admin", "admin"))
        for pid in ("alice", "bob"):
            admin.post(
                f"{home.url}/v1/participants",
                timeout=10,
                json={"id": pid, "endpoint": f"https://{pid}.example/in", "rooms": ["lobby"]},
            )
        yield home


# Admins may call everything but heartbeats; the relay run covers the relay operations.
RUNS = [("admin", "admin", ".*"), ("relay", "relay-1", "^/v1/(sync|heartbeats)$")]


@pytest.mark.parametrize(("kind", "name", "paths"), RUNS, ids=[r[0] for r in RUNS])
def test_live_app_conforms_to_its_openapi(home, pki, tmp_path, kind, name, paths):
    header = forwarded(pki, kind, name)[CLIENT_CERT_HEADER]
    argv = [
        str(ST),
        "run",
        f"{home.url}/openapi.json",
        "--url",
        home.url,
        "--request-cert",
        str(pki.cert("router", "router")),
        "--request-cert-key",
        str(pki.key("router", "router")),
        "--tls-verify",
        str(pki.ca),
        "--header",
        f"{CLIENT_CERT_HEADER}: {header}",
        "--checks",
        CHECKS,
        "--max-examples",
        "25",
        "--seed",
        "20240601",
        "--workers",
        "2",
        "--include-path-regex",
        paths,
    ]
    # The schema is fetched with requests: keep the environment's CA bundle out of it.
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "NO_COLOR": "1"}
    result = subprocess.run(
        argv, capture_output=True, text=True, timeout=900, env=env, cwd=tmp_path
    )
    report = result.stdout[-6000:] + result.stderr[-2000:]
    assert result.returncode == 0, report + "\n--- home log ---\n" + home.process.logs()[-3000:]
