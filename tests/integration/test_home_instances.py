"""Two home instances (each its own gunicorn and gate) on one PostgreSQL: any of them
answers any call, and a change through one wakes the long polls held by the other."""

from __future__ import annotations

import statistics
import threading
import time

import pytest

from tests.support import home as home_support
from tests.support.home import router_session, running_home
from tests.support.identity import forwarded

pytestmark = pytest.mark.slow


def as_(pki, kind, name):
    return router_session(pki, forwarded(pki, kind, name))


@pytest.fixture
def shared(postgres, tmp_path):
    home_support.POSTGRES = postgres
    try:
        yield home_support.postgres_store(tmp_path / "shared", name=str(tmp_path))
    finally:
        home_support.POSTGRES = None


def poll_woken_ms(pki, poller_url: str, writer_url: str, pid: str) -> float:
    """A relay's long poll on one instance, ``pid`` revoked through the other: ms from
    the revocation's request to the poll's answer, which must name ``pid``."""
    relay, admin = as_(pki, "relay", "relay-1"), as_(pki, "admin", "admin")
    etag = relay.get(f"{poller_url}/v1/sync", timeout=5).headers["ETag"]
    answered: list = []

    def poll() -> None:
        resp = relay.get(
            f"{poller_url}/v1/sync",
            params={"wait": 20},
            headers={"If-None-Match": etag},
            timeout=30,
        )
        answered.append((resp, time.monotonic()))

    waiter = threading.Thread(target=poll)
    waiter.start()
    time.sleep(0.3)  # the poll is held
    started = time.monotonic()
    assert admin.post(f"{writer_url}/v1/participants/{pid}/revoke", timeout=5).ok
    waiter.join(25)
    [(resp, at)] = answered
    assert resp.status_code == 200 and pid in resp.json()["revoked_participants"]
    return (at - started) * 1000


def test_a_change_through_one_instance_wakes_polls_at_the_other(tmp_path, pki, shared):
    with (
        running_home(tmp_path / "home-1", pki, workers=2, store=shared) as one,
        running_home(tmp_path / "home-2", pki, workers=2, store=shared) as two,
    ):
        admin = as_(pki, "admin", "admin")
        pids = [f"p{n}" for n in range(10)]
        for pid in pids:  # created through both: every instance answers every call
            url = (one if int(pid[1:]) % 2 else two).url
            body = {"id": pid, "rooms": ["lobby"], "endpoint": f"https://{pid}.example/in"}
            assert admin.post(f"{url}/v1/participants", json=body, timeout=5).status_code == 201
        listed = admin.get(f"{two.url}/v1/participants", timeout=5).json()["participants"]
        assert sorted(p["id"] for p in listed) == pids
        assert admin.get(f"{one.url}/v1/jwks", timeout=5).json() == (
            admin.get(f"{two.url}/v1/jwks", timeout=5).json()
        )
        latencies = [poll_woken_ms(pki, two.url, one.url, pid) for pid in pids]
        median, worst = statistics.median(latencies), max(latencies)
        print(
            f"\nrevocation through home-1 answered a poll held by home-2: "
            f"median {median:.0f} ms, max {worst:.0f} ms over {len(pids)} (HTTP included)"
        )
        assert worst < 1000
