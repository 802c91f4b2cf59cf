"""client/reports.py: the report spool, with home unreachable."""

from __future__ import annotations

import pytest

from dmr_appliance.client.reports import Reporter
from dmr_appliance.local.processes import free_port
from dmr_appliance.wire.home import HomeClient
from dmr_appliance.wire.retry import RetryPolicy

# -- the spool, with home unreachable --------------------------------------------------------


@pytest.fixture
def unreachable_home(pki):
    url = f"https://127.0.0.1:{free_port()}/v1/home"
    return HomeClient(
        url,
        cert=pki.cert("participant", "alice"),
        key=pki.key("participant", "alice"),
        ca=pki.ca,
        timeout=2,
    )


def report_doc(mid: str = "01HZZZZZZZZZZZZZZZZZZZZZZZ") -> dict:
    return {
        "message_id": mid,
        "room": "ops",
        "from": "alice",
        "to": ["bob"],
        "attempts": [
            {
                "target": "https://r",
                "at": "2024-01-01T00:00:00Z",
                "outcome": "failed",
                "status": None,
                "detail": "refused",
            }
        ],
        "envelope": {"id": mid},
        "reported_at": "2024-01-01T00:00:01Z",
    }


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
