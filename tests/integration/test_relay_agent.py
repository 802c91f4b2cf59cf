"""The sync agent against a real home under gunicorn: it saves home's document, its long
poll wakes on a change, and home accepts its heartbeats with the instance's counters.

No router here: the agent connects to home's gate itself, with its relay certificate,
which is exactly what home then sees it as."""

from __future__ import annotations

import dataclasses
import threading
import time

import pytest

from dmr_appliance.errors import DmrError
from dmr_appliance.local.processes import free_port
from dmr_appliance.relay.agent import Agent
from dmr_appliance.relay.metrics import RelayMetrics
from dmr_appliance.relay.sync_state import SYNC_FILE, Snapshot
from tests.support.home import router_session, running_home
from tests.support.identity import forwarded
from tests.support.relay_kit import relay_config

# Each test runs on SQLite and on PostgreSQL (tests/conftest.py).
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("store_backend")]


def test_agent_syncs_and_beats_against_home(pki, tmp_path):
    with running_home(tmp_path / "home", pki, workers=1) as home:
        admin = router_session(pki, forwarded(pki, "admin", "admin"))
        cfg = relay_config(pki, tmp_path / "relay", home_url=f"{home.url}/v1")
        cfg = dataclasses.replace(cfg, sync=dataclasses.replace(cfg.sync, poll_wait=5))
        meters = RelayMetrics()
        meters.messages.labels("delivered").inc()
        meters.messages.labels("failed").inc(2)
        meters.deliveries.labels("delivered").inc(2)
        meters.deliveries.labels("failed").inc()
        meters.refusals.labels("token-expired").inc()
        agent = Agent(cfg, meters)
        assert agent.heartbeat().get("sync_age") is None  # never heard from home yet

        assert agent.poll_once() is True
        saved = Snapshot.parse((tmp_path / "relay" / SYNC_FILE).read_bytes())
        assert saved.version == agent.version and len(saved.keys) >= 1

        # A change at home ends the waiting long poll well before its 5 s.
        def change() -> None:
            time.sleep(0.5)
            admin.post(
                f"{home.url}/v1/participants",
                timeout=5,
                json={
                    "id": "dave",
                    "endpoint": "https://127.0.0.1:1/dave",
                    "rooms": ["ops"],
                },
            ).raise_for_status()
            admin.post(f"{home.url}/v1/participants/dave/suspend", timeout=5).raise_for_status()

        def saved_now() -> Snapshot:
            return Snapshot.parse((tmp_path / "relay" / SYNC_FILE).read_bytes())

        changer = threading.Thread(target=change)
        started = time.monotonic()
        changer.start()
        while "dave" not in saved_now().suspended:
            agent.poll_once()
            assert time.monotonic() - started < 4, "the long poll did not wake on a change"
        changer.join()
        assert saved_now().version > saved.version

        beat = agent.heartbeat()
        assert beat["sync_version"] == agent.version
        [instance] = admin.get(f"{home.url}/v1/instances", timeout=5).json()["instances"]
        assert instance["instance"] == "relay-1" and instance["health"] == "healthy"
        assert instance["sync_version"] == agent.version
        assert instance["counters"] == {
            "messages": 3,
            "delivered": 2,
            "rejected": 0,
            "failed": 1,
            "refused": 1,
        }
        assert 0 <= beat["sync_age"] < 5 and instance["sync_age"] == beat["sync_age"]
        confirmed = meters.registry.get_sample_value("dmr_relay_sync_confirmed_timestamp_seconds")
        assert time.time() - 5 < confirmed <= time.time()


def test_agent_fails_over_to_the_next_home_url_at_once(pki, tmp_path):
    # home_url names a router that is down (nothing listens): the same poll and the same
    # heartbeat go on to home_failover without waiting for a backoff, and stay there.
    dead = f"https://127.0.0.1:{free_port()}/v1/home"
    with running_home(tmp_path / "home", pki, workers=1) as home:
        admin = router_session(pki, forwarded(pki, "admin", "admin"))
        cfg = relay_config(pki, tmp_path / "relay", home_url=dead, home_failover=[f"{home.url}/v1"])
        cfg = dataclasses.replace(cfg, sync=dataclasses.replace(cfg.sync, poll_wait=1))
        agent = Agent(cfg, RelayMetrics())

        started = time.monotonic()
        assert agent.poll_once() is True
        assert agent.home == f"{home.url}/v1"
        agent.heartbeat()
        assert time.monotonic() - started < 3  # one refused connect, no backoff sleep
        [instance] = admin.get(f"{home.url}/v1/instances", timeout=5).json()["instances"]
        assert instance["sync_version"] == agent.version

    # home is gone now: both URLs fail, the error names both, and the agent keeps the URL
    # that answered last as the first to try.
    with pytest.raises(DmrError, match="home-unreachable") as caught:
        agent.poll_once()
    assert dead in caught.value.detail
    assert agent.homes.index == 1
