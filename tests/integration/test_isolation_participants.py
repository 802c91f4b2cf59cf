"""Hostile, through the real stack (home, a relay, nginx, recipients over TLS): one
participant cannot use a message id or a failure report against another (issue 22,
items 1 and 2).

bob and alice share the room ``ops`` with hank, a recipient this test scripts (down: 503).
erin is in ``attic`` only. Home caps each participant at MAX_OPEN open failure reports.
"""

from __future__ import annotations

import time

import pytest

from dmr_appliance.client.resend import retry_failed
from dmr_appliance.envelope import new_message_id
from dmr_appliance.errors import DmrError
from dmr_appliance.wire.retry import RetryPolicy
from tests.support.recipient import received
from tests.support.stack_kit import registered_recipient, sender

ROOM = "ops"
FAST = RetryPolicy(attempts=2, base_delay=0.05, max_delay=0.1)
MAX_OPEN = 30
pytestmark = [
    pytest.mark.slow,
    pytest.mark.needs_nginx,
    pytest.mark.stack(
        relays=1,
        rooms={ROOM: ("alice", "bob"), "attic": ("erin",)},
        env={"DMR_FAILURES_MAX_OPEN": str(MAX_OPEN)},
    ),
]  # home reads it at start


@pytest.fixture(scope="module")
def hank(stack, tmp_path_factory):
    log = tmp_path_factory.mktemp("hank") / "deliveries.jsonl"
    with registered_recipient(stack, "hank", ROOM, log) as server:
        yield server


def hanks(hank, mid: str) -> list[tuple[str, int, bool]]:
    return [
        (r["from"], r["status"], r["duplicate"]) for r in received(hank.log_path) if r["id"] == mid
    ]


def bobs_report(mid: str, **changes) -> dict:
    doc = {
        "message_id": mid,
        "room": ROOM,
        "from": "bob",
        "to": ["alice"],
        "attempts": [
            {
                "target": "https://router:8443",
                "at": "2026-01-01T00:00:00Z",
                "outcome": "failed",
                "status": 503,
            }
        ],
        "envelope": {"id": mid, "payload": "fabricated"},
        "reported_at": "2026-01-01T00:00:01Z",
    }
    return {**doc, **changes}


def refusal(call) -> DmrError:
    with pytest.raises(DmrError) as caught:
        call()
    return caught.value


def test_an_id_alice_reuses_does_not_swallow_bobs_retry(stack, hank):
    hank.status = 503  # hank is down: bob's X fails and is reported
    with sender(stack, name="bob", policy=FAST) as bob:
        failed = bob.send(ROOM, ["hank"], {"from": "bob"})
        assert failed.failed == ["hank"] and failed.reported, failed.report_error
        x = failed.message_id
        hank.status = 200
        with sender(stack, name="alice", policy=FAST) as alice:  # a co-recipient saw X
            assert alice.send(ROOM, ["hank"], {"from": "alice"}, message_id=x).ok
        (retried,) = retry_failed(bob)
    assert retried.ok and retried.resolved and retried.message_id == x
    assert hanks(hank, x)[-2:] == [("alice", 200, False), ("bob", 200, False)]


def test_bobs_report_of_alices_id_blocks_nothing(stack, hank):
    m = new_message_id()
    with sender(stack, name="bob", policy=FAST) as bob:  # bob files "his" M first
        assert bob.home.report_failure(bobs_report(m))["from"] == "bob"
    hank.status = 503
    with sender(stack, name="alice", policy=FAST) as alice:
        failed = alice.send(ROOM, ["hank"], {"n": 1}, message_id=m)
        assert failed.reported, failed.report_error  # was 409 failure-mismatch
        mine = alice.home.list_failures(status="open")
        assert [f["message_id"] for f in mine] == [m] and mine[0]["to"] == ["hank"]
        hank.status = 200
        (retried,) = retry_failed(alice)
    assert retried.ok and retried.resolved
    assert hanks(hank, m)[-1] == ("alice", 200, False)
    admin = stack.admin_client()
    assert admin.get_failure(m, "bob")["status"] == "open"  # bob's own stays his
    assert refusal(lambda: admin.get_failure(m)).code == "failure-ambiguous"


def test_reports_outside_the_reporters_rooms_are_refused(stack, hank):
    with sender(stack, name="bob", policy=FAST) as bob:
        home = bob.home
        other_room = refusal(
            lambda: home.report_failure(bobs_report(new_message_id(), room="attic", to=["erin"]))
        )
        stranger = refusal(lambda: home.report_failure(bobs_report(new_message_id(), to=["erin"])))
    assert (other_room.status, other_room.code) == (403, "not-in-room")
    assert (stranger.status, stranger.code) == (403, "recipient-not-in-room")


def test_an_oversize_envelope_is_refused(stack, hank):
    with sender(stack, name="alice", policy=FAST) as alice:
        big = bobs_report(
            new_message_id(),
            **{"from": "alice", "to": ["bob"]},
            envelope={"payload": "x" * 200_000},
        )  # 250 kB was accepted
        refused = refusal(lambda: alice.home.report_failure(big))
    assert (refused.status, refused.code) == (413, "failure-too-large")


def test_bobs_flood_neither_hides_alices_failure_nor_passes_his_cap(stack, hank):
    hank.status = 503
    with sender(stack, name="alice", policy=FAST) as alice:
        genuine = alice.send(ROOM, ["hank"], {"n": 2})
    hank.status = 200
    assert genuine.reported, genuine.report_error
    answers = []
    with sender(stack, name="bob", policy=FAST) as bob:
        for _ in range(60):
            time.sleep(0.07)  # under the router's per-certificate rate for home
            try:
                answers.append(bob.home.report_failure(bobs_report(new_message_id()))["from"])
            except DmrError as exc:
                answers.append(f"{exc.status} {exc.code}")
    assert "429 failure-quota" in answers and set(answers) == {"bob", "429 failure-quota"}
    counts = {c["from"]: c["open"] for c in stack.admin_client().failure_counts()}
    assert counts["bob"] == MAX_OPEN and counts["alice"] >= 1
    page = stack.session().get(stack.status_url, timeout=10)
    assert page.status_code == 200
    assert f"v1/failures/{genuine.message_id}?from=alice" in page.text
    assert f"bob: <b>{MAX_OPEN}</b>" in page.text
    linked = stack.session().get(
        f"{stack.status_url}v1/failures/{genuine.message_id}", params={"from": "alice"}, timeout=10
    )  # the page's link
    assert linked.status_code == 200 and linked.json()["from"] == "alice"
