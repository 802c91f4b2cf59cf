"""A sender's signature over a message, and a recipient's check of it.

The signature is a JWS (ES256, RFC 7515) with a detached, unencoded payload (RFC 7797:
``b64: false``): the payload is the RFC 8785 form (``canonical``) of every field a
recipient acts on, and is not carried, because the envelope carries those fields
already. It travels as the envelope's ``signature`` member, ``header..signature``; its
protected header holds the sender's participant certificate (``x5c``) and the ids of
every recipient (``dmr_to``: a relay delivers to each recipient a body whose ``to``
names that recipient alone, so the full list can only come from here). A message
without ``signature`` is an unsigned v1 message.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import jwt
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from dmr_appliance import ids, pki
from dmr_appliance.errors import ProofError
from dmr_appliance.proof import jws
from dmr_appliance.proof.canonical import canonical
from dmr_appliance.proof.trust import Trust, x5c
from dmr_appliance.timefmt import parse_time

TYP = "dmr-message+jws"
# The fields a signature covers, with ``to`` (every recipient's id, sorted) and the one of
# ``payload`` / ``payload_b64`` the message has.
SIGNED_FIELDS = ("id", "room", "from", "created_at", "expires_at", "content_type", "headers")
MAX_SIGNED_RECIPIENTS = 1000


@dataclass(frozen=True)
class Verdict:
    """What a recipient learned from a delivery's signature."""

    signed: bool
    sender: str
    digest: str | None = None  # of the signed content; what a receipt names
    recipients: tuple[str, ...] = ()
    certificate: x509.Certificate | None = None


def signed_content(doc: Mapping[str, Any], recipients: Sequence[str]) -> bytes:
    """The bytes a signature covers: ``doc``'s signed fields and ``recipients``, in JCS."""
    content = {name: doc.get(name) for name in SIGNED_FIELDS}
    content["headers"] = doc.get("headers") or {}
    body = "payload_b64" if "payload_b64" in doc else "payload"
    content[body] = doc.get(body)
    content["to"] = sorted(recipients)
    return canonical(content)


def content_digest(content: bytes) -> str:
    """``sha-256:`` and base64url (unpadded) of SHA-256 over the signed content."""
    digest = hashlib.sha256(content).digest()
    return "sha-256:" + base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def sign(doc: Mapping[str, Any], key: ec.EllipticCurvePrivateKey, cert: x509.Certificate) -> str:
    """The ``signature`` member for ``doc``, a sender's copy whose ``to`` holds recipient ids.

    ``ValueError`` when the payload has no canonical form (see ``canonical``).
    """
    recipients = sorted(doc["to"])
    headers = {"typ": TYP, "b64": False, "crit": ["b64"], "x5c": x5c(cert), "dmr_to": recipients}
    token = jwt.api_jws.encode(
        signed_content(doc, recipients),
        key,
        algorithm=jws.ALGORITHM,
        headers=headers,
        is_payload_detached=True,
    )
    return token if isinstance(token, str) else token.decode("ascii")


def signed_digest(doc: Mapping[str, Any]) -> str:
    """The digest a receipt for ``doc`` (a sender's signed copy) must name."""
    return content_digest(signed_content(doc, doc["to"]))


def verify(
    doc: Mapping[str, Any], recipient: str, trust: Trust, *, now: datetime | None = None
) -> Verdict:
    """Check ``doc``'s signature as ``recipient`` received it; ``ProofError`` if it fails.

    An unsigned ``doc`` is ``Verdict(signed=False)``: whether to take it is the caller's.
    """
    when = now or datetime.now(UTC)
    sender = doc.get("from")
    if "signature" not in doc:
        return Verdict(False, sender if isinstance(sender, str) else "")
    token = doc["signature"]
    header = jws.header(token, what="signature", typ=TYP)
    if header.get("b64") is not False or header.get("crit") != ["b64"]:
        raise jws.refused("signature", "malformed", "must be detached and unencoded (b64: false)")
    recipients = _recipients(header, recipient)
    cert = trust.certificate(header.get("x5c"), kind="participant", what="signature", now=when)
    if pki.certificate_name(cert) != sender:
        raise jws.refused(
            "signature", "sender-mismatch", f"is by {pki.certificate_name(cert)!r}, not 'from'"
        )
    try:
        content = signed_content(doc, recipients)
    except ValueError as exc:
        raise jws.refused("signature", "malformed", f"covers no canonical content: {exc}") from None
    jws.verify(token, cert.public_key(), what="signature", detached=content)
    _unexpired(doc, when)
    return Verdict(True, sender, content_digest(content), tuple(recipients), cert)


def _recipients(header: Mapping[str, Any], recipient: str) -> list[str]:
    found = header.get("dmr_to")
    if not (
        isinstance(found, list)
        and 0 < len(found) <= MAX_SIGNED_RECIPIENTS
        and all(ids.is_participant_id(pid) for pid in found)
    ):
        raise jws.refused("signature", "malformed", "names no valid recipient list (dmr_to)")
    if recipient not in found:
        raise jws.refused(
            "signature", "recipient", f"is for {', '.join(found[:5])}, not for {recipient!r}"
        )
    return found


def _unexpired(doc: Mapping[str, Any], now: datetime) -> None:
    try:
        expires = parse_time(str(doc.get("expires_at")))
    except ValueError:
        raise jws.refused("signature", "malformed", "covers no valid expires_at") from None
    if expires <= now:
        raise ProofError(
            "the message expired at " + str(doc.get("expires_at")),
            code="message-expired",
            title="Message expired",
        )
