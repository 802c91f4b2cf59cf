"""Home's Ed25519 signing keys, its JWKS, access tokens and address cards.

Pure: no Falcon, no sockets. Tokens are compact JWS (``EdDSA``) made and checked with
pyjwt; claims are checked here, against an explicit ``now``, so the same code runs on
pyjwt 2.6 (Debian 12) and current releases. Every refusal is a ``TokenError`` whose
``code`` names the exact cause; the checks run in a fixed order (shape, header, key,
signature, type, claims) so a given token always gets the same code.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import math
import re
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from dmr_appliance.errors import TokenError
from dmr_appliance.ids import endpoint_problem, is_endpoint_url

ACCESS_TYP = "dmr-at+jwt"
CARD_TYP = "dmr-card+jwt"
AUDIENCE = "dmr"
ALGORITHM = "EdDSA"

# Far above any token home issues; bounds the work an attacker can make us do.
MAX_TOKEN_LENGTH = 8 * 1024

_SEGMENT = re.compile(r"[A-Za-z0-9_-]+")
# The signature may be empty so that a forged ``alg: none`` token is named as such.
_COMPACT = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
_ACCESS_CLAIMS = ("iss", "sub", "aud", "rooms", "iat", "nbf", "exp", "jti")
_CARD_CLAIMS = ("iss", "sub", "endpoint", "rooms", "iat", "exp")


def _b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64url_decode(text: str) -> bytes:
    if not _SEGMENT.fullmatch(text):
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _now(now: int | None) -> int:
    return int(time.time()) if now is None else now


def _raw_public(public_key: Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def jwk_thumbprint(public_key: Ed25519PublicKey) -> str:
    """RFC 7638 thumbprint (SHA-256, base64url) of an Ed25519 public key; used as ``kid``."""
    # RFC 7638 §3: only the required members, sorted, no whitespace.
    canonical = json.dumps(
        {"crv": "Ed25519", "kty": "OKP", "x": _b64url_encode(_raw_public(public_key))},
        separators=(",", ":"),
        sort_keys=True,
    )
    return _b64url_encode(hashlib.sha256(canonical.encode("ascii")).digest())


def _public_jwk(kid: str, public_key: Ed25519PublicKey) -> dict[str, str]:
    return {
        "kty": "OKP",
        "crv": "Ed25519",
        "x": _b64url_encode(_raw_public(public_key)),
        "kid": kid,
        "use": "sig",
        "alg": ALGORITHM,
    }


@dataclass(frozen=True)
class SigningKey:
    """One of home's signing keys. ``retired_at`` set: it no longer signs, but its
    public half stays in the JWKS until every token it signed has expired."""

    kid: str
    private_key: Ed25519PrivateKey
    created_at: int
    retired_at: int | None = None

    def __post_init__(self) -> None:
        if self.kid != jwk_thumbprint(self.private_key.public_key()):
            raise ValueError("kid must be the RFC 7638 thumbprint of the key")

    @classmethod
    def generate(cls, now: int | None = None) -> SigningKey:
        private_key = Ed25519PrivateKey.generate()
        return cls(jwk_thumbprint(private_key.public_key()), private_key, _now(now))

    @classmethod
    def from_private_pem(
        cls, pem: bytes, created_at: int, retired_at: int | None = None
    ) -> SigningKey:
        private_key = serialization.load_pem_private_key(pem, password=None)
        if not isinstance(private_key, Ed25519PrivateKey):
            raise ValueError("signing keys are Ed25519; this PEM holds another key type")
        return cls(jwk_thumbprint(private_key.public_key()), private_key, created_at, retired_at)

    def private_pem(self) -> bytes:
        """PKCS#8 PEM, unencrypted: the caller stores it with mode 0600."""
        return self.private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    def public_jwk(self) -> dict[str, str]:
        return _public_jwk(self.kid, self.private_key.public_key())

    def is_retired(self, now: int | None = None) -> bool:
        return self.retired_at is not None and self.retired_at <= _now(now)


