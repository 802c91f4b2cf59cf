"""A recipient's receipt for a message it verified and accepted, and its check.

A compact JWS (ES256) signed with the key of the recipient endpoint's server
certificate (carried in ``x5c``) over the message id, its sender, the recipient's
participant id, the endpoint, the digest of the signed content, and the time. The
recipient returns it in the ``DMR-Receipt`` header of its 2xx answer; the relay lists it
in that recipient's outcome unchanged; the sender checks it against what it signed and
the card it addressed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import jwt
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from dmr_appliance import pki
from dmr_appliance.proof import jws
from dmr_appliance.proof.canonical import canonical
from dmr_appliance.proof.trust import Trust, names_host, x5c
from dmr_appliance.timefmt import format_time

TYP = "dmr-receipt+jws"
HEADER = "DMR-Receipt"  # the recipient's answer header that carries it
CLAIMS = ("id", "from", "to", "endpoint", "digest", "received_at")


@dataclass(frozen=True)
class Receipt:
    token: str
    message_id: str
    sender: str
    recipient: str
    endpoint: str
    digest: str
    received_at: str
    signer: str  # the endpoint certificate's name

    def to_json(self) -> dict[str, Any]:
        return {
            "receipt": self.token,
            "id": self.message_id,
            "from": self.sender,
            "to": self.recipient,
            "endpoint": self.endpoint,
            "digest": self.digest,
            "received_at": self.received_at,
            "signer": self.signer,
        }


def issue(
    *,
    message_id: str,
    sender: str,
    recipient: str,
    endpoint: str,
    digest: str,
    key: ec.EllipticCurvePrivateKey,
    cert: x509.Certificate,
    now: datetime | None = None,
) -> str:
    """The receipt a recipient returns for a message it accepted."""
    claims = {
        "id": message_id,
        "from": sender,
        "to": recipient,
        "endpoint": endpoint,
        "digest": digest,
        "received_at": format_time(now or datetime.now(UTC)),
    }
    token = jwt.api_jws.encode(
        canonical(claims), key, algorithm=jws.ALGORITHM, headers={"typ": TYP, "x5c": x5c(cert)}
    )
    return token if isinstance(token, str) else token.decode("ascii")


def verify(
    token: Any,
    trust: Trust,
    *,
    message_id: str,
    recipient: str,
    endpoint: str,
    digest: str,
    sender: str | None = None,
    now: datetime | None = None,
) -> Receipt:
    """``token`` checked as the proof that ``recipient`` at ``endpoint`` accepted the
    message ``message_id`` (from ``sender``, when given) whose signed content has
    ``digest``; ``ProofError`` if not."""
    header = jws.header(token, what="receipt", typ=TYP)
    when = now or datetime.now(UTC)
    cert = trust.certificate(header.get("x5c"), kind="server", what="receipt", now=when)
    host = urlsplit(endpoint).hostname or ""
    if not names_host(cert, host):
        raise jws.refused("receipt", "endpoint-host", f"is signed by a certificate not for {host}")
    claims = _claims(jws.verify(token, cert.public_key(), what="receipt"))
    expected = {"id": message_id, "to": recipient, "endpoint": endpoint, "digest": digest}
    if sender is not None:
        expected["from"] = sender
    for name, value in expected.items():
        if claims[name] != value:
            raise jws.refused(
                "receipt", "mismatch", f"names {name} {claims[name]!r}, not {value!r}"
            )
    return Receipt(
        token,
        claims["id"],
        claims["from"],
        claims["to"],
        claims["endpoint"],
        claims["digest"],
        claims["received_at"],
        pki.certificate_name(cert),
    )


def _claims(payload: bytes) -> dict[str, str]:
    try:
        claims = json.loads(payload)
    except ValueError:
        raise jws.refused("receipt", "malformed", "has a payload that is not JSON") from None
    if not isinstance(claims, dict) or not all(isinstance(claims.get(c), str) for c in CLAIMS):
        raise jws.refused("receipt", "malformed", f"must state {', '.join(CLAIMS)} as strings")
    return claims
