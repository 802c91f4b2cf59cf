"""Participants: validation, status changes, and the sync version each change bumps."""

from __future__ import annotations

import pytest

from tests.support.home import home_under_test

# Each test runs on SQLite and on PostgreSQL (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("store_backend")


@pytest.fixture
def home(tmp_path, pki):
    return home_under_test(tmp_path, pki)


def version(home) -> int:
    return home.store.version()


def test_create_show_list(home):
    before = version(home)
    created = home.add("alice", ["lobby", "ops", "lobby"])
    assert created["rooms"] == ["lobby", "ops"] and created["status"] == "active"
    assert version(home) == before + 1
    home.add("bob", ["ops"])
    assert home.admin.get("/v1/participants/alice").json == created
    listed = home.admin.get("/v1/participants", params={"room": "lobby"}).json["participants"]
    assert [p["id"] for p in listed] == ["alice"]


@pytest.mark.parametrize(
    "body",
    [
        {"id": "Alice", "endpoint": "https://a.example", "rooms": ["r"]},
        {"id": "alice", "endpoint": "http://a.example", "rooms": ["r"]},
        {"id": "alice", "endpoint": "https://", "rooms": ["r"]},
        {"id": "alice", "endpoint": "https://a.example", "rooms": []},
        {"id": "alice", "endpoint": "https://a.example", "rooms": ["Bad Room"]},
        {"id": "alice", "endpoint": "https://a.example", "rooms": ["r"], "admin": True},
        ["alice"],
    ],
)
def test_create_refuses_invalid(home, body):
    resp = home.admin.post("/v1/participants", json=body)
    assert resp.status_code == 422, resp.text
    assert resp.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize(
    ("endpoint", "reason"),
    [
        ("https://bob.example/in#top", "the endpoint has a fragment (#...)"),
        ("https://user:pass@bob.example/", "the endpoint has userinfo (user:pass@)"),
        ("https://bob.example/in box", "the endpoint contains whitespace (U+0020)"),
        ("https://bob.example/in\r\nX: 1", "the endpoint contains whitespace (U+000D)"),
        ("https://bob.example/\x00", "the endpoint contains a control character (U+0000)"),
        ("https://Bob.example/", "the endpoint's host must be lowercase"),
        ("https://bob.example/a/../b", "the endpoint's path has a '.' or '..' segment"),
        ("https://bob.example/%2f", "the endpoint's path must use uppercase hex (%2F, not %2f)"),
        ("https://bob.example:08443/", "the endpoint's port must be 1-65535 without leading zeros"),
        ("http://bob.example/", "the endpoint must start with https:// (lowercase)"),
        (None, "the endpoint must be a string (an https:// URL)"),
    ],
)
def test_create_refuses_a_bad_endpoint_saying_why(home, endpoint, reason):
    before = version(home)
    resp = home.admin.post(
        "/v1/participants", json={"id": "bob", "endpoint": endpoint, "rooms": ["r"]}
    )
    assert resp.status_code == 422, resp.text
    assert resp.json["type"] == "urn:dmr:problem:invalid-endpoint"
    assert (resp.json["field"], resp.json["detail"]) == ("endpoint", reason)
    assert home.admin.get("/v1/participants/bob").status_code == 404
    assert version(home) == before


def test_duplicate_is_a_conflict(home):
    home.add("alice", ["r"])
    resp = home.admin.post(
        "/v1/participants", json={"id": "alice", "endpoint": "https://x.example", "rooms": ["r"]}
    )
    assert resp.status_code == 409 and resp.json["type"] == "urn:dmr:problem:participant-exists"


def test_suspend_reinstate_revoke(home):
    home.add("alice", ["r"])
    admin = home.admin
    v = version(home)
    assert admin.post("/v1/participants/alice/suspend").json["status"] == "suspended"
    assert version(home) == v + 1
    assert admin.post("/v1/participants/alice/suspend").status_code == 200
    assert version(home) == v + 1  # no change, no bump
    assert admin.post("/v1/participants/alice/reinstate").json["status"] == "active"
    assert admin.post("/v1/participants/alice/revoke").json["status"] == "revoked"
    # Revocation is permanent.
    for action in ("reinstate", "suspend"):
        resp = admin.post(f"/v1/participants/alice/{action}")
        assert resp.status_code == 409, resp.text


def test_delete_keeps_the_id_refused_in_sync(home):
    home.add("alice", ["r"])
    assert home.admin.delete("/v1/participants/alice").status_code == 204
    assert home.admin.get("/v1/participants/alice").status_code == 404
    doc = home.relay().get("/v1/sync").json
    assert "alice" in doc["revoked_participants"]


def test_unknown_participant_is_404(home):
    for resp in (
        home.admin.get("/v1/participants/nobody"),
        home.admin.post("/v1/participants/nobody/suspend"),
        home.admin.delete("/v1/participants/nobody"),
    ):
        assert resp.status_code == 404
