"""Certificates: reading what one states (kind, name, thumbprint, issuer, validity) and
building the CA's and the leaves'.

Pure: cryptography only. Works with cryptography 38 (Debian 12) and current releases.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import ipaddress
import re
from collections.abc import Sequence

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from dmr_appliance.errors import PkiError

# The kinds a certificate may state. "router" is a kind of its own because relays and home
# believe the forwarded client-certificate header only from a peer holding a router
# certificate: the kind is the router's cryptographic mark. "server" stays for home and
# recipients.
KINDS = ("server", "router", "relay", "participant", "admin")
# Kinds that are TLS servers: they carry SANs (defaulting to their name).
SERVER_KINDS = ("server", "router", "relay")
_EKU = {
    # server keeps clientAuth as before the router kind existed: no issued one changes use.
    "server": [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH],
    # The router presents its certificate to relays and home, as a client.
    "router": [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH],
    "relay": [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH],
    "participant": [ExtendedKeyUsageOID.CLIENT_AUTH],
    "admin": [ExtendedKeyUsageOID.CLIENT_AUTH],
}
# Back-dating covers small clock differences between the CA host and the verifiers.
SKEW = dt.timedelta(minutes=5)
_DNS_NAME = re.compile(
    r"^(?:\*\.)?[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*$"
)


def load_certificate(pem: bytes | str) -> x509.Certificate:
    data = pem.encode("ascii") if isinstance(pem, str) else pem
    try:
        return x509.load_pem_x509_certificate(data)
    except ValueError as exc:
        raise PkiError(f"not a PEM certificate: {exc}") from exc


def certificate_kind(cert: x509.Certificate) -> str | None:
    """The kind stated in the subject's OU, or None unless it states exactly one of KINDS.

    Exactly one OU, compared whole and case-sensitively: the kind decides trust (a
    "router" may forward client certificates), so "Router", "router-x" or a second OU
    beside it must never pass for a kind.
    """
    units = cert.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)
    if len(units) != 1:
        return None
    value = units[0].value
    return value if isinstance(value, str) and value in KINDS else None


def certificate_name(cert: x509.Certificate) -> str:
    """The subject CN: a participant's id, a relay's instance id, a server's name."""
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if len(names) != 1:
        raise PkiError("certificate subject has no single common name")
    return str(names[0].value)


def cert_thumbprint(cert: x509.Certificate) -> str:
    """RFC 8705 ``x5t#S256``: base64url, unpadded, of SHA-256 over the DER certificate."""
    digest = hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def verify_issued_by(cert: x509.Certificate, ca_cert: x509.Certificate) -> bool:
    """True if ``ca_cert`` is the named issuer of ``cert`` and its key made the signature.

    Only the signature: validity dates and revocation are the caller's to check.
    (cryptography 38 lacks ``verify_directly_issued_by``, hence the explicit check.)
    """
    if cert.issuer != ca_cert.subject:
        return False
    key = ca_cert.public_key()
    signed = cert.tbs_certificate_bytes
    try:
        if isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(cert.signature, signed, ec.ECDSA(cert.signature_hash_algorithm))
        elif isinstance(key, rsa.RSAPublicKey):
            key.verify(cert.signature, signed, padding.PKCS1v15(), cert.signature_hash_algorithm)
        elif isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(cert.signature, signed)
        else:
            return False
    except (InvalidSignature, TypeError, ValueError):
        return False
    return True


def cert_not_after(cert: x509.Certificate) -> dt.datetime:
    """End of validity as an aware UTC datetime (``not_valid_after_utc`` is new in 42)."""
    value = getattr(cert, "not_valid_after_utc", None)
    if value is None:
        value = cert.not_valid_after.replace(tzinfo=dt.UTC)
    return value


def cert_not_before(cert: x509.Certificate) -> dt.datetime:
    value = getattr(cert, "not_valid_before_utc", None)
    if value is None:
        value = cert.not_valid_before.replace(tzinfo=dt.UTC)
    return value


# --- building certificates ---------------------------------------------------------------


def build_ca(key: ec.EllipticCurvePrivateKey, common_name: str, days: int) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = utc_now()
    public = key.public_key()
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - SKEW)
        .not_valid_after(now + dt.timedelta(days=days))
        # path_length 0: this CA signs leaves only, never another CA.
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            _key_usage(digital_signature=True, key_cert_sign=True, crl_sign=True), critical=True
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )


def build_leaf(
    public: ec.EllipticCurvePublicKey,
    kind: str,
    name: str,
    san: list[x509.GeneralName],
    days: int,
    ca_key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    *,
    now: dt.datetime | None = None,
) -> x509.Certificate:
    now = now or utc_now()
    # A leaf never outlives its CA: verifiers would reject the chain anyway.
    not_after = min(now + dt.timedelta(days=days), cert_not_after(ca_cert))
    ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    builder = (
        x509.CertificateBuilder()
        .subject_name(
            x509.Name(
                [
                    x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, kind),
                    x509.NameAttribute(NameOID.COMMON_NAME, name),
                ]
            )
        )
        .issuer_name(ca_cert.subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - SKEW)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        # ECDSA keys only sign in TLS (ECDHE does the key agreement): digitalSignature only.
        .add_extension(_key_usage(digital_signature=True), critical=True)
        .add_extension(x509.ExtendedKeyUsage(_EKU[kind]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False
        )
    )
    if san:
        builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
    return builder.sign(ca_key, hashes.SHA256())


def _key_usage(
    *, digital_signature: bool = False, key_cert_sign: bool = False, crl_sign: bool = False
) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=digital_signature,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=key_cert_sign,
        crl_sign=crl_sign,
        encipher_only=False,
        decipher_only=False,
    )


def subject_alt_names(
    kind: str, name: str, dns: Sequence[str], ips: Sequence[str]
) -> list[x509.GeneralName]:
    if kind not in SERVER_KINDS:
        if dns or ips:
            servers = ", ".join(SERVER_KINDS)
            raise PkiError(f"--dns/--ip apply to {servers} certificates, not to {kind}")
        return []
    if not dns and not ips:
        dns = [name]
    result: list[x509.GeneralName] = []
    for value in dns:
        host = value.strip().lower()
        if not _DNS_NAME.fullmatch(host) or len(host) > 253:
            raise PkiError(f"--dns {value!r} is not a DNS name")
        result.append(x509.DNSName(host))
    for value in ips:
        try:
            result.append(x509.IPAddress(ipaddress.ip_address(value.strip())))
        except ValueError as exc:
            raise PkiError(f"--ip {value!r} is not an IPv4 or IPv6 address") from exc
    return result


def utc_now() -> dt.datetime:
    # Whole seconds: X.509 times carry no fractions, and index.json should match the cert.
    return dt.datetime.now(dt.UTC).replace(microsecond=0)
