"""/v1/rooms (issue 26, room policy): every known room with its policy and member count,
and ``PUT`` to mark one signed (admin only); tokens issued afterwards carry it in their
``signed`` claim, those issued before keep theirs; the sync document is not touched."""

from __future__ import annotations

import jwt
import pytest

from dmr_appliance.home import rooms
from tests.support.home import home_under_test, older_store
from tests.support.problems import assert_problem

# Each test runs on SQLite and on PostgreSQL (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("store_backend")

ROOMS = {"lobby": ("alice", "bob"), "ops": ("alice",)}


@pytest.fixture
def home(tmp_path, pki):
    return home_under_test(tmp_path, pki, rooms=ROOMS)


def put(home, room: str, body, caller=None):
    return (caller or home.admin).request("PUT", f"/v1/rooms/{room}", json=body)


def signed_claim(home, pid: str = "alice"):
    resp = home.participant(pid).post("/v1/tokens")
    assert resp.status_code == 201, resp.text
    claims = jwt.decode(resp.json["access_token"], options={"verify_signature": False})
    return claims.get("signed")


def test_rooms_are_those_participants_hold_and_those_with_a_policy(home):
    assert put(home, "audit", {"signed": True}).status_code == 200  # no member needed
    listed = home.admin.get("/v1/rooms").json["rooms"]
    assert [(r["room"], r["signed"], r["members"]) for r in listed] == [
        ("audit", True, 0),
        ("lobby", False, 2),
        ("ops", False, 1),
    ]
    assert listed[1]["updated_at"] is None and listed[0]["updated_at"].endswith("Z")


def test_put_sets_and_clears_the_flag_and_show_reads_it(home):
    resp = put(home, "ops", {"signed": True})
    assert resp.status_code == 200, resp.text
    assert resp.json == home.admin.get("/v1/rooms/ops").json
    assert (resp.json["room"], resp.json["signed"], resp.json["members"]) == ("ops", True, 1)
    assert put(home, "ops", {"signed": False}).json["signed"] is False
    assert home.admin.get("/v1/rooms/ops").json["signed"] is False


def test_an_unchanged_flag_keeps_its_updated_at(home, monkeypatch):
    first = put(home, "ops", {"signed": True}).json["updated_at"]
    monkeypatch.setattr(rooms, "now", lambda: 4_000_000_000)
    assert put(home, "ops", {"signed": True}).json["updated_at"] == first
    assert put(home, "ops", {"signed": False}).json["updated_at"] == "2096-10-02T07:06:40Z"


def test_tokens_issued_after_the_change_carry_it(home):
    assert signed_claim(home) is None
    put(home, "ops", {"signed": True})
    put(home, "elsewhere", {"signed": True})  # not alice's room: not in her token
    assert signed_claim(home) == ["ops"]
    assert signed_claim(home, "bob") is None  # bob is not in ops
    put(home, "lobby", {"signed": True})
    assert signed_claim(home) == ["lobby", "ops"]
    put(home, "ops", {"signed": False})
    put(home, "lobby", {"signed": False})
    assert signed_claim(home) is None


def test_a_policy_change_does_not_bump_the_sync_version(home):
    # Relays read the policy from tokens only: the sync document has nothing new.
    before = home.store.version()
    put(home, "ops", {"signed": True})
    assert home.store.version() == before


def test_an_unknown_room_is_404_and_a_bad_name_422(home):
    assert_problem(home.admin.get("/v1/rooms/nowhere"), 404, "room-not-found")
    doc = assert_problem(home.admin.get("/v1/rooms/Bad%20Room"), 422, "invalid-room")
    assert doc["field"] == "room"


@pytest.mark.parametrize(
    ("room", "body", "code", "field"),
    [
        ("Bad Room", {"signed": True}, "invalid-room", "room"),
        ("-ops", {"signed": True}, "invalid-room", "room"),
        ("x" * 65, {"signed": True}, "invalid-room", "room"),
        ("ops", {"signed": "true"}, "invalid-request", "signed"),
        ("ops", {"signed": 1}, "invalid-request", "signed"),
        ("ops", {"signed": None}, "invalid-request", "signed"),
        ("ops", {}, "invalid-request", "signed"),
        ("ops", {"signed": True, "members": 3}, "invalid-request", "members"),
        ("ops", [True], "invalid-request", None),
        ("ops", True, "invalid-request", None),
    ],
)
def test_put_refuses_bad_input(home, room, body, code, field):
    doc = assert_problem(put(home, room, body), 422, code)
    assert doc.get("field") == field
    assert home.admin.get("/v1/rooms/ops").json["signed"] is False


def test_put_refuses_what_is_not_json(home):
    resp = home.admin.request(
        "PUT", "/v1/rooms/ops", body=b"{", headers={"Content-Type": "application/json"}
    )
    assert_problem(resp, 400, "malformed-json")
    resp = home.admin.request(
        "PUT", "/v1/rooms/ops", body=b"signed", headers={"Content-Type": "text/plain"}
    )
    assert_problem(resp, 415, "unsupported-media-type")


@pytest.mark.parametrize(("kind", "name"), [("participant", "alice"), ("relay", "relay-1")])
def test_only_an_admin_sees_or_changes_rooms(home, kind, name):
    caller = home.caller(kind, name)
    assert_problem(put(home, "ops", {"signed": True}, caller), 403, "forbidden")
    assert_problem(caller.get("/v1/rooms"), 403, "forbidden")
    assert_problem(caller.get("/v1/rooms/ops"), 403, "forbidden")
    assert home.admin.get("/v1/rooms/ops").json["signed"] is False


def test_migration_5_adds_the_table_and_keeps_the_rest(tmp_path, pki):
    older_store(
        tmp_path / "home.db",
        4,
        [
            (
                "INSERT INTO participants VALUES (?, ?, 'active', 1, 1)",
                ("alice", "https://alice.example/in"),
            ),
            ("INSERT INTO participant_rooms VALUES (?, ?)", ("alice", "ops")),
        ],
    )
    home = home_under_test(tmp_path, pki)
    assert [r["room"] for r in home.admin.get("/v1/rooms").json["rooms"]] == ["ops"]
    assert put(home, "ops", {"signed": True}).json["members"] == 1
