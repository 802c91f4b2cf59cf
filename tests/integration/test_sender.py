"""The Sender against the real local stack: home, two relays, nginx, recipients over TLS.

Recipients: bob is the stack's demo recipient (a process); carol answers from this test
process what each test scripts (503 once, 404, ...). Retries, failover, failure reports,
token renewal, expiry and Retry-After are shown on the wire, not on a stand-in.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from pathlib import Path

import jwt
import pytest

from dmr_appliance.envelope import new_message_id
from dmr_appliance.errors import DmrError
from dmr_appliance.local.stack import Stack
from dmr_appliance.wire.retry import RetryPolicy
from tests.support.recipient import received
from tests.support.stack_kit import (
    dead_router,
    dmr_send,
    ensure_participant,
    extra_router,
    failure_at_home,
    registered_recipient,
    sender,
)

ROOM = "ops"
pytestmark = [
    pytest.mark.slow,
    pytest.mark.needs_nginx,
    pytest.mark.stack(relays=2, rooms={ROOM: ("alice", "bob")}),
]

FAST = RetryPolicy(attempts=3, base_delay=0.05, max_delay=0.2)


@pytest.fixture(scope="module")
def carol_server(stack, tmp_path_factory):
    log = tmp_path_factory.mktemp("carol") / "deliveries.jsonl"
    with registered_recipient(stack, "carol", ROOM, log) as server:
        yield server


@pytest.fixture
def carol(carol_server):
    carol_server.status = 200
    yield carol_server
    carol_server.status = 200


def records(path: Path, message_id: str, pid: str | None = None) -> list[dict]:
    return [
        r
        for r in received(path)
        if r["id"] == message_id and (pid is None or r["path"].endswith(f"/{pid}"))
    ]


def test_delivers_to_every_recipient_once(stack, carol):
    with sender(stack, policy=FAST) as s:
        result = s.send(ROOM, ["bob", "carol"], {"n": 1})
    assert result.ok and result.delivered == ["bob", "carol"]
    assert [a.status for a in result.attempts] == [200]
    (bob,) = records(stack.recipient_log, result.message_id)
    (seen,) = records(carol.log_path, result.message_id)
    assert not bob["duplicate"] and not seen["duplicate"]
    assert bob["from"] == "alice" and bob["path"] == "/inbox/bob"


def test_two_recipients_on_one_server_are_not_each_others_duplicates(stack):
    ensure_participant(stack, "dave", stack.endpoint("dave"), [ROOM])
    with sender(stack, policy=FAST) as s:
        result = s.send(ROOM, ["bob", "dave"], {"n": 2})
    assert result.ok
    found = records(stack.recipient_log, result.message_id)
    assert sorted(r["path"] for r in found) == ["/inbox/bob", "/inbox/dave"]
    assert not any(r["duplicate"] for r in found)


def test_retry_carries_only_the_recipients_not_yet_delivered(stack, carol):
    carol.script(503)  # fails once, then works
    with sender(stack, policy=FAST) as s:
        result = s.send(ROOM, ["bob", "carol"], {"n": 3})
    assert result.ok
    assert [a.recipients for a in result.attempts] == [("bob", "carol"), ("carol",)]
    assert [a.status for a in result.attempts] == [502, 200]
    assert len(records(stack.recipient_log, result.message_id)) == 1  # bob: once
    first, second = records(carol.log_path, result.message_id)
    assert (first["status"], second["status"]) == (503, 200)
    # The same envelope both times: same id, same created_at and expires_at.
    assert (first["created_at"], first["expires_at"]) == (
        second["created_at"],
        second["expires_at"],
    )
    assert result.recipients["carol"].attempts == 2 and result.recipients["bob"].attempts == 1


def test_permanent_refusal_is_never_retried_nor_reported(stack, carol):
    carol.status = 404
    called = []
    with sender(stack, policy=FAST, on_failure=called.append) as s:
        result = s.send(ROOM, ["bob", "carol"], {"n": 4})
    assert result.delivered == ["bob"] and result.rejected == ["carol"]
    assert result.recipients["carol"].status == 404
    assert len(result.attempts) == 1 and len(records(carol.log_path, result.message_id)) == 1
    assert called == [] and failure_at_home(stack, result.message_id) is None


def test_fails_over_to_the_next_router(stack, caplog):
    caplog.set_level(logging.INFO, logger="dmr.sender")
    with sender(stack, [dead_router(), stack.router_url], policy=FAST) as s:
        result = s.send(ROOM, ["bob"], {"n": 5})
    assert result.ok
    assert [a.status for a in result.attempts] == [None, None, None, 200]
    assert result.attempts[-1].target == stack.router_url
    events = [
        r.getMessage()
        for r in caplog.records
        if getattr(r, "dmr_fields", {}).get("message_id") == result.message_id
    ]
    assert events.count("send.attempt") == 4 and events.count("send.retry") == 2
    assert events.count("send.failover") == 1 and "send.done" in events


def test_every_router_spent_is_reported_once_and_on_failure_called_once(stack):
    called = []
    routers = [dead_router(), dead_router()]
    with sender(stack, routers, policy=FAST, on_failure=called.append) as s:
        result = s.send(ROOM, ["bob"], {"n": 6})
    assert result.failed == ["bob"] and result.reported and not result.spooled
    assert called == [result]
    report = failure_at_home(stack, result.message_id)
    assert report is not None and report["to"] == ["bob"] and report["from"] == "alice"
    assert [a["target"] for a in report["attempts"]] == [routers[0]] * 3 + [routers[1]] * 3
    assert {a["outcome"] for a in report["attempts"]} == {"failed"}
    # The envelope without cards: recipients by id, everything else as sent.
    assert report["envelope"]["to"] == ["bob"] and report["envelope"]["payload"] == {"n": 6}
    assert report["envelope"]["id"] == result.message_id


def test_recipient_down_is_retried_then_reported(stack, carol):
    carol.status = 503
    called = []
    with sender(stack, policy=FAST, on_failure=called.append) as s:
        result = s.send(ROOM, ["carol"], {"n": 7})
    assert result.failed == ["carol"] and len(called) == 1
    assert [a.status for a in result.attempts] == [502, 502, 502]
    assert len(records(carol.log_path, result.message_id)) == 3
    report = failure_at_home(stack, result.message_id)
    assert [a["status"] for a in report["attempts"]] == [502, 502, 502]


def test_a_refused_token_is_renewed_once(stack):
    with sender(stack, policy=FAST) as s:
        assert s.send(ROOM, ["bob"], {"n": 8}).ok
        old = s.tokens.get()
        stack.admin_client().revoke_token(
            jwt.decode(old, options={"verify_signature": False})["jti"]
        )
        wait_until_refused(stack, old)
        result = s.send(ROOM, ["bob"], {"n": 9})
        assert result.ok
        assert [a.status for a in result.attempts] == [401, 200]
        assert s.tokens.get() != old


def wait_until_refused(stack: Stack, token: str, timeout: float = 5.0) -> None:
    """Until every relay's sync document carries the revocation (well under a second):
    four refusals in a row through the router's round robin over the two relays."""
    session = stack.session("participant", "alice")
    deadline, in_a_row = time.monotonic() + timeout, 0
    while time.monotonic() < deadline and in_a_row < 4:
        resp = session.post(
            stack.messages_url,
            data=b"{}",
            timeout=5,
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
        in_a_row = in_a_row + 1 if resp.status_code == 401 else 0
        time.sleep(0.02)
    assert in_a_row >= 4, "the revoked token was still accepted"


def test_an_expiring_message_stops_retrying_and_is_reported(stack, carol):
    carol.status = 503
    policy = RetryPolicy(attempts=50, base_delay=0.2, max_delay=0.4)
    started = time.monotonic()
    with sender(stack, policy=policy, ttl=3) as s:
        result = s.send(ROOM, ["carol"], {"n": 10})
    assert time.monotonic() - started < 4.0
    assert result.expired and result.failed == ["carol"] and result.reported
    assert 1 < len(result.attempts) < 50
    assert "expired" in result.recipients["carol"].reason


def test_a_recipient_home_refuses_is_rejected_and_not_sent(stack):
    with sender(stack, policy=FAST) as s:
        result = s.send(ROOM, ["bob", "nobody"], {"n": 11})
    assert result.delivered == ["bob"] and result.rejected == ["nobody"]
    assert "address card" in result.recipients["nobody"].reason
    assert [a.recipients for a in result.attempts] == [("bob",)]


def test_retry_after_is_honoured_then_the_next_router(stack, tmp_path):
    limits = dataclasses.replace(stack.router_config().rate_limit, rate="1r/m", burst=1)
    with (
        extra_router(stack, tmp_path / "limited", rate_limit=limits) as limited,
        sender(stack, [limited.url, stack.router_url], policy=FAST) as s,
    ):
        assert s.send(ROOM, ["bob"], {"n": 12}).ok and s.send(ROOM, ["bob"], {"n": 13}).ok
        started = time.monotonic()
        result = s.send(ROOM, ["bob"], {"n": 14})
    assert result.ok
    assert [a.status for a in result.attempts] == [429, 429, 429, 200]
    assert time.monotonic() - started >= 2.0  # Retry-After: 1 after each of the first two


def test_a_report_waits_in_the_spool_while_home_is_down(stack, tmp_path):
    spool = tmp_path / "spool.jsonl"
    mid = new_message_id()
    with sender(stack, home=f"{dead_router()}/v1/home", policy=FAST, spool=spool) as s:
        result = s.send(ROOM, ["bob"], {"n": 15}, message_id=mid)
    assert result.failed == ["bob"] and not result.reported and result.spooled
    assert "address card" in result.recipients["bob"].reason
    assert failure_at_home(stack, mid) is None and len(spool.read_text().splitlines()) == 1
    with sender(stack, spool=spool) as s:  # home is back
        assert s.flush_reports() == 1
    assert spool.read_text() == ""
    assert failure_at_home(stack, mid)["to"] == ["bob"]


def test_invalid_message_is_refused_before_sending(stack):
    with sender(stack) as s:
        for bad in (
            {"room": "bad room!", "to": ["bob"]},
            {"room": ROOM, "to": []},
            {"room": ROOM, "to": ["not an id"]},
        ):
            with pytest.raises(DmrError):
                s.send(bad["room"], bad["to"], {"n": 0})


# -- dmr send --------------------------------------------------------------------------------


def test_cli_sends_one_message(stack):
    done = dmr_send(stack, "--room", ROOM, "--to", "bob", "--data", '{"cli": 1}', "--json")
    assert done.returncode == 0, done.stderr
    (line,) = done.stdout.decode().splitlines()
    result = json.loads(line)
    assert result["ok"] and result["outcomes"][0]["outcome"] == "delivered"
    (record,) = records(stack.recipient_log, result["id"])
    assert record["path"] == "/inbox/bob"


def test_cli_reads_the_payload_from_stdin_and_prints_outcomes(stack):
    done = dmr_send(
        stack, "--room", ROOM, "--to", "bob", "--to", "nobody", stdin=b'{"from": "stdin"}'
    )
    assert done.returncode == 1
    out = done.stdout.decode()
    assert "NOT delivered" in out and "bob" in out and "rejected" in out and "nobody" in out


def test_cli_with_no_router_reachable_fails_within_its_bound_and_reports(stack):
    attempts = 2
    bound = 2 * (attempts * 0.1 + RetryPolicy(attempts=attempts).longest_pauses())
    started = time.monotonic()
    done = dmr_send(
        stack,
        "--room",
        ROOM,
        "--to",
        "bob",
        "--data",
        "1",
        "--json",
        "--attempts",
        str(attempts),
        "--router",
        dead_router(),
        "--router",
        dead_router(),
        "--home",
        stack.home_url,
    )
    elapsed = time.monotonic() - started
    assert done.returncode == 1, done.stderr
    result = json.loads(done.stdout)
    assert result["reported"] and len(result["attempts"]) == 2 * attempts
    assert elapsed < bound + 5.0  # + interpreter start and the report to home
    assert failure_at_home(stack, result["id"])["to"] == ["bob"]
    assert b"send.failed" in done.stderr  # logged at error level on stderr


@pytest.mark.parametrize(
    "args",
    [
        ("--room", ROOM, "--data", "1"),  # no recipient
        ("--room", ROOM, "--to", "bob", "--data", "{not json"),
        ("--room", ROOM, "--to", "bob", "--data", "1", "--cert", "/nonexistent.pem"),
        ("--room", ROOM, "--to", "bob", "--attempts", "0", "--data", "1"),
        (
            "--batch",
            "/nonexistent.jsonl",
        ),
    ],
)
def test_cli_usage_errors_exit_2(stack, args):
    done = dmr_send(stack, *args)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert b"Traceback" not in done.stderr


def test_cli_batch_shows_progress_and_one_result_per_message(stack, tmp_path):
    batch = tmp_path / "batch.jsonl"
    lines = [json.dumps({"to": ["bob"], "payload": {"n": n}}) for n in range(6)]
    batch.write_text("\n".join(lines) + "\n")
    done = dmr_send(stack, "--room", ROOM, "--batch", str(batch), "--json")
    assert done.returncode == 0, done.stderr
    results = [json.loads(line) for line in done.stdout.decode().splitlines()]
    assert len(results) == 6 and all(r["ok"] for r in results)
    assert "sent 6/6  (6 delivered, 0 not)" in done.stderr.decode()
    assert [records(stack.recipient_log, r["id"])[0]["duplicate"] for r in results] == [False] * 6


def test_cli_batch_with_a_bad_line_sends_nothing(stack, tmp_path):
    batch = tmp_path / "batch.jsonl"
    batch.write_text('{"to": ["bob"], "payload": 1}\n{"to": \n')
    done = dmr_send(stack, "--room", ROOM, "--batch", str(batch))
    assert done.returncode == 2 and b"line 2" in done.stderr
