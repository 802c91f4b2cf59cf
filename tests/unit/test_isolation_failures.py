"""Hostile: failure reports belong to their reporter (issue 22, item 2). One participant
cannot block, squat, hide or bloat another's reports, nor file them outside its rooms."""

from __future__ import annotations

import json

import pytest

from dmr_appliance.config import FailureLimits
from dmr_appliance.home.store import Store
from tests.support.home import MID, failure_report, home_under_test, older_store

# Each test runs on SQLite and on PostgreSQL (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("store_backend")

PROBLEM = "urn:dmr:problem:"


def mid(n: int) -> str:
    return f"0190b4a2-1234-7000-8000-{n:012x}"


@pytest.fixture
def home(tmp_path, pki):
    home = home_under_test(
        tmp_path, pki, failures=FailureLimits(max_open=5, max_envelope_bytes=4096)
    )
    home.add("alice", ["lobby"])
    home.add("bob", ["lobby"])
    home.add("carol", ["attic"])
    return home


def bobs(message_id: str = MID, **changes) -> dict:
    return failure_report(message_id=message_id, **{"from": "bob", "to": ["alice"]}, **changes)


def test_bob_reporting_alices_id_first_blocks_nothing(home):
    alice, bob = home.participant("alice"), home.participant("bob")
    assert bob.post("/v1/failures", json=bobs()).status_code == 201
    mine = alice.post("/v1/failures", json=failure_report())
    assert mine.status_code == 201, mine.text  # was 409 failure-mismatch
    assert mine.headers["location"] == f"/v1/failures/{MID}?from=alice"
    assert [f["from"] for f in alice.get("/v1/failures").json["failures"]] == ["alice"]
    assert alice.get(f"/v1/failures/{MID}").json["envelope"]["from"] == "alice"
    assert bob.get(f"/v1/failures/{MID}").json["from"] == "bob"
    # bob resolving "MID" resolves his own report, never alice's
    bob.post(f"/v1/failures/{MID}/resolve", json={"note": "gone"})
    assert alice.get(f"/v1/failures/{MID}").json["status"] == "open"
    assert bob.get(f"/v1/failures/{MID}", params={"from": "alice"}).status_code == 403


def test_an_admin_names_the_sender_of_an_ambiguous_id(home):
    home.participant("bob").post("/v1/failures", json=bobs())
    home.participant("alice").post("/v1/failures", json=failure_report())
    ambiguous = home.admin.get(f"/v1/failures/{MID}")
    assert ambiguous.status_code == 409
    assert ambiguous.headers["content-type"] == "application/problem+json"
    assert ambiguous.json["type"] == PROBLEM + "failure-ambiguous"
    assert ambiguous.json["senders"] == ["alice", "bob"]
    assert home.admin.get(f"/v1/failures/{MID}", params={"from": "alice"}).json["from"] == "alice"
    done = home.admin.post(
        f"/v1/failures/{MID}/resolve", params={"from": "bob"}, json={"note": "squatted"}
    ).json
    assert (done["from"], done["status"]) == ("bob", "resolved")
    assert home.admin.get(f"/v1/failures/{MID}", params={"from": "alice"}).json["status"] == "open"


def test_a_report_for_a_room_the_reporter_is_not_in_is_refused(home):
    resp = home.participant("carol").post(
        "/v1/failures", json=failure_report(room="lobby", **{"from": "carol", "to": ["alice"]})
    )
    assert resp.status_code == 403 and resp.json["type"] == PROBLEM + "not-in-room"
    assert home.admin.get("/v1/failures").json["failures"] == []


def test_a_report_to_a_recipient_sharing_no_room_is_refused(home):
    for to in (["carol"], ["bob", "carol"], ["nobody"]):
        resp = home.participant("alice").post("/v1/failures", json=failure_report(to=to))
        assert resp.status_code == 403, resp.text
        assert resp.json["type"] == PROBLEM + "recipient-not-in-room"


def test_open_reports_are_capped_per_participant(home):
    alice, bob = home.participant("alice"), home.participant("bob")
    for n in range(5):
        assert bob.post("/v1/failures", json=bobs(mid(n))).status_code == 201
    over = bob.post("/v1/failures", json=bobs(mid(5)))
    assert over.status_code == 429
    assert over.headers["content-type"] == "application/problem+json"
    assert over.json["type"] == PROBLEM + "failure-quota" and over.json["limit"] == 5
    assert bob.post("/v1/failures", json=bobs(mid(0))).status_code == 200  # a merge: fine
    assert alice.post("/v1/failures", json=failure_report()).status_code == 201  # her own share
    bob.post(f"/v1/failures/{mid(0)}/resolve", json={"note": "re-sent"})
    assert bob.post("/v1/failures", json=bobs(mid(5))).status_code == 201  # room again


