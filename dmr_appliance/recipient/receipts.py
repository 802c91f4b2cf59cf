"""A recipient's receipts: what it signs, with its endpoint's server key, for a signed
delivery it accepted. The sender checks the receipt against the card it addressed, so
the endpoint is named as the request came: ``https://`` + the Host header (a client
sends the port unless it is 443) + the request target (path and query)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from dmr_appliance import pki
from dmr_appliance.errors import PkiError
from dmr_appliance.proof import receipt
from dmr_appliance.recipient.verify import Accepted

HEADER = receipt.HEADER


class ReceiptSigner:
    """Issues receipts with the endpoint's server certificate and its key (ES256)."""

    def __init__(self, key: ec.EllipticCurvePrivateKey, cert: x509.Certificate) -> None:
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise PkiError("a receipt is signed with an ECDSA (P-256) key")
        self.key = key
        self.cert = cert

    @classmethod
    def from_files(cls, cert_path: Path | str, key_path: Path | str) -> ReceiptSigner:
        """The endpoint's server certificate and key, both PEM (``dmr pki issue server``)."""
        cert = pki.load_certificate(Path(cert_path).read_bytes())
        key = serialization.load_pem_private_key(Path(key_path).read_bytes(), password=None)
        return cls(key, cert)  # type: ignore[arg-type]  # checked in __init__

    def issue(self, accepted: Accepted, url: str, *, now: datetime | None = None) -> str | None:
        """The receipt for ``accepted`` as delivered to the endpoint ``url``; None unsigned
        (there is no signed content for a receipt to name)."""
        if not accepted.signed or accepted.verdict.digest is None:
            return None
        return receipt.issue(
            message_id=accepted.message_id,
            sender=accepted.sender,
            recipient=accepted.recipient,
            endpoint=url,
            digest=accepted.verdict.digest,
            key=self.key,
            cert=self.cert,
            now=now,
        )


def endpoint(host: str, target: str) -> str:
    """The endpoint URL a request came to: ``https://{host}{target}``."""
    return f"https://{host}{target if target.startswith('/') else '/' + target}"
