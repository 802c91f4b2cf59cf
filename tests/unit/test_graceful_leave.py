"""A relay that stops cleanly says so: its agent's last beat has ``"leaving": true`` and
home lists the instance as left, never stale or down, so a rollout or a planned stop
fires no alert; a crash still does, for ``heartbeats.forget_after`` (a day). The agent's
side: tests/unit/test_agent.py; under real gunicorn: tests/integration/test_relay_leave.py."""

from __future__ import annotations

import time

import pytest
from prometheus_client.parser import text_string_to_metric_families

from dmr_appliance.config import Heartbeats
from dmr_appliance.home import instances
from dmr_appliance.home.store import Store
from tests.support.home import home_under_test, older_store

# Each test runs on SQLite and on PostgreSQL (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("store_backend")


def beat(instance: str = "relay-1", **changes) -> dict:
    return {
        "instance": instance,
        "address": "10.0.0.5:8801",
        "version": "0.1.0",
        "sync_version": 1,
        **changes,
    }


@pytest.fixture
def home(tmp_path, pki):
    return home_under_test(tmp_path, pki)


def health_of(home) -> dict[str, str]:
    return {i["instance"]: i["health"] for i in home.admin.get("/v1/instances").json["instances"]}


def instance_gauge(home) -> dict[str, float]:
    text = home.caller(None).get("/metrics").text
    return {
        s.labels["health"]: s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "dmr_home_instances"
    }


def age(home, seconds: float, name: str | None = None) -> None:
    with home.store.write() as conn:
        conn.execute(
            "UPDATE instances SET last_beat = last_beat - ?"
            " WHERE CAST(? AS TEXT) IS NULL OR id = ?",
            (seconds, name, name),
        )


# --- home -------------------------------------------------------------------------------


def test_a_leaving_beat_makes_the_instance_left_whatever_its_age(home):
    relay = home.relay("relay-1")
    for name in ("relay-1.stopped", "relay-1.crashed"):
        assert relay.post("/v1/heartbeats", json=beat(name)).status_code == 200
    resp = relay.post("/v1/heartbeats", json=beat("relay-1.stopped", leaving=True))
    assert resp.status_code == 200 and resp.json["instance"] == "relay-1.stopped"
    assert health_of(home) == {"relay-1.stopped": "left", "relay-1.crashed": "healthy"}
    age(home, 120)  # both past down_after (60 s)
    assert health_of(home) == {"relay-1.stopped": "left", "relay-1.crashed": "down"}
    # The alerts read down and stale: the one that left is in neither.
    assert instance_gauge(home) == {"healthy": 0, "stale": 0, "down": 1, "left": 1}
    page = home.admin.get("/").text
    assert '<td class="left">left</td>' in page and '<td class="down">down</td>' in page


def test_a_normal_beat_after_leaving_is_a_restart(home):
    relay = home.relay("relay-1")
    relay.post("/v1/heartbeats", json=beat())
    relay.post("/v1/heartbeats", json=beat(leaving=True))
    assert health_of(home) == {"relay-1": "left"}
    assert relay.post("/v1/heartbeats", json=beat(leaving=False)).status_code == 200
    assert health_of(home) == {"relay-1": "healthy"}
    age(home, 30)
    assert health_of(home) == {"relay-1": "stale"}  # by its age again


@pytest.mark.parametrize("leaving", ["yes", 1, 0, None, {}])
def test_leaving_is_a_boolean(home, leaving):
    resp = home.relay("relay-1").post("/v1/heartbeats", json=beat(leaving=leaving))
    assert resp.status_code == 422 and "leaving must be a boolean" in resp.json["detail"]


def test_a_leaving_beat_of_an_unknown_instance_is_ignored(home):
    """Nothing to mark left, and no name made up this way (it would escape the bound)."""
    resp = home.relay("relay-1").post("/v1/heartbeats", json=beat("relay-1.never", leaving=True))
    assert resp.status_code == 200
    assert health_of(home) == {}


def test_a_member_that_left_makes_room_for_a_new_one(tmp_path, pki):
    home = home_under_test(tmp_path, pki, heartbeats=Heartbeats(max_per_certificate=2))
    relay = home.relay("relay-1")
    for name in ("relay-1.a", "relay-1.b"):
        assert relay.post("/v1/heartbeats", json=beat(name)).status_code == 200
    age(home, 30, "relay-1.a")  # silent longest, but only stale
    assert relay.post("/v1/heartbeats", json=beat("relay-1.c")).status_code == 409
    relay.post("/v1/heartbeats", json=beat("relay-1.b", leaving=True))  # a rollout's old pod
    assert relay.post("/v1/heartbeats", json=beat("relay-1.c")).status_code == 200
    assert health_of(home) == {"relay-1.a": "stale", "relay-1.c": "healthy"}
    assert relay.post("/v1/heartbeats", json=beat("relay-1.d")).status_code == 409


def test_an_instance_that_left_is_forgotten_after_forget_after(home):
    home.relay("relay-1").post("/v1/heartbeats", json=beat("relay-1.gone"))
    home.relay("relay-1").post("/v1/heartbeats", json=beat("relay-1.gone", leaving=True))
    age(home, home.config.heartbeats.forget_after + 1)
    assert health_of(home) == {} and instance_gauge(home)["left"] == 0


def test_a_crashed_relay_alerts_for_a_day(home):
    assert Heartbeats().forget_after == 86400
    home.relay("relay-1").post("/v1/heartbeats", json=beat())
    age(home, 3600)  # long past the old 600 s
    assert instance_gauge(home)["down"] == 1
    age(home, 86400 - 3600 + 1)
    assert instance_gauge(home)["down"] == 0


@pytest.mark.sqlite_only
def test_migration_4_keeps_every_instance(tmp_path):
    path = tmp_path / "home.db"
    older_store(
        path,
        3,
        [
            (
                "INSERT INTO instances (id, address, version, sync_version, counters,"
                " first_seen, last_beat, sync_age) VALUES ('relay-1', 'a', '0.1.0', 3,"
                " '{}', ?, ?, NULL)",
                (time.time() - 5, time.time()),
            )
        ],
    )
    [kept] = instances.listing(Store(path), Heartbeats())
    assert (kept["instance"], kept["sync_version"], kept["health"]) == ("relay-1", 3, "healthy")