def test_open_report_bytes_are_capped_per_participant(tmp_path, pki):
    home = home_under_test(
        tmp_path,
        pki,
        failures=FailureLimits(max_open=100, max_envelope_bytes=4096, max_open_bytes=10_000),
    )
    home.add("alice", ["lobby"])
    home.add("bob", ["lobby"])
    bob = home.participant("bob")
    envelope = {"id": MID, "payload": "x" * 3000}
    for n in range(3):
        assert bob.post("/v1/failures", json=bobs(mid(n), envelope=envelope)).status_code == 201
    over = bob.post("/v1/failures", json=bobs(mid(3), envelope=envelope))
    assert over.status_code == 429 and over.json["type"] == PROBLEM + "failure-quota"
    assert over.json["limit_bytes"] == 10_000
    assert home.participant("alice").post("/v1/failures", json=failure_report()).status_code == 201


def test_an_oversize_envelope_is_refused(home):
    big = failure_report(envelope={"id": MID, "payload": "x" * 5000})
    resp = home.participant("alice").post("/v1/failures", json=big)
    assert resp.status_code == 413 and resp.json["type"] == PROBLEM + "failure-too-large"
    assert resp.json["limit"] == 4096
    assert home.participant("alice").post("/v1/failures", json=failure_report()).status_code == 201


def test_repeated_reports_cannot_grow_one_row_without_bound(home):
    bob = home.participant("bob")
    for batch in range(3):
        attempts = [
            {
                "target": "https://r:1",
                "at": f"2026-01-02T03:{batch:02d}:{s:02d}Z",
                "outcome": "failed",
            }
            for s in range(60)
        ]
        bob.post("/v1/failures", json=bobs(attempts=attempts))
    attempts = bob.get(f"/v1/failures/{MID}").json["attempts"]
    assert len(attempts) == 100 and attempts[-1]["at"] == "2026-01-02T03:02:59Z"


def test_one_senders_reports_never_hide_anothers(tmp_path, pki):
    """bob files 60 reports (the page used to show the 50 newest): alice's still shows,
    with every sender's count."""
    home = home_under_test(tmp_path, pki)
    home.add("alice", ["lobby"])
    home.add("bob", ["lobby"])
    home.participant("alice").post("/v1/failures", json=failure_report())
    for n in range(60):
        assert home.participant("bob").post("/v1/failures", json=bobs(mid(n))).status_code == 201
    page = home.admin.get("/").text
    assert MID in page and f"v1/failures/{MID}?from=alice" in page
    assert "bob: <b>60</b>" in page and "alice: <b>1</b>" in page
    listed = home.admin.get("/v1/failures", params={"per_sender": 5}).json
    assert [f["from"] for f in listed["failures"]].count("bob") == 5
    assert MID in [f["message_id"] for f in listed["failures"]]
    assert listed["senders"] == [
        {"from": "bob", "open": 60, "resolved": 0},
        {"from": "alice", "open": 1, "resolved": 0},
    ]
    own = home.participant("alice").get("/v1/failures").json["senders"]
    assert own == [{"from": "alice", "open": 1, "resolved": 0}]


@pytest.mark.sqlite_only
def test_the_migration_keeps_reports_of_the_old_schema(tmp_path):
    path = tmp_path / "home.db"
    older_store(
        path,
        2,
        [
            (
                "INSERT INTO failures VALUES (?, 'lobby', 'alice', '[\"bob\"]', '{}',"
                " 'participant:alice', 1, 2, 1, 'open', NULL, NULL, NULL)",
                (MID,),
            ),
            (
                "INSERT INTO failure_attempts VALUES (?, 'r', '2026-01-01T00:00:00Z',"
                " 'failed', 503, 'down')",
                (MID,),
            ),
        ],
    )
    store = Store(path)
    from dmr_appliance.home import failures

    kept = failures.get(store, MID, "alice")
    assert (kept["to"], kept["status"], kept["attempts"][0]["detail"]) == (["bob"], "open", "down")
    assert failures.get(store, MID)["from"] == "alice"  # one sender: not ambiguous
    with store.write() as conn:  # attempts still follow their report
        conn.execute("DELETE FROM failures")
        assert conn.execute("SELECT count(*) FROM failure_attempts").fetchone()[0] == 0
    assert json.loads(json.dumps(kept))  # serialisable as before
