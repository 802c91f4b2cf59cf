"""Home is not in the real-time path: with home stopped, relays keep delivering on their
last sync document; once home is back, their heartbeats resume (issue 4)."""

from __future__ import annotations

import time

import pytest

from dmr_appliance.local.stack import Stack
from tests.support.recipient import received
from tests.support.stack_kit import ensure_participant, sender

pytestmark = [pytest.mark.slow, pytest.mark.needs_nginx, pytest.mark.once]

ROOM = "outage"


def beats_after(stack: Stack, moment: float, timeout: float = 30.0) -> dict[str, dict]:
    """Every relay's instance entry once home has heard from all of them after ``moment``."""
    admin = stack.admin_client()
    deadline = time.monotonic() + timeout
    while True:
        instances = {i["instance"]: i for i in admin.list_instances()}
        fresh = {
            name: i
            for name, i in instances.items()
            if i["health"] == "healthy" and i["age_seconds"] < time.time() - moment
        }
        if set(fresh) >= set(stack.relay_names) or time.monotonic() > deadline:
            return fresh
        time.sleep(0.5)


def test_relays_deliver_while_home_is_down_and_beat_again_after(tmp_path):
    with Stack(tmp_path / "state", relays=2, port=0) as stack:
        ensure_participant(stack, "alice", stack.endpoint("alice"), [ROOM])
        ensure_participant(stack, "bob", stack.endpoint("bob"), [ROOM])
        alice = sender(stack)
        before = alice.send(ROOM, ["bob"], {"n": "before"})  # token and card now cached
        assert before.ok, before

        stack.stop_service("home")
        during = [alice.send(ROOM, ["bob"], {"n": n}) for n in range(5)]
        assert all(r.ok for r in during), [r for r in during if not r.ok]
        delivered = {record["id"] for record in received(stack.recipient_log)}
        assert {r.message_id for r in during} <= delivered

        restarted = time.time()
        stack.start_service("home")
        fresh = beats_after(stack, restarted)
        assert set(fresh) == set(stack.relay_names), fresh
