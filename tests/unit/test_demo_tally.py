"""The demo's reconciliation and progress output, on hand-made records."""

from __future__ import annotations

import io

from dmr_appliance.local.demo_records import reconcile
from dmr_appliance.progress import ProgressBar

INBOX = "/inbox/bob"


def delivery(
    mid: str,
    *,
    duplicate: bool = False,
    status: int = 200,
    path: str = INBOX,
    relay: str = "relay-1",
    signature: str = "verified",
) -> dict:
    return {
        "id": mid,
        "duplicate": duplicate,
        "status": status,
        "path": path,
        "relay": relay,
        "signed": signature != "unsigned",
        "signature": signature,
    }


def test_every_id_lands_in_exactly_one_class():
    asked = ["d1", "d2", "r1", "f1", "lost"]
    records = [
        delivery("d1"),
        delivery("d2", relay="relay-2"),
        delivery("d2", duplicate=True),
        delivery("other-run"),
        delivery("lost", status=503),
        delivery("lost", path="/inbox/carol"),
    ]
    tally = reconcile(
        asked, {"r1": "403 sender-revoked: revoked"}, records, failed={"f1", "d1"}, path=INBOX
    )
    assert (tally.sent, tally.delivered, tally.refused, tally.reported_failed) == (5, 2, 1, 1)
    assert tally.unaccounted == 1 and tally.unaccounted_ids == ["lost"]
    assert tally.duplicates_suppressed == 1 and tally.processed_twice == 0
    assert tally.refusal_reasons == {"403 sender-revoked": 1}
    assert tally.by_relay == {"relay-1": 1, "relay-2": 1}


def test_signatures_and_receipts_are_counted_among_the_delivered():
    records = [
        delivery("a"),
        delivery("b", signature="unsigned"),
        delivery("c"),
        delivery("x", status=422, signature="refused"),
    ]
    tally = reconcile(
        ["a", "b", "c", "x"], {}, records, failed=set(), path=INBOX, receipted={"a", "x"}
    )
    assert tally.delivered == 3
    assert (tally.signed, tally.signature_verified, tally.receipts_verified) == (2, 2, 1)


def test_an_id_processed_twice_is_counted():
    tally = reconcile(["a"], {}, [delivery("a"), delivery("a")], failed=set(), path=INBOX)
    assert tally.delivered == 1 and tally.processed_twice == 1


def test_progress_off_a_terminal_prints_about_every_tenth():
    out = io.StringIO()
    progress = ProgressBar(60, out, prefix="  ")
    for done in range(1, 61):
        progress.update(done, "relay-1 SIGKILLed" if done > 30 else "")
    progress.finish()
    lines = out.getvalue().splitlines()
    assert len(lines) == 10 and lines[-1].startswith("  sent 60/60")
    assert "relay-1 SIGKILLed" in lines[5]
