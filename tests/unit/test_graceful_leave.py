"""A relay that stops cleanly says so: its agent's last beat has ``"leaving": true`` and
home lists the instance as left, never stale or down, so a rollout or a planned stop
fires no alert; a crash still does, for ``heartbeats.forget_after`` (a day). Under real
gunicorn: tests/integration/test_relay_leave.py."""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from unittest import mock

import pytest
import urllib3
from prometheus_client.parser import text_string_to_metric_families

from dmr_appliance.config import Heartbeats
from dmr_appliance.home import instances
from dmr_appliance.home.store import Store
from dmr_appliance.relay import agent as agent_mod
from dmr_appliance.relay.agent import Agent
from dmr_appliance.relay.metrics import RelayMetrics
from tests.support.home import home_under_test, older_store
from tests.support.relay_kit import relay_config


def beat(instance: str = "relay-1", **changes) -> dict:
    return {"instance": instance, "address": "10.0.0.5:8801", "version": "0.1.0",
            "sync_version": 1, **changes}


@pytest.fixture
def home(tmp_path, pki):
    return home_under_test(tmp_path, pki)


def health_of(home) -> dict[str, str]:
    return {i["instance"]: i["health"] for i in home.admin.get("/v1/instances").json["instances"]}


def instance_gauge(home) -> dict[str, float]:
    text = home.caller(None).get("/metrics").text
    return {s.labels["health"]: s.value for family in text_string_to_metric_families(text)
            for s in family.samples if s.name == "dmr_home_instances"}


def age(home, seconds: float, name: str | None = None) -> None:
    with home.store.write() as conn:
        conn.execute("UPDATE instances SET last_beat = last_beat - ? WHERE ? IS NULL OR id = ?",
                     (seconds, name, name))


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


def test_migration_4_keeps_every_instance(tmp_path):
    path = tmp_path / "home.db"
    older_store(path, 3, [("INSERT INTO instances (id, address, version, sync_version, counters,"
                           " first_seen, last_beat, sync_age) VALUES ('relay-1', 'a', '0.1.0', 3,"
                           " '{}', ?, ?, NULL)", (time.time() - 5, time.time()))])
    [kept] = instances.listing(Store(path), Heartbeats())
    assert (kept["instance"], kept["sync_version"], kept["health"]) == ("relay-1", 3, "healthy")


# --- the relay's agent ------------------------------------------------------------------

def answering(status: int = 200, delay: float = 0.0) -> mock.Mock:
    def request(*args, **kwargs):
        time.sleep(delay)
        return mock.Mock(status=status, headers={}, data=b"{}")
    return mock.Mock(request=mock.Mock(side_effect=request))


@pytest.fixture
def agent(tmp_path, pki):
    return Agent(relay_config(pki, tmp_path / "relay", instance="relay-1.pod",
                              home_failover=["https://router-2.example/v1/home"]), RelayMetrics())


def test_the_agent_leaves_with_one_last_beat_then_beats_no_more(agent, caplog):
    caplog.set_level(logging.INFO, logger="dmr.relay.agent")
    agent.http = answering()
    assert agent.leave() is True
    [call] = agent.http.request.call_args_list
    sent = json.loads(call.kwargs["body"])
    assert sent["leaving"] is True and sent["instance"] == "relay-1.pod"
    assert call.kwargs["timeout"].total <= agent_mod.LEAVE_BUDGET
    assert "agent-left" in [r.getMessage() for r in caplog.records]
    assert agent.heartbeat() is None and agent.http.request.call_count == 1
    assert "leaving" not in agent.beat_body()


def test_leaving_gives_up_within_its_budget_across_home_urls(agent, caplog):
    def request(method, url, **kwargs):  # every router hangs until the timeout
        time.sleep(kwargs["timeout"].total)
        raise urllib3.exceptions.ReadTimeoutError(None, url, "read timed out")
    agent.http = mock.Mock(request=mock.Mock(side_effect=request))
    started = time.monotonic()
    assert agent.leave() is False
    assert time.monotonic() - started < agent_mod.LEAVE_BUDGET + 0.3
    assert {r.getMessage() for r in caplog.records} >= {"agent-leave-failed"}


def test_a_beat_in_flight_goes_first_and_no_beat_follows_the_last(agent):
    agent.http = answering(delay=0.5)
    beating = threading.Thread(target=agent.heartbeat)
    beating.start()
    time.sleep(0.1)
    assert agent.leave() is True
    beating.join()
    bodies = [c.kwargs["body"] for c in agent.http.request.call_args_list]
    assert len(bodies) == 2 and b'"leaving": true' in bodies[-1]
    assert agent.heartbeat() is None


def test_a_beat_in_flight_too_long_does_not_hold_up_the_stop(agent):
    agent.http = answering()
    with agent.beating:  # a beat stuck on a slow home
        started = time.monotonic()
        assert agent.leave() is False
    assert time.monotonic() - started < agent_mod.LEAVE_BUDGET + 0.3
    assert agent.http.request.call_count == 0


@pytest.mark.parametrize(("orphaned", "leaves"), [(False, True), (True, False)])
def test_the_agent_leaves_when_told_to_stop_not_when_its_master_died(agent, orphaned, leaves):
    agent.sync_forever = agent.heartbeat_forever = lambda: None
    agent.leave = mock.Mock(return_value=True)
    if not orphaned:
        agent.stopping.set()  # SIGTERM: the handler sets it
    agent.run(-1 if orphaned else os.getppid())  # -1: not the parent, as if it died
    assert agent.leave.called is leaves
