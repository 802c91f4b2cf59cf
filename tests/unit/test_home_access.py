"""Every route admits exactly the client kinds its OpenAPI operation lists (x-dmr-allow), and
answers each of them with what the route itself answers (its status and body shape)."""

from __future__ import annotations

import json
from pathlib import Path

import jwt
import pytest

from dmr_appliance import pki as pki_mod
from tests.support.home import home_under_test
from tests.support.identity import CLIENT_CERT_HEADER, direct_headers, escaped_cert
from tests.support.problems import assert_problem

# Each test runs on SQLite and on PostgreSQL (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("store_backend")

OPENAPI = json.loads((Path(__file__).parents[2] / "dmr_appliance/openapi/home.json").read_text())
KINDS = {"admin": "admin", "relay": "relay-1", "participant": "alice"}
# Concrete values for path parameters; whether they exist does not matter here.
PATH_VALUES = {
    "{pid}": "bob",
    "{jti}": "0" * 32,
    "{mid}": "0190b4a2-0000-7000-8000-000000000000",
    "{name}": "relay-1",
    "{room}": "lobby",
}


def operations():
    for path, item in OPENAPI["paths"].items():
        for method, op in item.items():
            if method != "parameters":
                concrete = path
                for name, value in PATH_VALUES.items():
                    concrete = concrete.replace(name, value)
                yield method.upper(), concrete, op["x-dmr-allow"]


CASES = [
    (m, p, kind, kind in allowed)
    for m, p, allowed in operations()
    if allowed
    for kind in (*KINDS, None)
]
ALLOWED = [(m, p, kind) for m, p, kind, allowed in CASES if allowed]
DENIED = [(m, p, kind) for m, p, kind, allowed in CASES if not allowed]

# What a home holding alice and bob (lobby) answers each listed kind's request with an
# empty JSON body: the status, and the body's shape (a JSON object's keys; a problem's
# code; the content type of anything else, "" for no body).
LOBBY = {"lobby": ("alice", "bob")}
PARTICIPANT = "created_at endpoint id rooms status updated_at"
CARD = "card endpoint expires_at rooms subject"
TOKEN = "access_token expires_at expires_in jti rooms subject token_type"
ROOM = "members room signed updated_at"
SYNC = "generated_at jwks revoked_participants revoked_tokens suspended_participants version"
MID, JTI = PATH_VALUES["{mid}"], PATH_VALUES["{jti}"]


def answered(request: str, status: int, shape: str, kinds: str = "admin") -> dict:
    return {f"{request} as {kind}": (status, shape) for kind in kinds.split()}


ANSWERS = {
    **answered("GET /v1/participants", 200, "participants"),
    **answered("POST /v1/participants", 400, "problem:malformed-json"),
    **answered("GET /v1/participants/bob", 200, PARTICIPANT),
    **answered("DELETE /v1/participants/bob", 204, ""),
    **answered("POST /v1/participants/bob/suspend", 200, PARTICIPANT),
    **answered("POST /v1/participants/bob/reinstate", 200, PARTICIPANT),
    **answered("POST /v1/participants/bob/revoke", 200, PARTICIPANT),
    **answered("GET /v1/rooms", 200, "rooms"),
    **answered("GET /v1/rooms/lobby", 200, ROOM),
    **answered("PUT /v1/rooms/lobby", 400, "problem:malformed-json"),
    **answered("POST /v1/tokens", 422, "problem:invalid-request"),
    **answered("POST /v1/tokens", 201, TOKEN, "participant"),
    **answered(f"POST /v1/tokens/{JTI}/revoke", 404, "problem:token-not-found"),
    **answered("GET /v1/cards/bob", 200, CARD, "admin participant"),
    **answered("GET /v1/keys", 200, "keys"),
    **answered("POST /v1/keys/rotate", 200, "active keys"),
    **answered("GET /v1/jwks", 200, "keys", "admin relay participant"),
    **answered("GET /.well-known/jwks.json", 200, "keys", "admin relay participant"),
    **answered("GET /v1/sync", 200, SYNC, "admin relay"),
    **answered("POST /v1/heartbeats", 400, "problem:malformed-json", "relay"),
    **answered("GET /v1/instances", 200, "instances"),
    **answered("DELETE /v1/instances/relay-1", 404, "problem:instance-not-found"),
    **answered("GET /v1/failures", 200, "failures senders", "admin participant"),
    **answered("POST /v1/failures", 400, "problem:malformed-json", "admin participant"),
    **answered(f"GET /v1/failures/{MID}", 404, "problem:failure-not-found", "admin participant"),
    **answered(
        f"POST /v1/failures/{MID}/resolve", 400, "problem:malformed-json", "admin participant"
    ),
    **answered("GET /", 200, "text/html"),
}