def _key_from_jwk(entry: object) -> tuple[str, Ed25519PublicKey] | None:
    """The (kid, key) of an Ed25519 signing JWK; None for anything we cannot use."""
    if not isinstance(entry, Mapping):
        return None
    if entry.get("kty") != "OKP" or entry.get("crv") != "Ed25519":
        return None
    if entry.get("use", "sig") != "sig" or entry.get("alg", ALGORITHM) != ALGORITHM:
        return None
    x = entry.get("x")
    if not isinstance(x, str):
        return None
    try:
        public_key = Ed25519PublicKey.from_public_bytes(_b64url_decode(x))
    except ValueError:
        return None
    kid = entry.get("kid")
    return (kid if isinstance(kid, str) and kid else jwk_thumbprint(public_key)), public_key


class KeySet:
    """The public keys a verifier trusts, by ``kid`` (what the JWKS publishes)."""

    def __init__(self, keys: Mapping[str, Ed25519PublicKey]) -> None:
        self._keys = dict(keys)

    @classmethod
    def from_jwks(cls, doc: Mapping[str, Any]) -> KeySet:
        """Keys of a JWKS document; entries that are not Ed25519 signing keys are skipped
        (a JWKS may legitimately carry other keys), a document without ``keys`` is not."""
        entries = doc.get("keys") if isinstance(doc, Mapping) else None
        if not isinstance(entries, list):
            raise ValueError("a JWKS is an object with a 'keys' list")
        return cls(dict(filter(None, map(_key_from_jwk, entries))))

    @classmethod
    def from_signing_keys(cls, keys: Iterable[SigningKey]) -> KeySet:
        return cls({key.kid: key.private_key.public_key() for key in keys})

    def to_jwks(self) -> dict[str, list[dict[str, str]]]:
        return {"keys": [_public_jwk(kid, key) for kid, key in self._keys.items()]}

    def get(self, kid: str) -> Ed25519PublicKey:
        try:
            return self._keys[kid]
        except KeyError:
            raise TokenError(f"no key with kid {kid!r}", code="token-unknown-kid") from None

    @property
    def kids(self) -> frozenset[str]:
        return frozenset(self._keys)

    def __len__(self) -> int:
        return len(self._keys)


# -- issuing ------------------------------------------------------------------------


def _sign(key: SigningKey, typ: str, claims: dict[str, Any], now: int) -> str:
    if key.is_retired(now):
        raise ValueError(f"signing key {key.kid} is retired and must not sign")
    headers = {"typ": typ, "kid": key.kid}
    return jwt.encode(claims, key.private_key, algorithm=ALGORITHM, headers=headers)


def _validity(now: int | None, lifetime: int) -> tuple[int, int]:
    if lifetime <= 0:
        raise ValueError("lifetime must be a positive number of seconds")
    issued_at = _now(now)
    return issued_at, issued_at + lifetime


def _room_list(rooms: Sequence[str]) -> list[str]:
    if isinstance(rooms, str) or not all(isinstance(room, str) for room in rooms):
        raise TypeError("rooms must be a sequence of strings")
    return sorted(set(rooms))


def issue_access_token(
    key: SigningKey,
    *,
    issuer: str,
    subject: str,
    rooms: Sequence[str],
    cert_thumbprint: str,
    lifetime: int,
    now: int | None = None,
    jti: str | None = None,
    signed_rooms: Sequence[str] = (),
) -> str:
    """An access token for ``subject``, bound to the certificate with ``cert_thumbprint``
    (``x5t#S256``: base64url SHA-256 of its DER). ``signed_rooms``: those of its rooms
    whose policy is signed (claim ``signed``, left out when none)."""
    issued_at, expires_at = _validity(now, lifetime)
    room_list, signed = _room_list(rooms), _room_list(signed_rooms)
    if not set(signed) <= set(room_list):
        raise ValueError("signed_rooms must be among the token's rooms")
    claims: dict[str, Any] = {
        "iss": issuer,
        "sub": subject,
        "aud": AUDIENCE,
        "rooms": room_list,
        "iat": issued_at,
        "nbf": issued_at,
        "exp": expires_at,
        "jti": jti or uuid.uuid4().hex,
        "cnf": {"x5t#S256": cert_thumbprint},
    }
    if signed:
        claims["signed"] = signed
    return _sign(key, ACCESS_TYP, claims, issued_at)


