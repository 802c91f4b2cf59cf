"""Whom a signature may come from: a certificate carried in ``x5c``, checked as the
apps check a peer's (issued by the deployment CA, within its validity, not in the CRL,
of the expected kind), and whether it names an endpoint's host."""

from __future__ import annotations

import base64
import binascii
import functools
import ipaddress
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from dmr_appliance import pki
from dmr_appliance.crl import CrlFile
from dmr_appliance.errors import PkiError, ProofError
from dmr_appliance.proof import jws

MAX_CERT_CHARS = 8192  # one base64 DER certificate in x5c


@dataclass(frozen=True)
class Trust:
    """The deployment CA and its CRL: all a party needs to check a proof."""

    ca_cert: x509.Certificate
    revoked: CrlFile | None = None

    @classmethod
    def from_files(cls, ca: Path | str, crl: Path | str | None = None) -> Trust:
        ca_cert = pki.load_certificate(Path(ca).read_bytes())
        return cls(ca_cert, CrlFile(Path(crl), ca_cert) if crl is not None else None)

    def certificate(self, x5c: Any, *, kind: str, what: str, now: datetime) -> x509.Certificate:
        """The leaf of ``x5c`` (one certificate of ``kind``, by the deployment CA, valid at
        ``now``, not revoked); ``ProofError`` ``{what}-cert-*`` otherwise."""
        cert = _leaf(x5c, what)
        if not _issued_by(x5c[0], self.ca_cert):
            raise _refused(what, "cert-untrusted", "was not issued by this deployment's CA")
        if not pki.cert_not_before(cert) <= now <= pki.cert_not_after(cert):
            raise _refused(what, "cert-expired", "is outside its validity period")
        if self.revoked is not None and cert in self.revoked:
            raise _refused(what, "cert-revoked", "is revoked (listed in the deployment's CRL)")
        found = pki.certificate_kind(cert)
        if found != kind:
            raise _refused(what, "cert-kind", f"is a {found or 'unknown'} certificate, not {kind}")
        if not isinstance(cert.public_key(), ec.EllipticCurvePublicKey):
            raise _refused(what, "cert-untrusted", "holds no ECDSA key")
        return cert


def x5c(cert: x509.Certificate) -> list[str]:
    """``cert`` as a JWS ``x5c`` header: standard base64 of its DER (RFC 7515 4.1.6)."""
    der = cert.public_bytes(serialization.Encoding.DER)
    return [base64.b64encode(der).decode("ascii")]


def names_host(cert: x509.Certificate, host: str) -> bool:
    """Does ``cert`` name ``host`` (a DNS name, one-label wildcard allowed, or an IP)?"""
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return False
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return any(_dns_match(name, host) for name in sans.get_values_for_type(x509.DNSName))
    return address in sans.get_values_for_type(x509.IPAddress)


def _dns_match(pattern: str, host: str) -> bool:
    pattern, host = pattern.lower().rstrip("."), host.lower().rstrip(".")
    if pattern.startswith("*."):
        first, _, rest = host.partition(".")
        return bool(first) and rest == pattern[2:]
    return pattern == host


@functools.lru_cache(maxsize=1024)
def _issued_by(der_b64: str, ca_cert: x509.Certificate) -> bool:
    # Cached (a quarter of a 1 KiB message's verification): a sender's certificate comes
    # again with each of its messages. Keyed by the certificate's own text and the CA
    # (which hashes by its DER), so a rotated CA never reuses a verdict; dates and the CRL
    # are checked on every call. Only the verdict is kept, never a certificate object:
    # cryptography 38 (Debian 12) raises "Already borrowed" when two threads read one
    # certificate's extensions at once (a sender checks its receipts on several threads).
    return pki.verify_issued_by(_parsed(der_b64), ca_cert)


def _parsed(der_b64: str) -> x509.Certificate:
    return x509.load_der_x509_certificate(base64.b64decode(der_b64, validate=True))


def _leaf(value: Any, what: str) -> x509.Certificate:
    if not (isinstance(value, list) and len(value) == 1 and isinstance(value[0], str)):
        raise _refused(what, "cert-invalid", "must be in x5c as exactly one base64 certificate")
    if len(value[0]) > MAX_CERT_CHARS:
        raise _refused(what, "cert-invalid", f"is longer than {MAX_CERT_CHARS} characters")
    try:
        return _parsed(value[0])
    except (binascii.Error, ValueError, PkiError):
        raise _refused(what, "cert-invalid", "in x5c is not a DER certificate") from None


def _refused(what: str, code: str, detail: str) -> ProofError:
    subject = "the sender's certificate" if what == "signature" else "the receipt's certificate"
    return jws.refused(what, code, detail, subject=subject)
