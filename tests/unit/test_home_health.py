"""Operations endpoints, heartbeats and instances, the status page, the OpenAPI document."""

from __future__ import annotations

import json
import time
from pathlib import Path
from unittest import mock

import pytest
from prometheus_client.parser import text_string_to_metric_families

from dmr_appliance.config import Heartbeats
from dmr_appliance.home import instances, traffic
from tests.support.home import home_under_test

# Each test runs on SQLite and on PostgreSQL (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("store_backend")

OPENAPI = Path(__file__).parents[2] / "dmr_appliance/openapi/home.json"


@pytest.fixture
def home(tmp_path, pki):
    return home_under_test(tmp_path, pki)


def beat(**changes):
    return {
        "instance": "relay-1",
        "address": "10.0.0.5:8801",
        "version": "0.1.0",
        "sync_version": 3,
        "counters": {"delivered": 7},
        **changes,
    }


def test_health_and_ready(home):
    assert home.caller(None).get("/healthz").json == {"status": "ok"}
    ready = home.caller(None).get("/readyz")
    assert ready.status_code == 200 and ready.json["sync_version"] >= 1


def test_readyz_fails_when_the_store_is_gone(home):
    with home.store.write() as conn:
        conn.execute("DROP TABLE sync_state")
    resp = home.caller(None).get("/readyz")
    assert resp.status_code == 503
    assert resp.headers["content-type"] == "application/problem+json"


def test_openapi_served_is_the_file(home):
    resp = home.caller(None).get("/openapi.json")
    assert resp.status_code == 200 and resp.json == json.loads(OPENAPI.read_text())


def test_heartbeat_and_instances(home):
    resp = home.relay("relay-1").post("/v1/heartbeats", json=beat())
    assert resp.status_code == 200 and resp.json["sync_version"] == home.store.version()
    listed = home.admin.get("/v1/instances").json["instances"]
    assert [(i["instance"], i["health"], i["counters"]) for i in listed] == [
        ("relay-1", "healthy", {"delivered": 7})
    ]


def test_relay_beats_only_for_itself(home):
    resp = home.relay("relay-2").post("/v1/heartbeats", json=beat())
    assert resp.status_code == 403 and resp.json["type"] == "urn:dmr:problem:instance-mismatch"


def test_pool_members_beat_under_the_pool_certificate(home):
    for pod in ("relay-1.dmr-relay-7c9d-abcde", "relay-1.dmr-relay-7c9d-fghij"):
        resp = home.relay("relay-1").post("/v1/heartbeats", json=beat(instance=pod))
        assert resp.status_code == 200
    listed = {i["instance"] for i in home.admin.get("/v1/instances").json["instances"]}
    assert listed == {"relay-1.dmr-relay-7c9d-abcde", "relay-1.dmr-relay-7c9d-fghij"}


@pytest.mark.parametrize("instance", ["relay-1x", "relay-12", "relay-1.", "relay-2.relay-1"])
def test_a_pool_prefix_is_no_wildcard(home, instance):
    resp = home.relay("relay-1").post("/v1/heartbeats", json=beat(instance=instance))
    assert resp.status_code in (403, 422), instance


@pytest.mark.parametrize(
    "changes", [{"sync_version": -1}, {"counters": {"x": "1"}}, {"address": ""}, {"extra": 1}]
)
def test_invalid_heartbeats(home, changes):
    assert home.relay("relay-1").post("/v1/heartbeats", json=beat(**changes)).status_code == 422


def test_health_by_age():
    limits = Heartbeats(stale_after=15, down_after=60)
    assert [instances.health(a, limits) for a in (0, 14.9, 15, 59, 60)] == [
        "healthy",
        "healthy",
        "stale",
        "stale",
        "down",
    ]
    assert {instances.health(a, limits, left=True) for a in (0, 30, 600)} == {"left"}


def test_instances_age_into_stale_and_down(home):
    home.relay("relay-1").post("/v1/heartbeats", json=beat())
    with home.store.write() as conn:
        conn.execute("UPDATE instances SET last_beat = ?", (time.time() - 30,))
    assert home.admin.get("/v1/instances").json["instances"][0]["health"] == "stale"