def issue_card(
    key: SigningKey,
    *,
    issuer: str,
    subject: str,
    endpoint: str,
    rooms: Sequence[str],
    lifetime: int,
    now: int | None = None,
) -> str:
    """Home's signed statement that ``subject`` receives at ``endpoint``."""
    problem = endpoint_problem(endpoint)
    if problem:
        raise ValueError(f"card endpoint {endpoint!r} refused: {problem}")
    issued_at, expires_at = _validity(now, lifetime)
    claims = {
        "iss": issuer,
        "sub": subject,
        "endpoint": endpoint,
        "rooms": _room_list(rooms),
        "iat": issued_at,
        "exp": expires_at,
    }
    return _sign(key, CARD_TYP, claims, issued_at)


# -- verifying ----------------------------------------------------------------------


@dataclass(frozen=True)
class AccessToken:
    subject: str
    issuer: str
    rooms: frozenset[str]
    jti: str
    issued_at: int
    not_before: int
    expires_at: int
    cert_thumbprint: str
    kid: str
    # Its rooms that admit only signed messages (claim ``signed``; none from older homes).
    signed_rooms: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Card:
    subject: str
    issuer: str
    endpoint: str
    rooms: frozenset[str]
    issued_at: int
    expires_at: int
    kid: str


def _malformed(detail: str) -> TokenError:
    return TokenError(detail, code="token-malformed")


def _json_object(segment: str, what: str) -> dict[str, Any]:
    try:
        value = json.loads(_b64url_decode(segment))
    except (ValueError, binascii.Error, RecursionError) as err:  # JSON, UTF-8, nesting
        raise _malformed(f"{what} is not base64url JSON") from err
    if not isinstance(value, dict):
        raise _malformed(f"{what} is not a JSON object")
    return value


def _checked_header(token: object) -> dict[str, Any]:
    """The unverified header, after the checks that need no key: shape, alg."""
    if not isinstance(token, str):
        raise _malformed("a token is a string")
    if len(token) > MAX_TOKEN_LENGTH:
        raise _malformed(f"token longer than {MAX_TOKEN_LENGTH} characters")
    if not _COMPACT.fullmatch(token):
        raise _malformed("not a compact JWS (three base64url segments)")
    header = _json_object(token.split(".", 1)[0], "header")
    alg = header.get("alg")
    if not isinstance(alg, str):
        raise _malformed("header has no alg")
    if alg.lower() == "none":
        raise TokenError("unsigned token (alg none)", code="token-alg-none")
    if alg != ALGORITHM:
        raise TokenError(
            f"alg {alg!r} is not accepted, only {ALGORITHM}", code="token-alg-forbidden"
        )
    # crit/b64 would change what is signed; we implement no extensions (RFC 7515 §4.1.11).
    if "crit" in header or "b64" in header:
        raise _malformed("critical header extensions are not supported")
    if not isinstance(header.get("kid"), str):
        raise _malformed("header has no kid")
    return header


def _verified(token: str, keys: KeySet, typ: str) -> tuple[dict[str, Any], str]:
    """Claims of a token whose signature and typ are good, and the kid that signed it."""
    header = _checked_header(token)
    kid = header["kid"]
    public_key = keys.get(kid)
    try:
        payload = jwt.PyJWS().decode_complete(token, key=public_key, algorithms=[ALGORITHM])[
            "payload"
        ]
    except jwt.exceptions.InvalidSignatureError as err:
        raise TokenError("signature does not verify", code="token-bad-signature") from err
    except jwt.exceptions.InvalidTokenError as err:
        raise _malformed(f"not a valid JWS: {err}") from err
    if header.get("typ") != typ:
        raise TokenError(f"typ {header.get('typ')!r} is not {typ!r}", code="token-wrong-typ")
    try:
        claims = json.loads(payload)
    except (ValueError, RecursionError) as err:
        raise _malformed("payload is not JSON") from err
    if not isinstance(claims, dict):
        raise _malformed("payload is not a JSON object")
    return claims, kid


