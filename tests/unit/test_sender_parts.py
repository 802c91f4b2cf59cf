"""The sender's pure parts: reading a router's answer, the failure report's shape (checked
by home's own validator), the report spool with home unreachable, and SeenIds."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta

import pytest
import requests

from dmr_appliance.cli import main
from dmr_appliance.client.answers import read_answer
from dmr_appliance.client.dedup import SeenIds
from dmr_appliance.client.home import HomeClient
from dmr_appliance.client.reports import Reporter
from dmr_appliance.client.result import Attempt, RecipientOutcome, SendResult
from dmr_appliance.client.retry import RetryPolicy
from dmr_appliance.client.sender import failure_report
from dmr_appliance.envelope import build_envelope
from dmr_appliance.home import failures
from dmr_appliance.outcome_rule import DELIVERED, FAILED, REJECTED
from tests.support.processes import free_port

PROBLEM = "urn:dmr:problem:"


def response(status: int, body: object = None, headers: dict | None = None
             ) -> requests.Response:
    resp = requests.Response()
    resp.status_code = status
    resp.reason = "Reason"
    resp.headers.update(headers or {})
    resp._content = json.dumps(body).encode() if body is not None else b"<html>nginx</html>"
    return resp


def outcome(to: str, result: str, status: int | None, error: str | None = None) -> dict:
    doc = {"to": to, "outcome": result, "status": status, "ms": 1.0}
    return {**doc, "error": error} if error else doc


# -- answers -----------------------------------------------------------------------------


def test_partial_delivery_lists_each_recipient():
    answer = read_answer(response(502, {
        "type": PROBLEM + "delivery-failed", "detail": "1 of 2 failed",
        "outcomes": [outcome("bob", DELIVERED, 200), outcome("carol", FAILED, None, "timeout")]}))
    assert answer.outcomes["bob"].outcome == DELIVERED
    assert (answer.outcomes["carol"].outcome, answer.outcomes["carol"].reason) == (FAILED,
                                                                                  "timeout")
    assert answer.code == "delivery-failed"


def test_an_unreadable_outcome_is_never_a_delivery():
    answer = read_answer(response(200, {"outcomes": [{"to": "bob", "outcome": "maybe"}]}))
    assert answer.outcomes["bob"].outcome == FAILED


def test_nginx_error_page_fails_the_whole_request_retryably():
    answer = read_answer(response(502))
    assert answer.outcomes == {} and answer.outcome == FAILED and answer.status == 502


def test_rate_limit_carries_retry_after():
    answer = read_answer(response(429, {"type": PROBLEM + "too-many-requests"},
                                  {"Retry-After": "2"}))
    assert (answer.outcome, answer.retry_after) == (FAILED, 2.0)


@pytest.mark.parametrize(("status", "code", "field", "one"), [
    (422, "card-expired", "to[1]", True),
    (403, "recipient-revoked", "to[0]", True),
    (403, "sender-suspended", None, False),
    (422, "envelope-bad-room", "room", False),
])
def test_refusals_naming_one_recipient(status, code, field, one):
    body = {"type": PROBLEM + code, "detail": "no"}
    if field:
        body["field"] = field
    answer = read_answer(response(status, body))
    assert answer.outcome == REJECTED and answer.refuses_one_recipient is one


def test_token_and_expiry_refusals_are_recognised():
    assert read_answer(response(401, {"type": PROBLEM + "token-expired"})).token_refused
    assert read_answer(response(422, {"type": PROBLEM + "envelope-expired"})).expired


# -- the failure report ----------------------------------------------------------------------


def failed_result(envelope: dict) -> SendResult:
    at = datetime.now(UTC)
    attempts = [Attempt(n, f"https://router-{n}:8443", at + timedelta(seconds=n), FAILED,
                        502 if n % 2 else None, "x" * 5000, ("bob", "carol")) for n in (1, 2)]
    return SendResult(envelope["id"], envelope["room"], {
        "bob": RecipientOutcome("bob", DELIVERED, 200, "ok", 1),
        "carol": RecipientOutcome("carol", FAILED, None, "timeout", 2)}, attempts)


def test_failure_report_is_what_home_accepts():
    envelope = build_envelope(room="ops", sender="alice", cards=["a.b.c"], payload={"n": 1})
    envelope["to"] = ["bob", "carol"]
    report = failure_report(envelope, failed_result(envelope), "alice")
    checked = failures.validate(report)  # home's own validator, unchanged
    assert checked["to"] == ["carol"]
    assert [a["status"] for a in checked["attempts"]] == [502, None]
    assert all(len(a["detail"]) <= failures.MAX_TEXT for a in checked["attempts"])
    assert report["envelope"]["to"] == ["bob", "carol"]  # ids, never cards


# -- the spool, with home unreachable --------------------------------------------------------


@pytest.fixture
def unreachable_home(pki):
    url = f"https://127.0.0.1:{free_port()}/v1/home"
    return HomeClient(url, cert=pki.cert("participant", "alice"),
                      key=pki.key("participant", "alice"), ca=pki.ca, timeout=2)


def report_doc(mid: str = "01HZZZZZZZZZZZZZZZZZZZZZZZ") -> dict:
    return {"message_id": mid, "room": "ops", "from": "alice", "to": ["bob"],
            "attempts": [{"target": "https://r", "at": "2024-01-01T00:00:00Z",
                          "outcome": "failed", "status": None, "detail": "refused"}],
            "envelope": {"id": mid}, "reported_at": "2024-01-01T00:00:01Z"}


def test_a_report_home_cannot_take_is_spooled_and_kept(unreachable_home, tmp_path):
    spool = tmp_path / "sub" / "spool.jsonl"
    fast = RetryPolicy(attempts=2, base_delay=0.01, max_delay=0.01)
    reporter = Reporter(unreachable_home, spool=spool, policy=fast)
    reported, spooled, error = reporter.report(report_doc())
    assert (reported, spooled) == (False, True) and "home-unreachable" in error
    assert reporter.pending() == 1
    assert reporter.flush() == 0 and reporter.pending() == 1  # still away: nothing lost
    with spool.open("a") as fh:
        fh.write('{"torn')  # a crash mid-append
    assert reporter.pending() == 1


def test_a_report_spooled_after_a_torn_line_is_kept_whole(unreachable_home, tmp_path, caplog):
    spool = tmp_path / "spool.jsonl"
    spool.write_text('{"message_id": "torn')  # a crash cut the last append short
    reporter = Reporter(unreachable_home, spool=spool, policy=RetryPolicy(attempts=1))
    assert reporter.report(report_doc())[1]  # spooled
    assert reporter.pending() == 1  # the new report, not merged into the torn line
    (bad,) = [r for r in caplog.records if r.getMessage() == "send.spool-bad-line"]
    assert bad.dmr_fields["line"] == '{"message_id": "torn'


def test_without_a_spool_the_report_goes_to_the_log(unreachable_home, caplog):
    fast = RetryPolicy(attempts=1)
    reported, spooled, _ = Reporter(unreachable_home, policy=fast).report(report_doc())
    assert (reported, spooled) == (False, False)
    (record,) = [r for r in caplog.records if r.getMessage() == "send.report-failed"]
    assert record.dmr_fields["report"]["message_id"] == report_doc()["message_id"]


# -- SeenIds -------------------------------------------------------------------------------


def test_first_time_then_repeats():
    seen = SeenIds()
    assert seen.first_time("m1", now=100.0, expires_at=200.0)
    assert not seen.first_time("m1", now=150.0, expires_at=200.0)
    assert seen.first_time("m1", scope="/inbox/dave", now=150.0, expires_at=200.0)
    assert seen.first_time("m1", now=201.0, expires_at=300.0)  # expired: not a live copy


def test_ids_survive_a_restart(tmp_path):
    path = tmp_path / "seen.sqlite"
    first = SeenIds(path)
    assert first.first_time("m1", "2999-01-01T00:00:00Z")
    first.close()
    again = SeenIds(path)
    assert not again.first_time("m1", "2999-01-01T00:00:00Z")


def test_forget_lets_the_next_copy_through():
    seen = SeenIds()
    assert seen.first_time("m1")
    seen.forget("m1")
    assert seen.first_time("m1")


def test_the_store_is_bounded(caplog):
    seen = SeenIds(max_ids=3)
    for n in range(10):
        seen.first_time(f"m{n}", expires_at=1000.0 + n, now=0.0)
    seen.prune(now=0.0)
    assert len(seen) == 3
    assert not seen.first_time("m9", expires_at=1009.0, now=0.0)  # the newest are kept
    seen.prune(now=2000.0)
    assert len(seen) == 0


def test_concurrent_copies_are_processed_once():
    seen = SeenIds()
    wins: list[bool] = []
    threads = [threading.Thread(target=lambda: wins.append(seen.first_time("same")))
               for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(wins) == [False] * 15 + [True]


# -- dmr send: who sends ------------------------------------------------------------------


@pytest.mark.parametrize(("name", "said"), [
    ("alice", "pki/participant/alice.pem does not exist"),
    ("../alice", "--as '../alice': invalid name"),
])
def test_dmr_send_finds_the_participant_in_the_pki_layout(tmp_path, capsys, name, said):
    code = main(["send", "--pki", str(tmp_path / "pki"), "--as", name, "--room", "ops",
                 "--to", "bob", "--data", "1"])
    assert code == 2
    assert said in capsys.readouterr().err