def ask(home, method: str, path: str, kind: str | None):
    """The route asked as ``kind`` with an empty JSON body (a sync poll does not wait)."""
    return home.caller(kind, KINDS.get(kind)).request(
        method,
        path,
        body=b"",
        headers={"Content-Type": "application/json"},
        params={"wait": "0"} if path == "/v1/sync" else None,
    )


@pytest.fixture(scope="module")
def home(tmp_path_factory, pki):
    return home_under_test(tmp_path_factory.mktemp("home"), pki, rooms=LOBBY)


@pytest.mark.parametrize(
    ("method", "path", "kind"), DENIED, ids=[f"{m} {p} as {k}" for m, p, k in DENIED]
)
def test_route_admits_only_its_kinds(home, method, path, kind):
    expected = "no-client-identity" if kind is None else "forbidden"
    assert_problem(ask(home, method, path, kind), 403, expected)


@pytest.mark.parametrize(
    ("method", "path", "kind"), ALLOWED, ids=[f"{m} {p} as {k}" for m, p, k in ALLOWED]
)
def test_a_listed_kind_gets_the_routes_own_answer(tmp_path, pki, method, path, kind):
    # A fresh home each time: the answers that change something (DELETE bob, suspend bob,
    # rotate keys) must not change the next one's.
    resp = ask(home_under_test(tmp_path, pki, rooms=LOBBY), method, path, kind)
    status, shape = ANSWERS[f"{method} {path} as {kind}"]
    if shape.startswith("problem:"):
        assert_problem(resp, status, shape.removeprefix("problem:"))
    else:
        assert (resp.status_code, body_shape(resp)) == (status, shape), resp.text


def body_shape(resp) -> str:
    """A JSON object's keys (sorted, space-separated); else the content type ("" with no
    body, as a 204 has none)."""
    kind = resp.headers.get("content-type", "")
    if kind == "application/json":
        return " ".join(sorted(resp.json))
    assert resp.content if kind else not resp.content, resp.content[:200]
    return kind.split(";")[0]


def test_every_listed_kind_has_its_answer_written_down():
    assert sorted(ANSWERS) == sorted(f"{m} {p} as {k}" for m, p, k in ALLOWED)


def test_every_app_route_is_in_the_openapi_document(home):
    documented = {(m, p) for m, p, _ in operations()}
    assert ("POST", "/v1/participants/bob/revoke") in documented
    assert len(documented) == sum(
        len([k for k in v if k != "parameters"]) for v in OPENAPI["paths"].values()
    )


@pytest.mark.parametrize("status", ["suspend", "revoke"])
def test_inactive_participant_gets_nothing(tmp_path, pki, status):
    home = home_under_test(tmp_path, pki, rooms=LOBBY)
    assert home.admin.post(f"/v1/participants/alice/{status}").status_code == 200
    alice = home.participant("alice")
    for resp in (alice.post("/v1/tokens"), alice.get("/v1/cards/bob")):
        assert resp.status_code == 403
        assert resp.json["type"] == "urn:dmr:problem:participant-not-active"


def test_unregistered_participant_gets_nothing(tmp_path, pki):
    home = home_under_test(tmp_path, pki)
    resp = home.participant("carol").post("/v1/tokens")
    assert resp.status_code == 403 and "not registered" in resp.json["detail"]


def test_a_forged_header_from_a_non_router_peer_grants_nothing(tmp_path, pki):
    # The trust-boundary reproduction: alice's own certificate at the gate, the admin's in
    # the header. Home sees alice, who may not list participants.
    home = home_under_test(tmp_path, pki, rooms={"ops": ("alice",)})
    forged = {
        **direct_headers(pki, "participant", "alice"),
        CLIENT_CERT_HEADER: escaped_cert(pki.cert("admin", "admin")),
    }
    resp = home.caller(None).get("/v1/participants", headers=forged)
    assert resp.status_code == 403
    assert resp.json["type"] == "urn:dmr:problem:forbidden"
    # alice asks for a token bound to bob's certificate: she gets one for herself, or none.
    forged[CLIENT_CERT_HEADER] = escaped_cert(pki.cert("participant", "bob"))
    resp = home.caller(None).post("/v1/tokens", headers=forged)
    assert resp.status_code == 201
    claims = jwt.decode(resp.json["access_token"], options={"verify_signature": False})
    assert claims["sub"] == "alice"
    assert claims["cnf"]["x5t#S256"] == pki_mod.cert_thumbprint(
        pki_mod.load_certificate(pki.cert("participant", "alice").read_bytes())
    )


def test_no_identity_without_the_gate_header(tmp_path, pki):
    home = home_under_test(tmp_path, pki)
    resp = home.caller(None).get(
        "/v1/participants", headers={CLIENT_CERT_HEADER: escaped_cert(pki.cert("admin", "admin"))}
    )
    assert resp.status_code == 403
    assert resp.json["type"] == "urn:dmr:problem:no-client-identity"
