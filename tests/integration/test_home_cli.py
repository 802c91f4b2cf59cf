"""The admin CLI against a real gunicorn home, through HomeClient with the admin identity.

Until the nginx router is in the test stack, the client connects to home directly with
the router's certificate and sets the admin's certificate header as the router would.
"""

from __future__ import annotations

import json

import pytest

from dmr_appliance import cli
from dmr_appliance.cli import _home_client
from dmr_appliance.client.home import HomeClient
from tests.support.home import running_home
from tests.support.identity import cert_headers

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def home(tmp_path_factory, pki):
    with running_home(tmp_path_factory.mktemp("home"), pki, workers=1, threads=8) as home:
        yield home


@pytest.fixture
def dmr(home, pki, monkeypatch, capsys):
    def as_router(args):
        return HomeClient(f"{home.url}/v1", cert=pki.cert("server", "router"),
                          key=pki.key("server", "router"), ca=pki.ca,
                          headers=cert_headers(pki, "admin", "admin"))

    monkeypatch.setattr(_home_client, "client_from_args", as_router)

    def run(*argv: str, code: int = 0) -> str:
        capsys.readouterr()
        assert cli.main(list(argv)) == code
        out = capsys.readouterr()
        return out.out if code == 0 else out.err

    return run


def test_participants_lifecycle(dmr):
    dmr("participants", "add", "alice", "--endpoint", "https://alice.example/in",
        "--room", "lobby", "--room", "ops")
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


def test_tokens_cards_and_keys(dmr, pki):
    dmr("participants", "add", "carol", "--endpoint", "https://carol.example/in",
        "--room", "dev")
    issued = json.loads(dmr("token", "issue", "carol", "--for-cert",
                            str(pki.cert("participant", "carol")), "--lifetime", "120", "--json"))
    assert issued["subject"] == "carol" and issued["expires_in"] == 120
    assert "revoked_at" in dmr("token", "revoke", issued["jti"])
    card = json.loads(dmr("card", "get", "carol", "--json"))
    assert card["endpoint"] == "https://carol.example/in"
    before = json.loads(dmr("keys", "list", "--json"))
    assert dmr("keys", "rotate").startswith("active key: ")
    after = json.loads(dmr("keys", "list", "--json"))
    assert len(after) == len(before) + 1
    assert [k["status"] for k in after][:2] == ["active", "retired"]


def test_instances_and_failures(dmr, home, pki):
    relay = HomeClient(f"{home.url}/v1", cert=pki.cert("server", "router"),
                       key=pki.key("server", "router"), ca=pki.ca,
                       headers=cert_headers(pki, "relay", "relay-2"))
    relay.heartbeat(instance="relay-2", address="127.0.0.1:8802", version="0.1",
                    sync_version=1, counters={"delivered": 1})
    assert dmr("instances").splitlines()[1].split()[:2] == ["relay-2", "healthy"]

    dmr("participants", "add", "dave", "--endpoint", "https://dave.example/in", "--room", "r")
    mid = "01J9Z3Q4W5E6R7T8Y9V0A1B2C3"
    sender = HomeClient(f"{home.url}/v1", cert=pki.cert("server", "router"),
                        key=pki.key("server", "router"), ca=pki.ca,
                        headers=cert_headers(pki, "admin", "admin"))
    sender.report_failure({"message_id": mid, "room": "r", "from": "dave", "to": ["erin"],
                           "attempts": [{"target": "https://router:8443", "outcome": "failed",
                                         "at": "2026-01-01T00:00:00Z", "status": 503}],
                           "envelope": {"id": mid}, "reported_at": "2026-01-01T00:00:01Z"})
    assert mid in dmr("failures", "list")
    assert json.loads(dmr("failures", "show", mid, "--json"))["envelope"] == {"id": mid}
    dmr("failures", "resolve", mid, "--note", "recipient was down; resent")
    assert dmr("failures", "list") == "(none)\n"
    assert mid in dmr("failures", "list", "--status", "resolved")
