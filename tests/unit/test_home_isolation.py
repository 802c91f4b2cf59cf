"""What one relay key holder cannot do to home (issue 22, items 3 and 7), in one process:
hold more long polls than its share, beat under more names than its bound, or keep a
gone instance listed and alerting. Under real gunicorn: tests/integration/
test_isolation_home.py."""

from __future__ import annotations

import dataclasses
import threading
import time

import pytest
from prometheus_client.parser import text_string_to_metric_families

from dmr_appliance.config import HomeConfig, HomeSync
from dmr_appliance.errors import DmrError
from dmr_appliance.home.polls import RETRY_AFTER, PollLimits
from tests.support.home import home_under_test

# Each test runs on SQLite and on PostgreSQL (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("store_backend")

PROBLEM = "application/problem+json"


def beat(instance: str) -> dict:
    return {"instance": instance, "address": "10.0.0.5:8801", "version": "0.1.0", "sync_version": 1}


def hold_polls(home, caller, count: int, etag: str) -> list[threading.Thread]:
    threads = [
        threading.Thread(
            target=lambda: caller.get(
                "/v1/sync", params={"wait": "3"}, headers={"If-None-Match": etag}
            )
        )
        for _ in range(count)
    ]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 5
    while f"dmr_home_sync_waiters {count}.0" not in caller.get("/metrics").text:
        assert time.monotonic() < deadline, "the polls did not start waiting"
        time.sleep(0.05)
    return threads


# --- long polls ------------------------------------------------------------------------


def test_polls_beyond_the_per_certificate_cap_are_refused_at_once(tmp_path, pki):
    home = home_under_test(tmp_path, pki, sync=HomeSync(max_polls=8, max_polls_per_caller=2))
    relay = home.relay("relay-1")
    etag = relay.get("/v1/sync").headers["etag"]
    held = hold_polls(home, relay, 2, etag)
    started = time.monotonic()
    resp = relay.get("/v1/sync", params={"wait": "3"}, headers={"If-None-Match": etag})
    assert time.monotonic() - started < 1
    assert resp.status_code == 429 and resp.headers["content-type"] == PROBLEM
    assert resp.json["type"] == "urn:dmr:problem:sync-polls-per-caller"
    assert resp.headers["retry-after"] == str(RETRY_AFTER)
    # Another certificate still waits; a poll that need not wait is answered.
    other = home.relay("relay-2")
    assert (
        other.get("/v1/sync", params={"wait": "1"}, headers={"If-None-Match": etag}).status_code
        == 304
    )
    assert relay.get("/v1/sync", params={"wait": "3"}).status_code == 200
    for thread in held:
        thread.join(10)
    assert (
        relay.get("/v1/sync", params={"wait": "1"}, headers={"If-None-Match": etag}).status_code
        == 304
    )


def test_polls_beyond_the_worker_cap_are_503(tmp_path, pki):
    home = home_under_test(tmp_path, pki, sync=HomeSync(max_polls=2, max_polls_per_caller=2))
    etag = home.relay("relay-1").get("/v1/sync").headers["etag"]
    held = hold_polls(home, home.relay("relay-1"), 2, etag)
    resp = home.relay("relay-2").get(
        "/v1/sync", params={"wait": "3"}, headers={"If-None-Match": etag}
    )
    assert resp.status_code == 503 and resp.json["type"] == "urn:dmr:problem:sync-polls-busy"
    assert resp.headers["retry-after"] == str(RETRY_AFTER)
    for thread in held:
        thread.join(10)


@pytest.mark.parametrize(
    ("threads", "total", "per_caller"), [(64, 48, 32), (16, 12, 12), (4, 3, 3), (1, 1, 1)]
)
def test_polls_never_hold_every_thread(threads, total, per_caller):
    limits = PollLimits.for_config(dataclasses.replace(HomeConfig(), threads=threads))
    assert (limits.total, limits.per_caller) == (total, per_caller)
    assert limits.total < threads or threads == 1


def test_caps_are_released_when_a_poll_ends():
    limits = PollLimits(2, 1)
    with limits.hold("relay relay-1"):
        with pytest.raises(DmrError, match="sync-polls-per-caller"), limits.hold("relay relay-1"):
            pass
        with limits.hold("relay relay-2"):
            assert limits.held() == 2
    assert limits.held() == 0 and limits.held("relay relay-1") == 0


