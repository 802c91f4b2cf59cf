"""The JWS checks a signature and a receipt share: the protected header read before any
key is trusted (ES256 only, the expected ``typ``), and PyJWT's verification mapped to
``ProofError``. Nothing but ES256 is ever verified: ``alg: none`` and HS256 (which would
take the certificate for a shared secret) are refused before a key is looked at."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec

from dmr_appliance.errors import ProofError

ALGORITHM = "ES256"
MAX_TOKEN_CHARS = 16384


def header(token: Any, *, what: str, typ: str) -> dict[str, Any]:
    """The protected header of a compact JWS, checked for ``alg`` and ``typ``."""
    if not isinstance(token, str) or len(token) > MAX_TOKEN_CHARS or token.count(".") != 2:
        raise refused(
            what, "malformed", f"must be a compact JWS of at most {MAX_TOKEN_CHARS} chars"
        )
    try:
        raw = base64.urlsafe_b64decode(_padded(token.partition(".")[0]))
        found = json.loads(raw)
    except (binascii.Error, ValueError):
        raise refused(what, "malformed", "has a header that is not base64url JSON") from None
    if not isinstance(found, dict):
        raise refused(what, "malformed", "has a header that is not a JSON object")
    if found.get("alg") != ALGORITHM:
        raise refused(what, "algorithm", f"must use alg {ALGORITHM}, not {found.get('alg')!r}")
    if found.get("typ") != typ:
        raise refused(what, "malformed", f"must have typ {typ!r}")
    return found


def verify(
    token: str, key: ec.EllipticCurvePublicKey, *, what: str, detached: bytes | None = None
) -> bytes:
    """The payload ``token`` signs with ``key`` (``detached``: RFC 7797 unencoded content)."""
    try:
        decoded = jwt.api_jws.decode_complete(
            token, key, algorithms=[ALGORITHM], detached_payload=detached
        )
    except jwt.InvalidSignatureError:
        raise refused(what, "invalid", "does not verify: what it covers was changed") from None
    except jwt.PyJWTError as exc:
        raise refused(what, "malformed", f"cannot be read: {exc}") from None
    return bytes(decoded["payload"])


def refused(what: str, code: str, detail: str, *, subject: str | None = None) -> ProofError:
    """The ``ProofError`` ``{what}-{code}`` (``what``: signature or receipt)."""
    title = "Signature refused" if what == "signature" else "Receipt refused"
    if subject is None:
        subject = "the message's signature" if what == "signature" else "the receipt"
    return ProofError(f"{subject} {detail}", code=f"{what}-{code}", title=title)


def _padded(text: str) -> str:
    return text + "=" * (-len(text) % 4)
