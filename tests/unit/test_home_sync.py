"""The sync document, its ETag, and the long poll (in one process; across gunicorn
workers in tests/integration/test_home_gunicorn.py)."""

from __future__ import annotations

import threading
import time

import pytest

from tests.support.home import home_under_test

# Each test runs on SQLite and on PostgreSQL (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("store_backend")


@pytest.fixture
def home(tmp_path, pki):
    home = home_under_test(tmp_path, pki)
    home.add("alice", ["lobby"])
    home.add("bob", ["lobby"])
    return home


def test_document_lists_what_relays_need(home):
    home.admin.post("/v1/participants/alice/suspend")
    home.admin.post("/v1/participants/bob/revoke")
    resp = home.relay().get("/v1/sync")
    doc = resp.json
    assert resp.headers["etag"] == f'"{doc["version"]}"'
    assert doc["suspended_participants"] == ["alice"]
    assert doc["revoked_participants"] == ["bob"]
    assert len(doc["jwks"]["keys"]) == 1
    # Only what relays read: the issuer they expect and their body limit are relay.toml's.
    assert set(doc) == {
        "version",
        "jwks",
        "revoked_participants",
        "suspended_participants",
        "revoked_tokens",
        "generated_at",
    }


def test_unchanged_returns_304_after_the_wait(home):
    etag = home.relay().get("/v1/sync").headers["etag"]
    started = time.monotonic()
    resp = home.relay().get("/v1/sync", params={"wait": "1"}, headers={"If-None-Match": etag})
    assert resp.status_code == 304 and resp.headers["etag"] == etag
    assert 0.9 <= time.monotonic() - started < 3


def test_stale_etag_answers_at_once(home):
    started = time.monotonic()
    resp = home.relay().get("/v1/sync", params={"wait": "20"}, headers={"If-None-Match": '"1"'})
    assert resp.status_code == 200 and time.monotonic() - started < 1


def test_wait_is_capped(tmp_path, pki):
    from dmr_appliance.config import HomeSync

    home = home_under_test(tmp_path, pki, sync=HomeSync(max_wait=1))
    etag = home.relay().get("/v1/sync").headers["etag"]
    started = time.monotonic()
    resp = home.relay().get("/v1/sync", params={"wait": "30"}, headers={"If-None-Match": etag})
    assert resp.status_code == 304 and time.monotonic() - started < 3


def test_change_wakes_a_waiting_poll(home):
    etag = home.relay().get("/v1/sync").headers["etag"]
    result = {}

    def poll():
        started = time.monotonic()
        result["resp"] = home.relay().get(
            "/v1/sync", params={"wait": "20"}, headers={"If-None-Match": etag}
        )
        result["waited"] = time.monotonic() - started

    waiter = threading.Thread(target=poll)
    waiter.start()
    time.sleep(0.5)
    assert "\ndmr_home_sync_waiters 1.0\n" in home.relay().get("/metrics").text
    revoked_at = time.monotonic()
    home.admin.post("/v1/participants/alice/revoke")
    waiter.join(10)
    assert result["resp"].status_code == 200
    assert "alice" in result["resp"].json["revoked_participants"]
    assert time.monotonic() - revoked_at < 1.0


def test_bad_wait_is_a_problem(home):
    resp = home.relay().get("/v1/sync", params={"wait": "soon"})
    assert resp.status_code == 400
    assert resp.headers["content-type"] == "application/problem+json"


def test_a_stopping_worker_answers_waiting_polls_at_once(home):
    """gunicorn's shutdown hooks release the waiters: a poll gets its 304 now, rather
    than holding the worker (and its exit) for the rest of its wait."""
    from dmr_appliance.home import sync as sync_mod

    etag = home.relay().get("/v1/sync").headers["etag"]
    results = []
    poll = threading.Thread(
        target=lambda: results.append(
            home.relay().get("/v1/sync", params={"wait": "20"}, headers={"If-None-Match": etag})
        )
    )
    poll.start()
    time.sleep(0.3)
    started = time.monotonic()
    sync_mod.release_waiters()
    poll.join(5)
    assert not poll.is_alive()
    assert time.monotonic() - started < 2
    assert results[0].status_code == 304
