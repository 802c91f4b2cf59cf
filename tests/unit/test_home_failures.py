"""Failure reports: validation, who may report what, merging duplicates, resolving."""

from __future__ import annotations

import copy

import pytest

from tests.support.home import MID, failure_report, home_under_test

# Each test runs on SQLite and on PostgreSQL (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("store_backend")


@pytest.fixture
def home(tmp_path, pki):
    return home_under_test(tmp_path, pki, rooms={"lobby": ("alice", "bob")})


def test_report_then_duplicate_merges(home):
    home.add("carol", ["lobby"])
    alice = home.participant("alice")
    first = alice.post("/v1/failures", json=failure_report())
    assert first.status_code == 201, first.text
    again = alice.post("/v1/failures", json=failure_report())
    assert again.status_code == 200
    assert again.json["attempts"] == first.json["attempts"]  # idempotent: no duplicate rows
    more = copy.deepcopy(failure_report(to=["carol"]))
    more["attempts"].append(
        {"target": "https://router-2:8443", "at": "2026-01-02T03:04:07+00:00", "outcome": "failed"}
    )
    merged = alice.post("/v1/failures", json=more).json
    assert merged["reports"] == 3 and merged["to"] == ["bob", "carol"]
    assert [a["target"] for a in merged["attempts"]] == [
        "https://router-1:8443",
        "https://router-2:8443",
    ]
    assert merged["attempts"][1]["at"] == "2026-01-02T03:04:07Z"
    listed = home.admin.get("/v1/failures", params={"status": "open"}).json["failures"]
    assert [f["message_id"] for f in listed] == [MID]


def test_participant_reports_only_its_own_messages(home):
    resp = home.participant("bob").post("/v1/failures", json=failure_report())
    assert resp.status_code == 403 and resp.json["type"] == "urn:dmr:problem:not-sender"


def test_conflicting_duplicate_is_refused(home):
    home.participant("alice").post("/v1/failures", json=failure_report())
    resp = home.admin.post("/v1/failures", json=failure_report(room="other"))
    assert resp.status_code == 409


@pytest.mark.parametrize(
    "changes",
    [
        {"message_id": "not-an-id"},
        {"to": []},
        {"attempts": []},
        {"envelope": "x"},
        {"reported_at": "yesterday"},
        {"attempts": [{"target": "x", "at": "2026-01-01T00:00:00Z", "outcome": "Failed!"}]},
    ],
)
def test_invalid_reports(home, changes):
    resp = home.participant("alice").post("/v1/failures", json=failure_report(**changes))
    assert resp.status_code == 422, resp.text


def test_show_and_resolve(home):
    home.participant("alice").post("/v1/failures", json=failure_report())
    shown = home.admin.get(f"/v1/failures/{MID}").json
    assert shown["envelope"]["payload"] == {"hi": 1} and shown["status"] == "open"
    resolved = home.admin.post(f"/v1/failures/{MID}/resolve", json={"note": "resent by hand"})
    assert resolved.status_code == 200
    assert resolved.json["status"] == "resolved" and resolved.json["resolved_by"] == "admin:admin"
    assert home.admin.get("/v1/failures", params={"status": "open"}).json["failures"] == []
    assert home.admin.post(f"/v1/failures/{MID}/resolve", json={}).status_code == 422
    assert home.admin.get("/v1/failures/nothing").status_code == 404


def test_a_participant_sees_and_resolves_only_what_it_sent(home):
    home.participant("alice").post("/v1/failures", json=failure_report())
    other = "0190b4a2-1234-7000-8000-00000000beef"
    home.participant("bob").post(
        "/v1/failures", json=failure_report(message_id=other, **{"from": "bob", "to": ["alice"]})
    )
    alice, bob = home.participant("alice"), home.participant("bob")
    # Listing: its own only, whatever it asks for
    assert [f["message_id"] for f in alice.get("/v1/failures").json["failures"]] == [MID]
    assert [f["message_id"] for f in bob.get("/v1/failures").json["failures"]] == [other]
    refused = alice.get("/v1/failures", params={"from": "bob"})
    assert refused.status_code == 403 and refused.json["type"].endswith(":not-sender")
    # Showing and resolving another's: its own (none: 404) or refused, and nothing changes
    assert bob.get(f"/v1/failures/{MID}").status_code == 404
    assert bob.get(f"/v1/failures/{MID}", params={"from": "alice"}).status_code == 403
    assert bob.post(f"/v1/failures/{MID}/resolve", json={"note": "mine now"}).status_code == 404
    assert (
        bob.post(
            f"/v1/failures/{MID}/resolve", params={"from": "alice"}, json={"note": "mine now"}
        ).status_code
        == 403
    )
    assert home.admin.get(f"/v1/failures/{MID}").json["status"] == "open"
    # Its own: the envelope (to re-send it), then resolved by it, which home records
    assert alice.get(f"/v1/failures/{MID}").json["envelope"]["payload"] == {"hi": 1}
    done = alice.post(f"/v1/failures/{MID}/resolve", json={"note": "re-sent: delivered"}).json
    assert (done["status"], done["resolved_by"], done["note"]) == (
        "resolved",
        "participant:alice",
        "re-sent: delivered",
    )
    assert (
        home.admin.get("/v1/failures", params={"status": "open"}).json["failures"][0]["message_id"]
        == other
    )
