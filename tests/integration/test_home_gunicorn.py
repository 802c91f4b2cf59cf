"""Home under real gunicorn behind its gate, talked to as the router would.

The tests connect to the gate directly, presenting the router's certificate, and set the
client-certificate header themselves exactly as nginx does ($ssl_client_escaped_cert).
"""

from __future__ import annotations

import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from dmr_appliance.serving import unix_get
from tests.support.home import router_session, running_home, start_home, wait_ready
from tests.support.identity import forwarded
from tests.support.problems import assert_nginx_problem

# Each test runs on SQLite and on PostgreSQL (tests/conftest.py).
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("store_backend")]


def as_(pki, kind, name):
    return router_session(pki, forwarded(pki, kind, name))


def add(session, url, pid, rooms=("lobby",)):
    return session.post(
        f"{url}/v1/participants",
        timeout=10,
        json={"id": pid, "endpoint": f"https://{pid}.example/in", "rooms": list(rooms)},
    )


def test_tls_requires_a_client_certificate(tmp_path, pki):
    with running_home(tmp_path / "home", pki, workers=1, threads=4) as home:
        # The gate completes the handshake, then answers nothing but the problem.
        resp = requests.get(f"{home.url}/healthz", verify=str(pki.ca), timeout=5)
        assert_nginx_problem(resp, 400, "client-certificate-required")  # the gate's
        assert (
            as_(pki, "admin", "admin").get(f"{home.url}/v1/participants", timeout=5).status_code
            == 200
        )


def waiters_by_pid(home) -> dict[str, int]:
    found = {}
    # Each connection lands on one worker: sample with new ones, on gunicorn's own socket
    # (through the gate they would reuse its kept-alive connections to one worker).
    for _ in range(20):
        text = unix_get(home.config.gate.socket, "/metrics")[1]
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                if s.name == "dmr_home_sync_waiters":
                    found[s.labels["pid"]] = int(s.value)
    return found


def test_revocation_wakes_polls_in_every_worker_within_a_second(tmp_path, pki):
    # 48 threads: a worker holds up to 36 polls (3/4), so one may take all 32 below.
    with running_home(tmp_path / "home", pki, workers=2, threads=48) as home:
        admin = as_(pki, "admin", "admin")
        assert add(admin, home.url, "alice").status_code == 201
        etag = as_(pki, "relay", "relay-1").get(f"{home.url}/v1/sync", timeout=5).headers["ETag"]
        results = []

        def poll():
            session = as_(pki, "relay", "relay-1")  # a connection each: spread over workers
            resp = session.get(
                f"{home.url}/v1/sync",
                params={"wait": 25},
                headers={"If-None-Match": etag},
                timeout=40,
            )
            results.append((resp, time.monotonic()))

        # The kernel hands each new connection to whichever worker accepts first: add
        # polls until both workers hold some, so the wake-up must cross processes.
        threads = []
        while len(threads) < 32:
            threads += [threading.Thread(target=poll) for _ in range(4)]
            for thread in threads[-4:]:
                thread.start()
            time.sleep(0.3)
            waiting = waiters_by_pid(home)
            if len([n for n in waiting.values() if n]) == 2 and sum(waiting.values()) == len(
                threads
            ):
                break
        assert len([n for n in waiting.values() if n]) == 2, f"one worker took all: {waiting}"

        revoked_at = time.monotonic()
        assert admin.post(f"{home.url}/v1/participants/alice/revoke", timeout=5).ok
        for thread in threads:
            thread.join(30)
        assert len(results) == len(threads)
        for resp, answered_at in results:
            assert resp.status_code == 200
            assert "alice" in resp.json()["revoked_participants"]
            assert answered_at - revoked_at < 1.0


def test_sigkill_during_writes_loses_no_acknowledged_write(tmp_path, pki):
    state = tmp_path / "home"
    with running_home(state, pki, workers=2, threads=8) as home:
        acknowledged: list[str] = []
        stop = threading.Event()

        def writer(n: int) -> None:
            session = as_(pki, "admin", "admin")
            for i in range(10_000):
                if stop.is_set():
                    return
                pid = f"p-{n}-{i}"
                try:
                    if add(session, home.url, pid).status_code == 201:
                        acknowledged.append(pid)
                except requests.RequestException:
                    return  # the server died under us: this write was never acknowledged

        with ThreadPoolExecutor(8) as pool:
            for n in range(8):
                pool.submit(writer, n)
            time.sleep(2.0)
            home.process.kill()  # SIGKILL, arbiter and workers, mid-burst
            stop.set()
        assert len(acknowledged) > 20, home.process.logs()

        if not home.config.store.url:  # SQLite's file (PostgreSQL checks its own WAL)
            check = sqlite3.connect(home.config.database)
            assert check.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            check.close()

        restarted = wait_ready(
            start_home(home.config, home.config_path, state / "gunicorn-2.log"), pki
        )
        try:
            listed = (
                as_(pki, "admin", "admin")
                .get(f"{restarted.url}/v1/participants", timeout=10)
                .json()["participants"]
            )
            assert set(acknowledged) <= {p["id"] for p in listed}
        finally:
            restarted.process.stop()
