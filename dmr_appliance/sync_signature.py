"""Home's signature on the sync document, checked by each relay's sync agent.

Home signs the exact bytes of every document it serves with each key it publishes (the
active one and the retired ones still in the JWKS) and sends the signatures in the
``X-DMR-Sync-Signature`` header as ``kid:signature`` pairs. A relay installs a document
only when one of them verifies under a key it already trusts: the keys of the document
it holds, or for its first document that document's own keys (its source was checked at
the TLS handshake). A rotation thus reaches a relay signed by the old key as well.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable

from cryptography.exceptions import InvalidSignature

from dmr_appliance.tokens import KeySet, SigningKey

HEADER = "X-DMR-Sync-Signature"
# Domain separation: a sync signature never verifies as any other of home's signatures.
_CONTEXT = b"dmr-sync-v1\n"
MAX_SIGNATURES = 16  # far above the keys home publishes; bounds a verifier's work
_PAIR = re.compile(r"[A-Za-z0-9_-]{1,128}:[A-Za-z0-9_-]{86}")  # kid:64-byte Ed25519 signature


class SignatureError(ValueError):
    """The document carries no signature by a key the relay trusts; ``reason`` says why."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


def sign(body: bytes, keys: Iterable[SigningKey]) -> str:
    """The header value: one signature of ``body`` per key."""
    return ", ".join(f"{key.kid}:{_b64(key.private_key.sign(_CONTEXT + body))}" for key in keys)


def verify(body: bytes, header: str | None, trusted: KeySet) -> str:
    """The kid of a trusted key that signed ``body``; ``SignatureError`` when none did."""
    pairs = _pairs(header)
    known = [(kid, sig) for kid, sig in pairs if kid in trusted.kids]
    if not known:
        raise SignatureError(
            "signer-unknown",
            "no signature by a key this relay trusts "
            f"(signed by {sorted(kid for kid, _ in pairs)[:4]})",
        )
    for kid, sig in known:
        try:
            trusted.get(kid).verify(sig, _CONTEXT + body)
        except InvalidSignature:
            continue
        return kid
    raise SignatureError("bad-signature", "the signature of a trusted key does not verify")


def _pairs(header: str | None) -> list[tuple[str, bytes]]:
    if not header or not header.strip():
        raise SignatureError("unsigned", f"the document came without {HEADER}")
    items = header.split(",")
    if len(items) > MAX_SIGNATURES:
        raise SignatureError("malformed-signature", f"more than {MAX_SIGNATURES} signatures")
    pairs = [item.strip().partition(":")[::2] for item in items]
    if not all(_PAIR.fullmatch(f"{kid}:{sig}") for kid, sig in pairs):
        raise SignatureError("malformed-signature", f"{HEADER} is not kid:base64url pairs")
    return [(kid, base64.urlsafe_b64decode(sig + "==")) for kid, sig in pairs]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")
