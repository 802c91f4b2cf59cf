"""client/sender.failure_report: the report's shape, checked by home's own validator."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from dmr_appliance.client.result import Attempt, RecipientOutcome, SendResult
from dmr_appliance.client.sender import failure_report
from dmr_appliance.envelope import sender_envelope
from dmr_appliance.home import failures
from dmr_appliance.wire.outcome import DELIVERED, FAILED

# -- the failure report ----------------------------------------------------------------------


def failed_result(envelope: dict) -> SendResult:
    at = datetime.now(UTC)
    attempts = [
        Attempt(
            n,
            f"https://router-{n}:8443",
            at + timedelta(seconds=n),
            FAILED,
            502 if n % 2 else None,
            "x" * 5000,
            ("bob", "carol"),
        )
        for n in (1, 2)
    ]
    return SendResult(
        envelope["id"],
        envelope["room"],
        {
            "bob": RecipientOutcome("bob", DELIVERED, 200, "ok", 1),
            "carol": RecipientOutcome("carol", FAILED, None, "timeout", 2),
        },
        attempts,
    )


def test_failure_report_is_what_home_accepts():
    envelope = sender_envelope(room="ops", sender="alice", to=["bob", "carol"], payload={"n": 1})
    report = failure_report(envelope, failed_result(envelope), "alice")
    checked = failures.validate(report)  # home's own validator, unchanged
    assert checked["to"] == ["carol"]
    assert [a["status"] for a in checked["attempts"]] == [502, None]
    assert all(len(a["detail"]) <= failures.MAX_TEXT for a in checked["attempts"])
    assert report["envelope"]["to"] == ["bob", "carol"]  # ids, never cards
