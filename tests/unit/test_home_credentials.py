"""Access tokens bound to the presented certificate, cards, key rotation and revocation."""

from __future__ import annotations

import stat

import pytest

from dmr_appliance import pki as pki_mod
from dmr_appliance import tokens
from dmr_appliance.errors import TokenError
from dmr_appliance.home.deps import token_horizon
from tests.support.home import home_under_test

# Each test runs on SQLite and on PostgreSQL (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("store_backend")


@pytest.fixture
def home(tmp_path, pki):
    home = home_under_test(tmp_path, pki)
    home.add("alice", ["lobby", "ops"])
    home.add("bob", ["lobby", "dev"])
    home.add("carol", ["dev"])
    return home


def thumbprint(pki, kind, name):
    return pki_mod.cert_thumbprint(pki_mod.load_certificate(pki.pem(kind, name)))


def keyset(home):
    return tokens.KeySet.from_jwks(home.relay().get("/v1/jwks").json)


def verify(home, token, cert_thumbprint):
    return tokens.verify_access_token(
        token, keyset(home), issuer=home.config.issuer, cert_thumbprint=cert_thumbprint
    )


def test_participant_token_is_bound_to_its_certificate(home, pki):
    resp = home.participant("alice").post("/v1/tokens")
    assert resp.status_code == 201, resp.text
    token = verify(home, resp.json["access_token"], thumbprint(pki, "participant", "alice"))
    assert token.subject == "alice" and token.rooms == {"lobby", "ops"}
    assert token.expires_at - token.issued_at == home.config.tokens.access_ttl
    with pytest.raises(TokenError) as err:
        verify(home, resp.json["access_token"], thumbprint(pki, "participant", "bob"))
    assert err.value.code == "token-cnf-mismatch"


def test_participant_cannot_get_a_token_for_someone_else(home):
    resp = home.participant("alice").post("/v1/tokens", json={"participant": "bob"})
    assert resp.status_code == 403


def test_admin_issues_for_a_named_certificate(home, pki):
    tp = thumbprint(pki, "participant", "bob")
    pem = pki.pem("participant", "bob")
    resp = home.admin.post(
        "/v1/tokens", json={"participant": "bob", "certificate": pem, "lifetime": 60}
    )
    assert resp.status_code == 201, resp.text
    assert verify(home, resp.json["access_token"], tp).subject == "bob"
    too_long = home.config.tokens.access_max_ttl + 1
    resp = home.admin.post(
        "/v1/tokens", json={"participant": "bob", "certificate": pem, "lifetime": too_long}
    )
    assert resp.status_code == 422


def test_admin_token_needs_the_participants_own_certificate(home, pki):
    for body, code in [
        (
            {"participant": "bob", "cert_thumbprint": thumbprint(pki, "participant", "bob")},
            "invalid-request",
        ),
        ({"participant": "bob", "certificate": pki.pem("participant", "alice")}, "invalid-request"),
        ({"participant": "bob", "certificate": pki.pem("relay", "relay-1")}, "invalid-request"),
        ({"participant": "bob", "certificate": "not a certificate"}, "client-cert-invalid"),
    ]:
        resp = home.admin.post("/v1/tokens", json=body)
        assert resp.json["type"] == f"urn:dmr:problem:{code}", (body, resp.json)


def test_cards_only_for_shared_rooms(home):
    resp = home.participant("alice").get("/v1/cards/bob")
    assert resp.status_code == 200, resp.text
    card = tokens.verify_card(resp.json["card"], keyset(home), issuer=home.config.issuer)
    assert card.subject == "bob" and card.rooms == {"lobby"}  # not bob's other rooms
    assert card.endpoint == "https://bob.example/inbox"
    resp = home.participant("alice").get("/v1/cards/carol")
    assert resp.status_code == 403 and resp.json["type"] == "urn:dmr:problem:no-shared-room"
    assert set(home.admin.get("/v1/cards/bob").json["rooms"]) == {"lobby", "dev"}


def test_no_card_for_a_suspended_target(home):
    home.admin.post("/v1/participants/bob/suspend")
    assert home.participant("alice").get("/v1/cards/bob").status_code == 409


def test_a_participant_learns_nothing_of_participants_outside_its_rooms(home):
    home.admin.post("/v1/participants/carol/suspend")
    for pid in ("carol", "nobody"):  # suspended, unknown: both just "no shared room"
        resp = home.participant("alice").get(f"/v1/cards/{pid}")
        assert resp.status_code == 403 and resp.json["type"] == "urn:dmr:problem:no-shared-room"


def test_rotation_keeps_old_tokens_verifiable(home, pki):
    old = home.participant("alice").post("/v1/tokens").json["access_token"]
    v = home.store.version()
    rotated = home.admin.post("/v1/keys/rotate").json
    assert home.store.version() == v + 1
    assert [k["status"] for k in rotated["keys"]] == ["active", "retired"]
    new = home.participant("alice").post("/v1/tokens").json["access_token"]
    tp = thumbprint(pki, "participant", "alice")
    assert verify(home, old, tp).kid != verify(home, new, tp).kid
    assert len(home.relay().get("/v1/sync").json["jwks"]["keys"]) == 2


def test_retired_key_leaves_the_jwks_after_its_tokens_expire(home):
    home.admin.post("/v1/keys/rotate")
    with home.store.write() as conn:  # retired long enough ago
        conn.execute(
            "UPDATE signing_keys SET retired_at = retired_at - ?", (token_horizon(home.config) + 1,)
        )
    assert len(home.relay().get("/.well-known/jwks.json").json["keys"]) == 1
    statuses = [k["status"] for k in home.admin.get("/v1/keys").json["keys"]]
    assert statuses == ["active", "expired"]


@pytest.mark.sqlite_only
def test_private_keys_are_0600(home):
    files = list(home.config.keys_dir.glob("*.pem"))
    assert len(files) == 1
    assert stat.S_IMODE(files[0].stat().st_mode) == 0o600


def test_revoked_token_is_listed_in_sync(home):
    issued = home.participant("alice").post("/v1/tokens").json
    resp = home.admin.post(f"/v1/tokens/{issued['jti']}/revoke")
    assert resp.status_code == 200, resp.text
    listed = home.relay().get("/v1/sync").json["revoked_tokens"]
    assert listed == [{"jti": issued["jti"], "expires_at": issued["expires_at"]}]
    assert home.admin.post("/v1/tokens/unknown/revoke").status_code == 404
