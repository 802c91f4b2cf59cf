"""Signing keys, JWKS, access tokens and address cards: round trips, every refusal code,
RFC test vectors, and interoperability with an independent JOSE library (joserfc)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import warnings
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from dmr_appliance import tokens
from dmr_appliance.errors import TokenError
from dmr_appliance.tokens import (
    ACCESS_TYP,
    CARD_TYP,
    KeySet,
    SigningKey,
    issue_access_token,
    issue_card,
    jwk_thumbprint,
    verify_access_token,
    verify_card,
)

NOW = 1_700_000_000
ISSUER = "https://home.dmr.test"
THUMB = base64.urlsafe_b64encode(hashlib.sha256(b"participant cert DER").digest()).rstrip(b"=")
THUMB_S = THUMB.decode()
ENDPOINT = "https://alice.example:8443/dmr/inbox"

# RFC 8037 appendix A.1-A.3: an Ed25519 key and its RFC 7638 thumbprint.
RFC8037_D = "nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A"
RFC8037_X = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"
RFC8037_THUMBPRINT = "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def segment(value: Any) -> str:
    return b64(json.dumps(value).encode())


def forge(header: dict[str, Any], claims: Any, key: Ed25519PrivateKey) -> str:
    """A compact JWS signed by hand, so tests do not rely on the code under test."""
    signing_input = f"{segment(header)}.{segment(claims)}"
    return f"{signing_input}.{b64(key.sign(signing_input.encode()))}"


def decode_part(token: str, index: int) -> dict[str, Any]:
    return json.loads(unb64(token.split(".")[index]))


@pytest.fixture(scope="module")
def key() -> SigningKey:
    return SigningKey.generate(now=NOW - 3600)


@pytest.fixture(scope="module")
def keys(key: SigningKey) -> KeySet:
    return KeySet.from_signing_keys([key])


def access_claims(**changes: Any) -> dict[str, Any]:
    claims = {
        "iss": ISSUER,
        "sub": "alice",
        "aud": "dmr",
        "rooms": ["general"],
        "iat": NOW,
        "nbf": NOW,
        "exp": NOW + 600,
        "jti": "0123456789abcdef",
        "cnf": {"x5t#S256": THUMB_S},
    }
    claims.update(changes)
    return {name: value for name, value in claims.items() if value is not DROP}


def card_claims(**changes: Any) -> dict[str, Any]:
    claims = {
        "iss": ISSUER,
        "sub": "bob",
        "endpoint": ENDPOINT,
        "rooms": ["general"],
        "iat": NOW,
        "exp": NOW + 600,
    }
    claims.update(changes)
    return {name: value for name, value in claims.items() if value is not DROP}


DROP = object()


def header_for(key: SigningKey, typ: str | object = ACCESS_TYP, **changes: Any) -> dict:
    header = {"alg": "EdDSA", "typ": typ, "kid": key.kid, **changes}
    return {name: value for name, value in header.items() if value is not DROP}


def verify(token: str, keys: KeySet, **kwargs: Any) -> tokens.AccessToken:
    options = {"issuer": ISSUER, "cert_thumbprint": THUMB_S, "now": NOW + 1, **kwargs}
    return verify_access_token(token, keys, **options)


def refused(code: str, call: Any, *args: Any, **kwargs: Any) -> TokenError:
    with pytest.raises(TokenError) as caught:
        call(*args, **kwargs)
    assert caught.value.code == code, caught.value.detail
    assert caught.value.status == 401
    return caught.value


# -- keys and JWKS ------------------------------------------------------------------


def test_kid_is_rfc7638_thumbprint_of_rfc8037_test_vector() -> None:
    private = Ed25519PrivateKey.from_private_bytes(unb64(RFC8037_D))
    raw = private.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    assert b64(raw) == RFC8037_X
    assert jwk_thumbprint(private.public_key()) == RFC8037_THUMBPRINT
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    assert SigningKey.from_private_pem(pem, created_at=NOW).kid == RFC8037_THUMBPRINT


def test_kid_matches_independently_computed_thumbprint(key: SigningKey) -> None:
    jwk = key.public_jwk()
    canonical = '{"crv":"Ed25519","kty":"OKP","x":"' + jwk["x"] + '"}'
    assert key.kid == b64(hashlib.sha256(canonical.encode()).digest())
    assert jwk == {
        "kty": "OKP",
        "crv": "Ed25519",
        "x": jwk["x"],
        "kid": key.kid,
        "use": "sig",
        "alg": "EdDSA",
    }


def test_signing_key_refuses_a_kid_that_is_not_its_thumbprint(key: SigningKey) -> None:
    with pytest.raises(ValueError, match="thumbprint"):
        SigningKey("not-the-thumbprint", key.private_key, NOW)


def test_private_pem_round_trip(key: SigningKey) -> None:
    pem = key.private_pem()
    assert pem.startswith(b"-----BEGIN PRIVATE KEY-----")
    again = SigningKey.from_private_pem(pem, created_at=1, retired_at=2)
    assert (again.kid, again.created_at, again.retired_at) == (key.kid, 1, 2)
    assert again.private_pem() == pem


def test_from_private_pem_refuses_other_key_types() -> None:
    pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    with pytest.raises(ValueError, match="Ed25519"):
        SigningKey.from_private_pem(pem, created_at=NOW)


def test_jwks_round_trip_skips_keys_of_other_types(key: SigningKey) -> None:
    other = SigningKey.generate(now=NOW)
    doc = KeySet.from_signing_keys([key, other]).to_jwks()
    doc["keys"] += [
        {"kty": "RSA", "kid": "rsa", "n": "AQAB", "e": "AQAB"},
        {"kty": "EC", "crv": "P-256", "kid": "ec", "x": "AA", "y": "AA"},
        {"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"},
        {"kty": "OKP", "crv": "X25519", "kid": "x", "x": key.public_jwk()["x"]},
        {"kty": "OKP", "crv": "Ed25519", "kid": "enc", "use": "enc", "x": key.public_jwk()["x"]},
        {"kty": "OKP", "crv": "Ed25519", "kid": "short", "x": "AAAA"},
        {"kty": "OKP", "crv": "Ed25519", "kid": "no-x"},
        "not an object",
    ]
    loaded = KeySet.from_jwks(json.loads(json.dumps(doc)))
    assert loaded.kids == {key.kid, other.kid}
    assert loaded.to_jwks() == KeySet.from_signing_keys([key, other]).to_jwks()
    refused("token-unknown-kid", loaded.get, "rsa")


@pytest.mark.parametrize("doc", [{}, {"keys": "none"}, []])
def test_jwks_without_a_keys_list_is_refused(doc: Any) -> None:
    with pytest.raises(ValueError, match="keys"):
        KeySet.from_jwks(doc)


def test_retired_key_in_jwks_still_verifies_the_tokens_it_signed() -> None:
    old = SigningKey.generate(now=NOW - 86400)
    token = issue_access_token(
        old,
        issuer=ISSUER,
        subject="alice",
        rooms=["general"],
        cert_thumbprint=THUMB_S,
        lifetime=3600,
        now=NOW,
    )
    retired = SigningKey(old.kid, old.private_key, old.created_at, retired_at=NOW + 10)
    new = SigningKey.generate(now=NOW + 10)
    jwks = KeySet.from_signing_keys([new, retired]).to_jwks()
    assert verify(token, KeySet.from_jwks(jwks), now=NOW + 60).kid == old.kid
    with pytest.raises(ValueError, match="retired"):
        issue_card(
            retired,
            issuer=ISSUER,
            subject="bob",
            endpoint=ENDPOINT,
            rooms=[],
            lifetime=60,
            now=NOW + 20,
        )
    # Once it leaves the JWKS, its tokens are refused.
    refused("token-unknown-kid", verify, token, KeySet.from_signing_keys([new]), now=NOW + 60)


# -- round trips ----------------------------------------------------------------------


def test_access_token_round_trip(key: SigningKey, keys: KeySet) -> None:
    token = issue_access_token(
        key,
        issuer=ISSUER,
        subject="alice",
        rooms=["ops", "general", "ops"],
        cert_thumbprint=THUMB_S,
        lifetime=600,
        now=NOW,
        jti="j-1",
    )
    assert decode_part(token, 0) == {"alg": "EdDSA", "typ": ACCESS_TYP, "kid": key.kid}
    assert decode_part(token, 1) == access_claims(rooms=["general", "ops"], jti="j-1")
    assert verify(token, keys) == tokens.AccessToken(
        subject="alice",
        issuer=ISSUER,
        rooms=frozenset({"general", "ops"}),
        jti="j-1",
        issued_at=NOW,
        not_before=NOW,
        expires_at=NOW + 600,
        cert_thumbprint=THUMB_S,
        kid=key.kid,
    )


def test_access_token_jti_is_random(key: SigningKey) -> None:
    def make() -> str:
        return issue_access_token(
            key, issuer=ISSUER, subject="a", rooms=[], cert_thumbprint=THUMB_S, lifetime=60
        )

    first, second = decode_part(make(), 1)["jti"], decode_part(make(), 1)["jti"]
    assert first != second and len(first) >= 32


def test_card_round_trip(key: SigningKey, keys: KeySet) -> None:
    token = issue_card(
        key,
        issuer=ISSUER,
        subject="bob",
        endpoint=ENDPOINT,
        rooms=["general"],
        lifetime=600,
        now=NOW,
    )
    assert decode_part(token, 0) == {"alg": "EdDSA", "typ": CARD_TYP, "kid": key.kid}
    assert decode_part(token, 1) == card_claims()
    card = verify_card(token, keys, issuer=ISSUER, now=NOW + 1)
    assert card == tokens.Card(
        subject="bob",
        issuer=ISSUER,
        endpoint=ENDPOINT,
        rooms=frozenset({"general"}),
        issued_at=NOW,
        expires_at=NOW + 600,
        kid=key.kid,
    )


def test_issuing_refuses_bad_arguments(key: SigningKey) -> None:
    with pytest.raises(ValueError, match="https"):
        issue_card(
            key, issuer=ISSUER, subject="bob", endpoint="http://bob.example/", rooms=[], lifetime=60
        )
    with pytest.raises(ValueError, match="lifetime"):
        issue_access_token(
            key, issuer=ISSUER, subject="a", rooms=[], cert_thumbprint=THUMB_S, lifetime=0
        )
    with pytest.raises(TypeError, match="rooms"):
        issue_access_token(
            key, issuer=ISSUER, subject="a", rooms="general", cert_thumbprint=THUMB_S, lifetime=60
        )


# -- refusals, one code per cause --------------------------------------------------------


@pytest.mark.parametrize("alg", ["none", "None", "NONE"])
def test_alg_none_is_refused(key: SigningKey, keys: KeySet, alg: str) -> None:
    unsigned = f"{segment(header_for(key, alg=alg))}.{segment(access_claims())}."
    refused("token-alg-none", verify, unsigned, keys)
    # Even with a (meaningless) signature segment attached.
    refused("token-alg-none", verify, unsigned + "c2ln", keys)


def _public_secrets(key: SigningKey) -> list[bytes]:
    public = key.private_key.public_key()
    return [
        public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw),
        public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
        json.dumps(key.public_jwk()).encode(),
        key.public_jwk()["x"].encode(),
    ]


def test_hs256_signed_with_the_public_key_is_refused(key: SigningKey, keys: KeySet) -> None:
    # Key confusion: an attacker HMACs with the public key, hoping the verifier
    # uses it as an HMAC secret. Built by hand with hmac, for every encoding of it.
    for secret in _public_secrets(key):
        signing_input = f"{segment(header_for(key, alg='HS256'))}.{segment(access_claims())}"
        mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
        refused("token-alg-forbidden", verify, f"{signing_input}.{b64(mac)}", keys)


@pytest.mark.parametrize("alg", ["HS256", "RS256", "ES256", "PS256", "Ed25519", "eddsa"])
def test_any_other_alg_is_refused(key: SigningKey, keys: KeySet, alg: str) -> None:
    token = forge(header_for(key, alg=alg), access_claims(), key.private_key)
    refused("token-alg-forbidden", verify, token, keys)


def test_unknown_kid_is_refused(keys: KeySet) -> None:
    stranger = SigningKey.generate()
    token = forge(header_for(stranger), access_claims(), stranger.private_key)
    refused("token-unknown-kid", verify, token, keys)


def test_flipped_signature_byte_is_refused(key: SigningKey, keys: KeySet) -> None:
    token = forge(header_for(key), access_claims(), key.private_key)
    head, body, signature = token.split(".")
    raw = bytearray(unb64(signature))
    raw[7] ^= 0x01
    refused("token-bad-signature", verify, f"{head}.{body}.{b64(bytes(raw))}", keys)


def test_signature_by_another_key_under_a_trusted_kid_is_refused(
    key: SigningKey, keys: KeySet
) -> None:
    token = forge(header_for(key), access_claims(), Ed25519PrivateKey.generate())
    refused("token-bad-signature", verify, token, keys)


def test_altered_claims_break_the_signature(key: SigningKey, keys: KeySet) -> None:
    head, _, signature = forge(header_for(key), access_claims(), key.private_key).split(".")
    body = segment(access_claims(rooms=["general", "admin"]))
    refused("token-bad-signature", verify, f"{head}.{body}.{signature}", keys)


def test_empty_signature_is_refused(key: SigningKey, keys: KeySet) -> None:
    head, body, _ = forge(header_for(key), access_claims(), key.private_key).split(".")
    refused("token-bad-signature", verify, f"{head}.{body}.", keys)


@pytest.mark.parametrize("typ", ["JWT", "at+jwt", CARD_TYP, DROP])
def test_wrong_typ_is_refused(key: SigningKey, keys: KeySet, typ: object) -> None:
    token = forge(header_for(key, typ=typ), access_claims(), key.private_key)
    refused("token-wrong-typ", verify, token, keys)


def test_card_and_access_token_are_not_interchangeable(key: SigningKey, keys: KeySet) -> None:
    card = issue_card(
        key,
        issuer=ISSUER,
        subject="bob",
        endpoint=ENDPOINT,
        rooms=["general"],
        lifetime=600,
        now=NOW,
    )
    access = issue_access_token(
        key,
        issuer=ISSUER,
        subject="alice",
        rooms=["general"],
        cert_thumbprint=THUMB_S,
        lifetime=600,
        now=NOW,
    )
    refused("token-wrong-typ", verify, card, keys)
    refused("token-wrong-typ", verify_card, access, keys, issuer=ISSUER, now=NOW)


@pytest.mark.parametrize("aud", ["other", ["other", "more"], ["DMR"]])
def test_wrong_audience_is_refused(key: SigningKey, keys: KeySet, aud: object) -> None:
    token = forge(header_for(key), access_claims(aud=aud), key.private_key)
    refused("token-wrong-audience", verify, token, keys)


def test_audience_list_naming_dmr_is_accepted(key: SigningKey, keys: KeySet) -> None:
    token = forge(header_for(key), access_claims(aud=["other", "dmr"]), key.private_key)
    assert verify(token, keys).subject == "alice"


def test_wrong_issuer_is_refused(key: SigningKey, keys: KeySet) -> None:
    token = forge(header_for(key), access_claims(iss="https://evil.test"), key.private_key)
    refused("token-wrong-issuer", verify, token, keys)
    card = forge(header_for(key, typ=CARD_TYP), card_claims(iss="x"), key.private_key)
    refused("token-wrong-issuer", verify_card, card, keys, issuer=ISSUER, now=NOW)


def test_expired_is_refused_after_the_leeway(key: SigningKey, keys: KeySet) -> None:
    token = forge(header_for(key), access_claims(exp=NOW + 600), key.private_key)
    assert verify(token, keys, now=NOW + 630, leeway=30).expires_at == NOW + 600
    refused("token-expired", verify, token, keys, now=NOW + 631, leeway=30)
    refused("token-expired", verify, token, keys, now=NOW + 601, leeway=0)


def test_expired_card_is_refused(key: SigningKey, keys: KeySet) -> None:
    card = issue_card(
        key, issuer=ISSUER, subject="bob", endpoint=ENDPOINT, rooms=[], lifetime=60, now=NOW
    )
    refused("token-expired", verify_card, card, keys, issuer=ISSUER, now=NOW + 91)


@pytest.mark.parametrize("claim", ["nbf", "iat"])
def test_not_yet_valid_depends_on_the_leeway(key: SigningKey, keys: KeySet, claim: str) -> None:
    token = forge(header_for(key), access_claims(**{claim: NOW + 60}), key.private_key)
    refused("token-not-yet-valid", verify, token, keys, now=NOW, leeway=30)
    refused("token-not-yet-valid", verify, token, keys, now=NOW, leeway=0)
    assert verify(token, keys, now=NOW, leeway=60).subject == "alice"
    assert verify(token, keys, now=NOW + 45, leeway=30).subject == "alice"
    # The leeway boundary is inclusive, exactly like expiry's.
    assert verify(token, keys, now=NOW + 30, leeway=30).subject == "alice"
    refused("token-not-yet-valid", verify, token, keys, now=NOW + 29, leeway=30)


def test_card_issued_in_the_future_is_refused(key: SigningKey, keys: KeySet) -> None:
    card = issue_card(
        key, issuer=ISSUER, subject="bob", endpoint=ENDPOINT, rooms=[], lifetime=600, now=NOW + 300
    )
    refused("token-not-yet-valid", verify_card, card, keys, issuer=ISSUER, now=NOW)
    assert verify_card(card, keys, issuer=ISSUER, now=NOW, leeway=300).subject == "bob"


@pytest.mark.parametrize("cnf", [DROP, None, {}, {"x5t": THUMB_S}])
def test_missing_cnf_is_refused(key: SigningKey, keys: KeySet, cnf: object) -> None:
    token = forge(header_for(key), access_claims(cnf=cnf), key.private_key)
    refused("token-cnf-missing", verify, token, keys)


def test_cnf_of_another_certificate_is_refused(key: SigningKey, keys: KeySet) -> None:
    token = forge(header_for(key), access_claims(), key.private_key)
    other = b64(hashlib.sha256(b"another certificate").digest())
    refused("token-cnf-mismatch", verify, token, keys, cert_thumbprint=other)
    refused("token-cnf-mismatch", verify, token, keys, cert_thumbprint="")


# -- malformed -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "token",
    [
        "",
        "abc",
        "a.b",
        "a.b.c.d",
        "ab!.cd.ef",
        "ab cd.ef.gh",
        "a.b.c",  # segments of one character are not base64url
        segment({"alg": "EdDSA"}) + "..sig",
        b64(b"not json") + ".e30.c2ln",
        b64(b"\xff\xfe") + ".e30.c2ln",
        segment(["alg", "EdDSA"]) + ".e30.c2ln",
        b64(b"[" * 5000) + ".e30.c2ln",
        segment({"typ": ACCESS_TYP}) + ".e30.c2ln",
        segment({"alg": 1}) + ".e30.c2ln",
        "x" * (8 * 1024 + 1),
    ],
)
def test_malformed_tokens_are_refused(keys: KeySet, token: str) -> None:
    refused("token-malformed", verify, token, keys)


def test_non_string_token_is_refused(key: SigningKey, keys: KeySet) -> None:
    token = forge(header_for(key), access_claims(), key.private_key)
    refused("token-malformed", verify, token.encode(), keys)


def test_oversized_but_validly_signed_token_is_refused(key: SigningKey, keys: KeySet) -> None:
    token = forge(header_for(key), access_claims(padding="p" * 8000), key.private_key)
    refused("token-malformed", verify, token, keys)


@pytest.mark.parametrize(
    "header",
    [
        {"kid": DROP},
        {"kid": 7},
        {"crit": ["exp"]},
        {"b64": False, "crit": ["b64"]},
    ],
)
def test_malformed_headers_are_refused(key: SigningKey, keys: KeySet, header: dict) -> None:
    token = forge(header_for(key, **header), access_claims(), key.private_key)
    refused("token-malformed", verify, token, keys)


@pytest.mark.parametrize("claim", ["iss", "sub", "aud", "rooms", "iat", "nbf", "exp", "jti"])
def test_missing_access_claims_are_refused(key: SigningKey, keys: KeySet, claim: str) -> None:
    token = forge(header_for(key), access_claims(**{claim: DROP}), key.private_key)
    refused("token-malformed", verify, token, keys)


@pytest.mark.parametrize(
    "changes",
    [
        {"rooms": "general"},
        {"rooms": ["general", 1]},
        {"rooms": {"general": True}},
        {"sub": ""},
        {"sub": 42},
        {"iss": None},
        {"jti": 1},
        {"aud": 1},
        {"aud": ["dmr", 2]},
        {"exp": "tomorrow"},
        {"exp": True},
        {"exp": float("nan")},
        {"exp": float("inf")},
        {"iat": None},
        {"nbf": [NOW]},
        {"cnf": "thumbprint"},
        {"cnf": {"x5t#S256": 1}},
    ],
)
def test_wrong_claim_types_are_refused(key: SigningKey, keys: KeySet, changes: dict) -> None:
    token = forge(header_for(key), access_claims(**changes), key.private_key)
    refused("token-malformed", verify, token, keys)


@pytest.mark.parametrize("payload", [b"not json", b"[1, 2]", b"[" * 3000 + b"]" * 3000])
def test_payload_that_is_not_a_json_object_is_refused(
    key: SigningKey, keys: KeySet, payload: bytes
) -> None:
    signing_input = f"{segment(header_for(key))}.{b64(payload)}"
    token = f"{signing_input}.{b64(key.private_key.sign(signing_input.encode()))}"
    refused("token-malformed", verify, token, keys)


@pytest.mark.parametrize(
    "changes",
    [
        {"endpoint": "http://bob.example/inbox"},
        {"endpoint": "bob.example/inbox"},
        {"endpoint": "https:///inbox"},
        {"endpoint": "https://bob.example:99999/"},
        {"endpoint": 443},
        {"endpoint": DROP},
        {"rooms": DROP},
        {"rooms": [None]},
        {"exp": "soon"},
    ],
)
def test_malformed_cards_are_refused(key: SigningKey, keys: KeySet, changes: dict) -> None:
    card = forge(header_for(key, typ=CARD_TYP), card_claims(**changes), key.private_key)
    refused("token-malformed", verify_card, card, keys, issuer=ISSUER, now=NOW)


def test_refusal_order_names_the_first_failing_check(key: SigningKey, keys: KeySet) -> None:
    stranger = Ed25519PrivateKey.generate()
    # Everything wrong: the header decides before any key is looked up.
    everything = access_claims(iss="x", aud="y", exp=NOW - 1000, cnf=DROP)
    token = forge(header_for(key, alg="none", kid="nope", typ="JWT"), everything, stranger)
    refused("token-alg-none", verify, token, keys)
    token = forge(header_for(key, kid="nope", typ="JWT"), everything, stranger)
    refused("token-unknown-kid", verify, token, keys)
    token = forge(header_for(key, typ="JWT"), everything, stranger)
    refused("token-bad-signature", verify, token, keys)
    token = forge(header_for(key, typ="JWT"), everything, key.private_key)
    refused("token-wrong-typ", verify, token, keys)
    token = forge(header_for(key), everything, key.private_key)
    refused("token-wrong-audience", verify, token, keys)
    token = forge(header_for(key), access_claims(iss="x", exp=NOW - 1000), key.private_key)
    refused("token-wrong-issuer", verify, token, keys)
    token = forge(header_for(key), access_claims(exp=NOW - 1000, cnf=DROP), key.private_key)
    refused("token-expired", verify, token, keys)


# -- interoperability with joserfc -------------------------------------------------------


joserfc_jwt = pytest.importorskip("joserfc.jwt")
joserfc_jwk = pytest.importorskip("joserfc.jwk")


def joserfc_key(key: SigningKey, *, private: bool) -> Any:
    jwk = key.public_jwk()
    if private:
        raw = key.private_key.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
        jwk["d"] = b64(raw)
    return joserfc_jwk.OKPKey.import_key(jwk)


def test_our_tokens_verify_with_joserfc(key: SigningKey) -> None:
    token = issue_access_token(
        key,
        issuer=ISSUER,
        subject="alice",
        rooms=["general"],
        cert_thumbprint=THUMB_S,
        lifetime=600,
        now=NOW,
    )
    card = issue_card(
        key,
        issuer=ISSUER,
        subject="bob",
        endpoint=ENDPOINT,
        rooms=["general"],
        lifetime=600,
        now=NOW,
    )
    public = joserfc_key(key, private=False)
    with warnings.catch_warnings():  # joserfc warns that RFC 9864 deprecates "EdDSA"
        warnings.simplefilter("ignore")
        decoded = joserfc_jwt.decode(token, public, algorithms=["EdDSA"])
        decoded_card = joserfc_jwt.decode(card, public, algorithms=["EdDSA"])
    assert decoded.header == {"alg": "EdDSA", "typ": ACCESS_TYP, "kid": key.kid}
    assert decoded.claims["cnf"] == {"x5t#S256": THUMB_S}
    assert decoded.claims["sub"] == "alice"
    assert decoded_card.header["typ"] == CARD_TYP
    assert decoded_card.claims["endpoint"] == ENDPOINT


def test_joserfc_tokens_verify_with_ours(key: SigningKey, keys: KeySet) -> None:
    private = joserfc_key(key, private=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        token = joserfc_jwt.encode(header_for(key), access_claims(), private, algorithms=["EdDSA"])
        card = joserfc_jwt.encode(
            header_for(key, typ=CARD_TYP), card_claims(), private, algorithms=["EdDSA"]
        )
    assert verify(token, keys).cert_thumbprint == THUMB_S
    assert verify_card(card, keys, issuer=ISSUER, now=NOW).endpoint == ENDPOINT
    # And joserfc's signature is really checked: another key's JWKS does not verify it.
    other = KeySet.from_jwks({"keys": [{**SigningKey.generate().public_jwk(), "kid": key.kid}]})
    refused("token-bad-signature", verify, token, other)