def _is_time(value: object) -> bool:
    # NaN compares false with everything, so it would pass every time check.
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _require_shape(claims: dict[str, Any], names: Sequence[str]) -> None:
    missing = [name for name in names if name not in claims]
    if missing:
        raise _malformed(f"missing claims: {', '.join(missing)}")
    for name in ("iss", "sub", "jti", "endpoint"):
        if name in names and not (isinstance(claims[name], str) and claims[name]):
            raise _malformed(f"claim {name} must be a non-empty string")
    for name in ("iat", "nbf", "exp"):
        if name in names and not _is_time(claims[name]):
            raise _malformed(f"claim {name} must be a number of seconds")
    for name in ("rooms", "signed"):  # signed: optional, older homes never set it
        value = claims.get(name, [])
        if not isinstance(value, list) or not all(isinstance(room, str) for room in value):
            raise _malformed(f"claim {name} must be a list of strings")


def _check_issuer(claims: dict[str, Any], issuer: str) -> None:
    if claims["iss"] != issuer:
        raise TokenError(f"issuer {claims['iss']!r} is not {issuer!r}", code="token-wrong-issuer")


def _check_times(claims: dict[str, Any], now: int, leeway: int) -> None:
    if now > claims["exp"] + leeway:
        raise TokenError("token has expired", code="token-expired")
    for name in ("nbf", "iat"):
        if name in claims and claims[name] > now + leeway:
            raise TokenError(
                f"token is not valid yet ({name} in the future)", code="token-not-yet-valid"
            )


def _check_audience(claims: dict[str, Any]) -> None:
    aud = claims["aud"]
    audiences = [aud] if isinstance(aud, str) else aud
    if not isinstance(audiences, list) or not all(isinstance(a, str) for a in audiences):
        raise _malformed("claim aud must be a string or a list of strings")
    if AUDIENCE not in audiences:
        raise TokenError(
            f"audience {aud!r} does not include {AUDIENCE!r}", code="token-wrong-audience"
        )


def _bound_thumbprint(claims: dict[str, Any]) -> str:
    cnf = claims.get("cnf")
    if cnf is None:
        raise TokenError("token is not bound to a certificate", code="token-cnf-missing")
    if not isinstance(cnf, dict):
        raise _malformed("claim cnf must be an object")
    thumbprint = cnf.get("x5t#S256")
    if thumbprint is None:
        raise TokenError("token has no x5t#S256 binding", code="token-cnf-missing")
    if not isinstance(thumbprint, str):
        raise _malformed("cnf x5t#S256 must be a string")
    return thumbprint


def verify_access_token(
    token: str,
    keys: KeySet,
    *,
    issuer: str,
    cert_thumbprint: str,
    leeway: int = 30,
    now: int | None = None,
) -> AccessToken:
    """The access token, if it is genuine, current and bound to the presented certificate
    (``cert_thumbprint``: its ``x5t#S256``); otherwise ``TokenError``."""
    claims, kid = _verified(token, keys, ACCESS_TYP)
    _require_shape(claims, _ACCESS_CLAIMS)
    _check_audience(claims)
    _check_issuer(claims, issuer)
    _check_times(claims, _now(now), leeway)
    bound = _bound_thumbprint(claims)
    if not hmac.compare_digest(bound.encode(), cert_thumbprint.encode()):
        raise TokenError("token is bound to another certificate", code="token-cnf-mismatch")
    return AccessToken(
        subject=claims["sub"],
        issuer=claims["iss"],
        rooms=frozenset(claims["rooms"]),
        jti=claims["jti"],
        issued_at=int(claims["iat"]),
        not_before=int(claims["nbf"]),
        expires_at=int(claims["exp"]),
        cert_thumbprint=bound,
        kid=kid,
        signed_rooms=frozenset(claims.get("signed", [])),
    )


def verify_card(
    token: str,
    keys: KeySet,
    *,
    issuer: str,
    leeway: int = 30,
    now: int | None = None,
) -> Card:
    """The address card, if home signed it and it is current; otherwise ``TokenError``."""
    claims, kid = _verified(token, keys, CARD_TYP)
    _require_shape(claims, _CARD_CLAIMS)
    if not is_endpoint_url(claims["endpoint"]):
        raise _malformed("card endpoint is not a valid https endpoint URL")
    _check_issuer(claims, issuer)
    _check_times(claims, _now(now), leeway)
    return Card(
        subject=claims["sub"],
        issuer=claims["iss"],
        endpoint=claims["endpoint"],
        rooms=frozenset(claims["rooms"]),
        issued_at=int(claims["iat"]),
        expires_at=int(claims["exp"]),
        kid=kid,
    )
