"""The relay's sync agent on the one home client, against real HTTPS servers on loopback
that hold a router's certificate: its leaving beat (within LEAVE_BUDGET, none after it),
how long it waits when home asks, and whom it takes for home. Against a real home under
gunicorn: tests/integration/test_relay_agent.py, test_isolation_agent.py,
test_relay_leave.py."""

from __future__ import annotations

import json
import logging
import os
import threading
import time

import pytest

from dmr_appliance.relay import agent as agent_mod
from dmr_appliance.relay.agent import SYNC_RETRY, Agent
from dmr_appliance.relay.home_peer import Refused
from dmr_appliance.relay.metrics import RelayMetrics
from dmr_appliance.wire.home import HomeRefused
from tests.support.answering import Answer, AnsweringServer
from tests.support.relay_kit import relay_config


def serving(pki, kind: str = "router", name: str = "router") -> AnsweringServer:
    return AnsweringServer(tls=(pki.cert(kind, name), pki.key(kind, name), pki.ca))


@pytest.fixture
def router(pki):
    with serving(pki) as server:
        yield server


@pytest.fixture
def router_2(pki):
    with serving(pki, name="router-2") as server:
        yield server


def agent_for(pki, tmp_path, *urls: str) -> Agent:
    return Agent(
        relay_config(
            pki,
            tmp_path / "relay",
            instance="relay-1.pod",
            home_url=urls[0],
            home_failover=list(urls[1:]),
        ),
        RelayMetrics(),
    )


def beats(server: AnsweringServer) -> list[dict]:
    return [json.loads(r.body) for r in server.seen if r.path == "/v1/heartbeats"]


# --- leaving ----------------------------------------------------------------------------


def test_the_agent_leaves_with_one_last_beat_then_beats_no_more(pki, tmp_path, router, caplog):
    caplog.set_level(logging.INFO, logger="dmr.relay.agent")
    agent = agent_for(pki, tmp_path, router.url)
    assert "leaving" not in agent.heartbeat()
    assert agent.leave() is True
    assert agent.heartbeat() is None
    normal, last = beats(router)
    assert "leaving" not in normal and last["leaving"] is True
    assert last["instance"] == "relay-1.pod"
    assert "agent-left" in [r.getMessage() for r in caplog.records]


def test_leaving_gives_up_within_its_budget_across_home_urls(
    pki, tmp_path, router, router_2, caplog
):
    router.answer = router_2.answer = Answer(delay=agent_mod.LEAVE_BUDGET + 2)  # both hang
    agent = agent_for(pki, tmp_path, router.url, router_2.url)
    started = time.monotonic()
    assert agent.leave() is False
    assert time.monotonic() - started < agent_mod.LEAVE_BUDGET + 0.3
    assert "agent-leave-failed" in {r.getMessage() for r in caplog.records}


def test_a_beat_in_flight_goes_first_and_no_beat_follows_the_last(pki, tmp_path, router):
    router.answer = Answer(delay=0.5)
    agent = agent_for(pki, tmp_path, router.url)
    beating = threading.Thread(target=agent.heartbeat)
    beating.start()
    time.sleep(0.1)
    assert agent.leave() is True
    beating.join()
    assert [b.get("leaving") for b in beats(router)] == [None, True]
    assert agent.heartbeat() is None


def test_a_beat_in_flight_too_long_does_not_hold_up_the_stop(pki, tmp_path, router):
    agent = agent_for(pki, tmp_path, router.url)
    with agent.beating:  # a beat stuck on a slow home
        started = time.monotonic()
        assert agent.leave() is False
    assert time.monotonic() - started < agent_mod.LEAVE_BUDGET + 0.3
    assert router.seen == []


@pytest.mark.parametrize("orphaned", [False, True])
def test_the_agent_leaves_when_told_to_stop_not_when_its_master_died(
    pki, tmp_path, router, orphaned
):
    agent = agent_for(pki, tmp_path, router.url)
    if not orphaned:
        agent.stopping.set()  # SIGTERM: the handler sets it
    agent.run(-1 if orphaned else os.getppid())  # -1: not the parent, as if it died
    assert any(b.get("leaving") for b in beats(router)) is not orphaned


# --- when home asks to wait -------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "retry_after", "at_least"),
    [
        (429, "5", 5.0),
        (503, "7", 7.0),
        (503, None, 0.0),
        (429, "Wed, 21 Oct 2015 07:28:00 GMT", 0.0),
        (429, "9999", 60.0),
    ],
)
def test_the_agent_waits_as_long_as_home_asks(pki, tmp_path, router, status, retry_after, at_least):
    router.answer = Answer(status, b"", {"Retry-After": retry_after} if retry_after else {})
    agent = agent_for(pki, tmp_path, router.url)
    with pytest.raises(HomeRefused) as caught:
        agent.poll_once()
    assert caught.value.status == status
    waits = []

    def wait(delay):  # one backoff, then stop
        waits.append(delay)
        agent.stopping.set()

    agent.stopping.wait = wait
    agent.sync_forever()
    assert len(router.seen) == 2
    assert at_least <= waits[0] <= max(at_least, SYNC_RETRY.ceiling(1))  # capped at a minute


# --- whom it takes for home -------------------------------------------------------------


def test_a_peer_that_is_not_home_is_hung_up_on_before_a_request(pki, tmp_path, router):
    with serving(pki, "server", "recipient") as impostor:
        agent = agent_for(pki, tmp_path, impostor.url)
        with pytest.raises(Refused, match="neither a router's nor home's"):
            agent.heartbeat()
        assert impostor.seen == []
        # Before a router that answers: the same call goes on to it.
        agent = agent_for(pki, tmp_path, impostor.url, router.url)
        assert agent.heartbeat()["instance"] == "relay-1.pod"
        assert agent.home == router.url and impostor.seen == []
    assert (
        agent.meters.registry.get_sample_value(
            "dmr_relay_sync_refused_total", {"reason": "not-home"}
        )
        == 1
    )


def test_the_agents_context_trusts_only_the_deployment_ca(pki, tmp_path, router):
    # requests loads its own bundle (certifi) into a context it is given: not this one.
    agent = agent_for(pki, tmp_path, router.url)
    agent.heartbeat()
    context = agent.home_client.session.get_adapter(router.url).context
    assert context.cert_store_stats()["x509_ca"] == 1
