"""The admin CLI as an operator runs it: over HTTPS through the real nginx router to a
real gunicorn home, with the admin certificate (the local stack's)."""

from __future__ import annotations

import json

import pytest

from dmr_appliance import cli, pki
from tests.support import stack_kit

pytestmark = [pytest.mark.slow, pytest.mark.needs_nginx, pytest.mark.stack(relays=1)]


@pytest.fixture
def dmr(stack, monkeypatch, capsys):
    cert, key = stack.cert("admin", "admin")
    for name, value in [
        ("DMR_HOME_URL", stack.home_url),
        ("DMR_CLIENT_CERT", cert),
        ("DMR_CLIENT_KEY", key),
        ("DMR_CA", stack.ca),
    ]:
        monkeypatch.setenv(name, str(value))

    def run(*argv: str, code: int = 0) -> str:
        capsys.readouterr()
        assert cli.main(list(argv)) == code
        out = capsys.readouterr()
        return out.out if code == 0 else out.err

    return run


def test_participants_lifecycle(dmr):
    dmr(
        "participants",
        "add",
        "alice",
        "--endpoint",
        "https://alice.example/in",
        "--room",
        "lobby",
        "--room",
        "ops",
    )
    dmr("participants", "add", "bob", "--endpoint", "https://bob.example/in", "--room", "lobby")
    table = dmr("participants", "list").splitlines()
    assert table[0].split() == ["ID", "STATUS", "ROOMS", "ENDPOINT", "UPDATED_AT"]
    assert table[1].split()[:3] == ["alice", "active", "lobby,ops"]
    dmr("participants", "suspend", "bob")
    listed = json.loads(dmr("participants", "list", "--status", "suspended", "--json"))
    assert [p["id"] for p in listed] == ["bob"]
    assert "status      active" in dmr("participants", "reinstate", "bob")
    assert json.loads(dmr("participants", "revoke", "bob", "--json"))["status"] == "revoked"
    err = dmr("participants", "reinstate", "bob", code=1)
    assert err.startswith("dmr: ") and "revoked" in err
    dmr("participants", "delete", "bob")
    assert "no participant 'bob'" in dmr("participants", "show", "bob", code=1)


def test_tokens_cards_and_keys(dmr, stack):
    dmr("participants", "add", "carol", "--endpoint", "https://carol.example/in", "--room", "dev")
    # A token is bound to the participant's own certificate, checked against CA and CRL.
    refused = dmr(
        "token", "issue", "carol", "--for-cert", str(stack.cert("participant", "alice")[0]), code=1
    )
    assert refused.strip() == "dmr: the certificate is participant 'alice', not participant 'carol'"
    carol = pki.issue(stack.pki_dir, "participant", "carol", force=True).cert
    issued = json.loads(
        dmr("token", "issue", "carol", "--for-cert", str(carol), "--lifetime", "120", "--json")
    )
    assert issued["subject"] == "carol" and issued["expires_in"] == 120
    assert "revoked_at" in dmr("token", "revoke", issued["jti"])
    card = json.loads(dmr("card", "get", "carol", "--json"))
    assert card["endpoint"] == "https://carol.example/in"
    before = json.loads(dmr("keys", "list", "--json"))
    assert dmr("keys", "rotate").startswith("active key: ")
    after = json.loads(dmr("keys", "list", "--json"))
    assert len(after) == len(before) + 1
    assert [k["status"] for k in after][:2] == ["active", "retired"]


def test_instances_and_failures(dmr, stack):
    # The stack's relay beats through the router on its own.
    assert dmr("instances").splitlines()[1].split()[:2] == ["relay-1", "healthy"]

    dmr("participants", "add", "dave", "--endpoint", "https://dave.example/in", "--room", "r")
    mid = "01J9Z3Q4W5E6R7T8Y9V0A1B2C3"
    stack.admin_client().report_failure(
        {
            "message_id": mid,
            "room": "r",
            "from": "dave",
            "to": ["erin"],
            "attempts": [
                {
                    "target": "https://router:8443",
                    "outcome": "failed",
                    "at": "2026-01-01T00:00:00Z",
                    "status": 503,
                }
            ],
            "envelope": {"id": mid},
            "reported_at": "2026-01-01T00:00:01Z",
        }
    )
    assert mid in dmr("failures", "list")
    assert json.loads(dmr("failures", "show", mid, "--json"))["envelope"] == {"id": mid}
    assert json.loads(dmr("failures", "show", mid, "--from", "dave", "--json"))["from"] == "dave"
    assert dmr("failures", "counts").splitlines()[1].split() == ["dave", "1", "0"]
    dmr("failures", "resolve", mid, "--note", "recipient was down; resent")
    assert dmr("failures", "list") == "(none)\n"
    assert mid in dmr("failures", "list", "--status", "resolved")


def test_a_room_marked_signed_refuses_an_unsigned_send(dmr, stack):
    # Issue 26, room policy: the mark reaches the relay in alice's next token, and her
    # unsigned message is refused there before any delivery.
    stack_kit.ensure_participant(stack, "alice", stack.endpoint("alice"), ["lobby", "ops"])
    stack_kit.ensure_participant(stack, "bob", stack.endpoint("bob"), ["ops"])
    assert json.loads(dmr("rooms", "set", "ops", "--signed", "--json"))["signed"] is True
    assert dmr("rooms", "list").splitlines()[0].split() == [
        "ROOM",
        "SIGNED",
        "MEMBERS",
        "UPDATED_AT",
    ]
    try:
        proc = stack_kit.dmr_send(
            stack, "--room", "ops", "--to", "bob", "--data", '{"n": 1}', "--no-sign"
        )  # dmr send signs by default (issue 26): this test is about an unsigned one
        said = (proc.stdout + proc.stderr).decode()
        assert (
            proc.returncode != 0 and "rejected  403  1 attempt  403 signature-required" in said
        ), said
    finally:
        dmr("rooms", "set", "ops", "--unsigned")
