"""Every route admits exactly the client kinds its OpenAPI operation lists (x-dmr-allow)."""

from __future__ import annotations

import json
from pathlib import Path

import jwt
import pytest

from dmr_appliance import pki as pki_mod
from tests.support.home import home_under_test
from tests.support.identity import CLIENT_CERT_HEADER, direct_headers, escaped_cert

OPENAPI = json.loads((Path(__file__).parents[2] / "dmr_appliance/openapi/home.json").read_text())
KINDS = {"admin": "admin", "relay": "relay-1", "participant": "alice"}
# Concrete values for path parameters; whether they exist does not matter here.
PATH_VALUES = {"{pid}": "bob", "{jti}": "0" * 32, "{mid}": "0190b4a2-0000-7000-8000-000000000000",
               "{name}": "relay-1"}


def operations():
    for path, item in OPENAPI["paths"].items():
        for method, op in item.items():
            if method != "parameters":
                concrete = path
                for name, value in PATH_VALUES.items():
                    concrete = concrete.replace(name, value)
                yield method.upper(), concrete, op["x-dmr-allow"]


CASES = [(m, p, kind, kind in allowed) for m, p, allowed in operations() if allowed
         for kind in (*KINDS, None)]


@pytest.fixture(scope="module")
def home(tmp_path_factory, pki):
    home = home_under_test(tmp_path_factory.mktemp("home"), pki)
    home.add("alice", ["lobby"])
    home.add("bob", ["lobby"])
    return home


@pytest.mark.parametrize(("method", "path", "kind", "allowed"), CASES,
                         ids=[f"{m} {p} as {k}" for m, p, k, _ in CASES])
def test_route_admits_only_its_kinds(home, method, path, kind, allowed):
    caller = home.caller(kind, KINDS.get(kind))
    # Requests that change nothing (empty bodies fail validation) after the access check.
    resp = caller.request(method, path, body=b"", headers={"Content-Type": "application/json"},
                          params={"wait": "0"} if path == "/v1/sync" else None)
    if allowed:
        assert resp.status_code != 403 or resp.json["type"] not in (
            "urn:dmr:problem:forbidden", "urn:dmr:problem:no-client-identity"), resp.text
    else:
        assert resp.status_code == 403, resp.text
        assert resp.headers["content-type"] == "application/problem+json"
        expected = "no-client-identity" if kind is None else "forbidden"
        assert resp.json["type"] == f"urn:dmr:problem:{expected}"


def test_every_app_route_is_in_the_openapi_document(home):
    documented = {(m, p) for m, p, _ in operations()}
    assert ("POST", "/v1/participants/bob/revoke") in documented
    assert len(documented) == sum(len([k for k in v if k != "parameters"])
                                  for v in OPENAPI["paths"].values())


@pytest.mark.parametrize("status", ["suspend", "revoke"])
def test_inactive_participant_gets_nothing(tmp_path, pki, status):
    home = home_under_test(tmp_path, pki)
    home.add("alice", ["lobby"])
    home.add("bob", ["lobby"])
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
    home = home_under_test(tmp_path, pki)
    home.add("alice", ["ops"])
    forged = {**direct_headers(pki, "participant", "alice"),
              CLIENT_CERT_HEADER: escaped_cert(pki.cert("admin", "admin"))}
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
        pki_mod.load_certificate(pki.cert("participant", "alice").read_bytes()))


def test_no_identity_without_the_gate_header(tmp_path, pki):
    home = home_under_test(tmp_path, pki)
    resp = home.caller(None).get(
        "/v1/participants", headers={CLIENT_CERT_HEADER: escaped_cert(pki.cert("admin", "admin"))})
    assert resp.status_code == 403
    assert resp.json["type"] == "urn:dmr:problem:no-client-identity"
