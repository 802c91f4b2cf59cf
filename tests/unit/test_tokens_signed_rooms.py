"""The access token's ``signed`` claim (issue 26, room policy): its rooms that admit only
signed messages. Issued sorted and only when there is one, read into
``AccessToken.signed_rooms``, refused when malformed; a token without it (an older home)
has none."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from dmr_appliance.errors import TokenError
from dmr_appliance.tokens import (
    ACCESS_TYP,
    KeySet,
    SigningKey,
    issue_access_token,
    verify_access_token,
)

NOW = 1_700_000_000
ISSUER = "https://home.dmr.test"
THUMB = "dGh1bWJwcmludA"


@pytest.fixture(scope="module")
def key() -> SigningKey:
    return SigningKey.generate(now=NOW - 3600)


@pytest.fixture(scope="module")
def keys(key: SigningKey) -> KeySet:
    return KeySet.from_signing_keys([key])


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def claims_of(token: str) -> dict[str, Any]:
    part = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def issue(key: SigningKey, rooms: list[str], **kwargs: Any) -> str:
    return issue_access_token(
        key,
        issuer=ISSUER,
        subject="alice",
        rooms=rooms,
        cert_thumbprint=THUMB,
        lifetime=600,
        now=NOW,
        **kwargs,
    )


def verify(token: str, keys: KeySet):
    return verify_access_token(token, keys, issuer=ISSUER, cert_thumbprint=THUMB, now=NOW + 1)


def forged(key: SigningKey, **changes: Any) -> str:
    """A token signed by hand with ``changes`` to its claims (None drops one)."""
    claims = {
        "iss": ISSUER,
        "sub": "alice",
        "aud": "dmr",
        "rooms": ["ops", "lobby"],
        "iat": NOW,
        "nbf": NOW,
        "exp": NOW + 600,
        "jti": "0123456789abcdef",
        "cnf": {"x5t#S256": THUMB},
        **changes,
    }
    header = {"alg": "EdDSA", "typ": ACCESS_TYP, "kid": key.kid}
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
    return f"{signing_input}.{b64(key.private_key.sign(signing_input.encode()))}"


def test_the_claim_round_trips_sorted(key: SigningKey, keys: KeySet) -> None:
    token = issue(key, ["lobby", "ops", "dev"], signed_rooms=["ops", "dev", "ops"])
    assert claims_of(token)["signed"] == ["dev", "ops"]
    assert verify(token, keys).signed_rooms == frozenset({"dev", "ops"})


def test_no_signed_room_leaves_the_claim_out(key: SigningKey, keys: KeySet) -> None:
    token = issue(key, ["lobby"], signed_rooms=[])
    assert "signed" not in claims_of(token)
    assert verify(token, keys).signed_rooms == frozenset()
    assert "signed" not in claims_of(issue(key, ["lobby"]))


def test_a_token_of_an_older_home_has_no_signed_rooms(key: SigningKey, keys: KeySet) -> None:
    assert verify(forged(key), keys).signed_rooms == frozenset()


def test_an_empty_claim_is_no_signed_room(key: SigningKey, keys: KeySet) -> None:
    assert verify(forged(key, signed=[]), keys).signed_rooms == frozenset()


@pytest.mark.parametrize("claim", ["ops", ["ops", 1], {"ops": True}, None, True, 1])
def test_a_malformed_claim_is_refused(key: SigningKey, keys: KeySet, claim: Any) -> None:
    with pytest.raises(TokenError) as caught:
        verify(forged(key, signed=claim), keys)
    assert (caught.value.code, caught.value.status) == ("token-malformed", 401)
    assert "claim signed" in caught.value.detail


def test_a_signed_room_must_be_one_of_the_tokens_rooms(key: SigningKey) -> None:
    with pytest.raises(ValueError, match="signed_rooms"):
        issue(key, ["lobby"], signed_rooms=["ops"])
    with pytest.raises(TypeError, match="rooms"):
        issue(key, ["ops"], signed_rooms="ops")