# --- heartbeat members -----------------------------------------------------------------


@pytest.fixture
def home(tmp_path, pki):
    return home_under_test(tmp_path, pki)


def test_one_certificate_beats_under_at_most_32_names(home):
    relay = home.relay("relay-2")
    for n in range(32):
        assert relay.post("/v1/heartbeats", json=beat(f"relay-2.flood-{n:02}")).status_code == 200
    resp = relay.post("/v1/heartbeats", json=beat("relay-2.flood-32"))
    assert resp.status_code == 409 and resp.headers["content-type"] == PROBLEM
    assert resp.json["type"] == "urn:dmr:problem:instance-limit"
    assert "dmr instances forget" in resp.json["detail"]
    # The names it has keep beating; another certificate is not affected.
    assert relay.post("/v1/heartbeats", json=beat("relay-2.flood-00")).status_code == 200
    assert home.relay("relay-1").post("/v1/heartbeats", json=beat("relay-1")).status_code == 200
    assert len(home.admin.get("/v1/instances").json["instances"]) == 33


def test_a_down_member_makes_room_for_a_new_one(tmp_path, pki):
    from dmr_appliance.config import Heartbeats

    home = home_under_test(tmp_path, pki, heartbeats=Heartbeats(max_per_certificate=2))
    relay = home.relay("relay-1")
    for name in ("relay-1.a", "relay-1.b"):
        assert relay.post("/v1/heartbeats", json=beat(name)).status_code == 200
    assert relay.post("/v1/heartbeats", json=beat("relay-1.c")).status_code == 409
    with home.store.write() as conn:  # a is down (a rolled-out pod), b is only stale
        conn.execute("UPDATE instances SET last_beat = last_beat - 61 WHERE id = 'relay-1.a'")
        conn.execute("UPDATE instances SET last_beat = last_beat - 30 WHERE id = 'relay-1.b'")
    assert relay.post("/v1/heartbeats", json=beat("relay-1.c")).status_code == 200
    assert relay.post("/v1/heartbeats", json=beat("relay-1.d")).status_code == 409
    names = [i["instance"] for i in home.admin.get("/v1/instances").json["instances"]]
    assert names == ["relay-1.b", "relay-1.c"]


def test_an_admin_forgets_an_instance(home):
    home.relay("relay-1").post("/v1/heartbeats", json=beat("relay-1.gone"))
    home.relay("relay-1").post("/v1/heartbeats", json=beat("relay-1"))
    assert home.relay("relay-1").delete("/v1/instances/relay-1.gone").status_code == 403
    assert home.admin.delete("/v1/instances/relay-1.gone").status_code == 204
    assert [i["instance"] for i in home.admin.get("/v1/instances").json["instances"]] == ["relay-1"]
    resp = home.admin.delete("/v1/instances/relay-1.gone")
    assert resp.status_code == 404 and resp.headers["content-type"] == PROBLEM
    assert resp.json["type"] == "urn:dmr:problem:instance-not-found"
    with home.store.read() as conn:
        assert (
            conn.execute("SELECT count(*) FROM traffic WHERE instance = 'relay-1.gone'").fetchone()[
                0
            ]
            == 0
        )


def down_count(home) -> float:
    text = home.caller(None).get("/metrics").text
    return next(
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "dmr_home_instances" and s.labels["health"] == "down"
    )


def test_an_instance_down_past_forget_after_stops_counting(home):
    """The DmrRelayHeartbeatsStopped alert reads dmr_home_instances{health="down"}."""
    home.relay("relay-1").post("/v1/heartbeats", json=beat("relay-1.gone"))
    forget = home.config.heartbeats.forget_after
    with home.store.write() as conn:
        conn.execute("UPDATE instances SET last_beat = last_beat - ?", (forget - 5,))
    assert down_count(home) == 1
    with home.store.write() as conn:
        conn.execute("UPDATE instances SET last_beat = last_beat - 10")
    assert down_count(home) == 0
    assert home.admin.get("/v1/instances").json["instances"] == []
    assert "relay-1.gone" not in home.admin.get("/").text
    # The next beat of anyone drops the row itself.
    home.relay("relay-2").post("/v1/heartbeats", json=beat("relay-2"))
    with home.store.read() as conn:
        assert [r[0] for r in conn.execute("SELECT id FROM instances")] == ["relay-2"]