def test_metrics_text(home):
    home.admin.post(
        "/v1/participants", json={"id": "alice", "endpoint": "https://a.example", "rooms": ["r"]}
    )
    resp = home.caller(None).get("/metrics")
    assert resp.headers["content-type"].startswith("text/plain; version=0.0.4")
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(resp.text)
        for s in family.samples
    }
    assert samples[("dmr_home_participants", (("status", "active"),))] == 1
    assert samples[("dmr_home_failures_open", ())] == 0
    assert samples[("dmr_home_sync_waiters", ())] == 0
    created = (("code", "201"), ("method", "POST"), ("route", "/v1/participants"))
    assert samples[("dmr_home_request_duration_seconds_count", created)] == 1
    inf = tuple(sorted((*created, ("le", "+Inf"))))
    assert samples[("dmr_home_request_duration_seconds_bucket", inf)] == 1
    assert {k for k in samples if k[0] == "dmr_home_instances"} == {
        ("dmr_home_instances", (("health", h),)) for h in ("healthy", "stale", "down", "left")
    }


def test_request_metrics_bound_their_labels(home):
    """A path no route takes, or a method a client made up, never becomes a label value."""
    home.caller(None).request("TRACE", "/no/such/path/" + "x" * 50)
    home.caller(None).get("/v1/participants/alice-is-not-a-route-label")
    text = home.caller(None).get("/metrics").text
    assert "alice-is-not-a-route-label" not in text and "TRACE" not in text and "xxxx" not in text
    samples = [
        s
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "dmr_home_request_duration_seconds_count"
    ]
    routes = {s.labels["route"] for s in samples}
    assert routes == {"unmatched", "/v1/participants/{pid}"}
    assert {s.labels["method"] for s in samples} == {"other", "GET"}


def test_status_page(home):
    home.relay("relay-1").post("/v1/heartbeats", json=beat())
    home.add("alice", ["lobby"])
    home.add("bob", ["lobby"])
    home.participant("alice").post(
        "/v1/failures",
        json={
            "message_id": "0190b4a2-1234-7000-8000-00000000abcd",
            "room": "lobby",
            "from": "alice",
            "to": ["bob"],
            "attempts": [{"target": "r", "at": "2026-01-01T00:00:00Z", "outcome": "failed"}],
            "envelope": {},
            "reported_at": "2026-01-01T00:00:00Z",
        },
    )
    resp = home.admin.get("/")
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/html")
    page = resp.text
    assert 'http-equiv="refresh"' in page and 'name="viewport"' in page
    assert "relay-1" in page and "healthy" in page
    assert 'href="v1/failures/0190b4a2-1234-7000-8000-00000000abcd?from=alice"' in page
    # The router serves this page under /home/: every link must be relative.
    assert 'href="/' not in page and "src=" not in page
    assert home.relay().get("/").status_code == 403


def test_status_page_charts_each_relays_minutes(home):
    """Totals since the relay started, per beat: the chart shows each minute's difference."""
    start = (time.time() // 60 - 3) * 60
    beats = [
        (start + 5, {"messages": 10, "delivered": 9, "failed": 1}),
        (start + 65, {"messages": 30, "delivered": 27, "rejected": 1, "failed": 2}),
        (start + 70, {"messages": 40, "delivered": 37, "rejected": 1, "failed": 2}),
        (start + 125, {"messages": 5, "delivered": 5}),
    ]  # restarted: from zero again
    for at, counters in beats:
        with mock.patch("time.time", return_value=at):
            home.relay("relay-1").post("/v1/heartbeats", json=beat(counters=counters))
    minutes = traffic.per_minute(home.store, "relay-1", start + 130)
    assert len(minutes) == 60 and minutes[-1].start == start + 120
    # the first minute counts from zero (the relay had just started), the restart too
    assert [m.counts["messages"] for m in minutes[-4:]] == [0, 10, 30, 5]
    assert minutes[-2].counts == {
        "messages": 30,
        "delivered": 28,
        "rejected": 1,
        "failed": 1,
        "refused": 0,
    }
    page = home.admin.get("/").text
    assert page.count("<svg") == 1 and page.count('class="delivered"') == 3
    assert "30 messages; 28 delivered, 1 rejected, 1 failed; 0 refused" in page
    assert "last hour: 45 messages" in page
