"""The deployment PKI: one ECDSA P-256 CA, leaf certificates per kind, a CRL.

Pure: files and cryptography only. Layout (docs/architecture.md, "PKI layout")::

    DIR/ca.pem  DIR/ca.key  DIR/crl.pem  DIR/index.json
    DIR/<kind>/<name>.pem  DIR/<kind>/<name>.key

A certificate states its kind in ``OU`` and its name in ``CN``. Keys are written 0600
and never replaced unless ``force``. ``index.json`` records every certificate ever
issued, so a revocation also covers certificates that a forced re-issue replaced.
Works with cryptography 38 (Debian 12) and current releases.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import fcntl
import hashlib
import ipaddress
import json
import os
import re
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from dmr_appliance.errors import PkiError
from dmr_appliance.ids import PARTICIPANT_ID, PARTICIPANT_ID_RULE

KINDS = ("server", "relay", "participant", "admin")
DEFAULT_DIR = Path("/etc/dmr-appliance/pki")

# Kinds that are TLS servers: they carry SANs (defaulting to their name).
SERVER_KINDS = ("server", "relay")
_EKU = {
    # The router also presents its server certificate to relays and home, as a client.
    "server": [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH],
    "relay": [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH],
    "participant": [ExtendedKeyUsageOID.CLIENT_AUTH],
    "admin": [ExtendedKeyUsageOID.CLIENT_AUTH],
}
# RFC 5280 5.3.1: "unspecified" is expressed by leaving the reason code out. certificateHold
# (reversible) and removeFromCRL (delta CRLs) are not offered: revocation here is final.
REASONS = {
    "unspecified": None,
    "key-compromise": x509.ReasonFlags.key_compromise,
    "ca-compromise": x509.ReasonFlags.ca_compromise,
    "affiliation-changed": x509.ReasonFlags.affiliation_changed,
    "superseded": x509.ReasonFlags.superseded,
    "cessation-of-operation": x509.ReasonFlags.cessation_of_operation,
    "privilege-withdrawn": x509.ReasonFlags.privilege_withdrawn,
}
# Back-dating covers small clock differences between the CA host and the verifiers.
_SKEW = dt.timedelta(minutes=5)
_DNS_NAME = re.compile(
    r"^(?:\*\.)?[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*$"
)


@dataclass(frozen=True)
class Paths:
    """Where everything of one PKI directory lives."""

    dir: Path

    @property
    def ca(self) -> Path:
        return self.dir / "ca.pem"

    @property
    def ca_key(self) -> Path:
        return self.dir / "ca.key"

    @property
    def crl(self) -> Path:
        return self.dir / "crl.pem"

    @property
    def index(self) -> Path:
        return self.dir / "index.json"

    def cert(self, kind: str, name: str) -> Path:
        return self.dir / _check_kind(kind) / f"{_check_name(name)}.pem"

    def key(self, kind: str, name: str) -> Path:
        return self.dir / _check_kind(kind) / f"{_check_name(name)}.key"


def paths(directory: Path | str) -> Paths:
    return Paths(Path(directory))


@dataclass(frozen=True)
class Issued:
    cert: Path
    key: Path
    serial: int


@dataclass(frozen=True)
class Record:
    """One line of index.json: a certificate that was issued, and its revocation if any."""

    kind: str
    name: str
    serial: int
    issued_at: str
    not_after: str
    revoked_at: str | None = None
    reason: str | None = None

    def status(self, now: dt.datetime | None = None, *, current_serial: int | None = None) -> str:
        """revoked, expired, superseded (a later certificate has the same name) or valid."""
        if self.revoked_at:
            return "revoked"
        if _parse_time(self.not_after) <= (now or _now()):
            return "expired"
        if current_serial is not None and current_serial != self.serial:
            return "superseded"
        return "valid"


# --- public operations -----------------------------------------------------------------


def init_ca(
    directory: Path,
    *,
    common_name: str = "dmr deployment CA",
    days: int = 3650,
    force: bool = False,
) -> bool:
    """Create the CA (and an empty CRL); True if created, False if one already exists.

    ``force`` replaces the CA and starts a new index: everything issued before stops
    verifying against the new ca.pem.
    """
    _check_days(days)
    p = paths(directory)
    p.dir.mkdir(parents=True, exist_ok=True)
    with _locked(p):
        present = [f.name for f in (p.ca, p.ca_key) if f.exists()]
        if present and not force:
            if len(present) == 2:
                return False
            raise PkiError(
                f"incomplete CA in {p.dir}: only {present[0]} exists; "
                "use --force to create a new CA"
            )
        key = ec.generate_private_key(ec.SECP256R1())
        cert = _build_ca(key, common_name, days)
        _write_private_key(p.ca_key, key, force=force)
        _write_atomic(p.ca, cert.public_bytes(serialization.Encoding.PEM), 0o644, force=force)
        _save_index(p, {"crl_number": 0, "certificates": []})
        _write_crl_locked(p, days=30)
    return True


def issue(
    directory: Path,
    kind: str,
    name: str,
    *,
    dns: Sequence[str] = (),
    ips: Sequence[str] = (),
    days: int = 825,
    force: bool = False,
) -> Issued:
    """Issue a key and certificate for ``kind``/``name``, signed by the CA in ``directory``."""
    p = paths(directory)
    cert_path, key_path = p.cert(kind, name), p.key(kind, name)
    _check_days(days)
    san = _subject_alt_names(kind, name, dns, ips)
    with _locked(p):
        ca_key, ca_cert = _load_ca(p)
        if not force and (cert_path.exists() or key_path.exists()):
            raise PkiError(f"{kind} '{name}' already exists in {p.dir}; use --force to replace it")
        key = ec.generate_private_key(ec.SECP256R1())
        cert = _build_leaf(key.public_key(), kind, name, san, days, ca_key, ca_cert)
        cert_path.parent.mkdir(mode=0o755, exist_ok=True)
        _write_private_key(key_path, key, force=force)
        _write_atomic(cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644, force=force)
        index = _load_index(p)
        record = Record(
            kind=kind,
            name=name,
            serial=cert.serial_number,
            issued_at=_format_time(_now()),
            not_after=_format_time(cert_not_after(cert)),
        )
        index["certificates"].append(asdict(record))
        _save_index(p, index)
    return Issued(cert=cert_path, key=key_path, serial=cert.serial_number)


def revoke(directory: Path, kind: str, name: str, *, reason: str = "unspecified") -> None:
    """Revoke every certificate issued for ``kind``/``name`` and rewrite the CRL.

    Revoking an already revoked name changes nothing but refreshes the CRL.
    """
    p = paths(directory)
    _check_kind(kind)
    _check_name(name)
    if reason not in REASONS:
        raise PkiError(f"unknown revocation reason {reason!r}; use one of {', '.join(REASONS)}")
    with _locked(p):
        index = _load_index(p)
        entries = [e for e in index["certificates"] if e["kind"] == kind and e["name"] == name]
        if not entries:
            raise PkiError(f"no {kind} certificate named '{name}' was issued from {p.dir}")
        stamp = _format_time(_now())
        for entry in entries:
            if not entry.get("revoked_at"):
                entry.update(revoked_at=stamp, reason=reason)
        _save_index(p, index)
        _write_crl_locked(p, days=30)


def write_crl(directory: Path, *, days: int = 30) -> Path:
    """Sign a fresh CRL valid for ``days``; nginx refuses every client once it has expired."""
    _check_days(days)
    p = paths(directory)
    with _locked(p):
        return _write_crl_locked(p, days=days)


def records(directory: Path) -> list[Record]:
    """Every certificate issued from ``directory``, oldest first."""
    p = paths(directory)
    if not p.ca.exists():
        raise PkiError(f"no CA in {p.dir}; run 'dmr pki init --dir {p.dir}' first")
    return [Record(**entry) for entry in _load_index(p)["certificates"]]


def load_certificate(pem: bytes | str) -> x509.Certificate:
    data = pem.encode("ascii") if isinstance(pem, str) else pem
    try:
        return x509.load_pem_x509_certificate(data)
    except ValueError as exc:
        raise PkiError(f"not a PEM certificate: {exc}") from exc


def certificate_kind(cert: x509.Certificate) -> str | None:
    """The kind stated in the subject's OU, or None if it states none of KINDS."""
    units = cert.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)
    values = {unit.value for unit in units}
    found = [kind for kind in KINDS if kind in values]
    return found[0] if len(found) == 1 else None


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


def _build_ca(key: ec.EllipticCurvePrivateKey, common_name: str, days: int) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = _now()
    public = key.public_key()
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _SKEW)
        .not_valid_after(now + dt.timedelta(days=days))
        # path_length 0: this CA signs leaves only, never another CA.
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            _key_usage(digital_signature=True, key_cert_sign=True, crl_sign=True), critical=True
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )


def _build_leaf(
    public: ec.EllipticCurvePublicKey,
    kind: str,
    name: str,
    san: list[x509.GeneralName],
    days: int,
    ca_key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
) -> x509.Certificate:
    now = _now()
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
        .not_valid_before(now - _SKEW)
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


def _subject_alt_names(
    kind: str, name: str, dns: Sequence[str], ips: Sequence[str]
) -> list[x509.GeneralName]:
    if kind not in SERVER_KINDS:
        if dns or ips:
            raise PkiError(f"--dns/--ip apply to server and relay certificates, not to {kind}")
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


# --- CRL ---------------------------------------------------------------------------------


def _write_crl_locked(p: Paths, *, days: int) -> Path:
    ca_key, ca_cert = _load_ca(p)
    index = _load_index(p)
    index["crl_number"] = int(index.get("crl_number", 0)) + 1
    now = _now()
    ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca_cert.subject)
        .last_update(now - _SKEW)
        .next_update(now + dt.timedelta(days=days))
        .add_extension(x509.CRLNumber(index["crl_number"]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False
        )
    )
    for entry in index["certificates"]:
        if entry.get("revoked_at"):
            builder = builder.add_revoked_certificate(_revoked_entry(entry))
    crl = builder.sign(ca_key, hashes.SHA256())
    _write_atomic(p.crl, crl.public_bytes(serialization.Encoding.PEM), 0o644, force=True)
    _save_index(p, index)
    return p.crl


def _revoked_entry(entry: dict[str, Any]) -> x509.RevokedCertificate:
    builder = (
        x509.RevokedCertificateBuilder()
        .serial_number(int(entry["serial"]))
        .revocation_date(_parse_time(entry["revoked_at"]))
    )
    flag = REASONS.get(entry.get("reason") or "unspecified")
    if flag is not None:
        builder = builder.add_extension(x509.CRLReason(flag), critical=False)
    return builder.build()


# --- files -------------------------------------------------------------------------------


def _load_ca(p: Paths) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    if not (p.ca.exists() and p.ca_key.exists()):
        raise PkiError(f"no CA in {p.dir}; run 'dmr pki init --dir {p.dir}' first")
    key = serialization.load_pem_private_key(p.ca_key.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise PkiError(f"{p.ca_key} is not an ECDSA key")
    return key, load_certificate(p.ca.read_bytes())


def _load_index(p: Paths) -> dict[str, Any]:
    if not p.index.exists():
        # A CA made by hand (or an older layout) has issued nothing we know of.
        return {"crl_number": 0, "certificates": []}
    try:
        data = json.loads(p.index.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise PkiError(f"{p.index} is not valid JSON: {exc}") from exc
    data.setdefault("certificates", [])
    return data


def _save_index(p: Paths, index: dict[str, Any]) -> None:
    text = json.dumps(index, indent=2, sort_keys=True) + "\n"
    _write_atomic(p.index, text.encode("utf-8"), 0o644, force=True)


def _write_private_key(path: Path, key: ec.EllipticCurvePrivateKey, *, force: bool) -> None:
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    _write_atomic(path, pem, 0o600, force=force)


def _write_atomic(path: Path, data: bytes, mode: int, *, force: bool) -> None:
    """Write via a temporary file that has ``mode`` from birth, then move it into place.

    The key never exists with looser permissions, a reader never sees half a file, and
    without ``force`` the final link fails rather than replacing an existing file.
    """
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)  # 0600, O_EXCL
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        if force:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)
            except FileExistsError as exc:
                raise PkiError(f"{path} exists; use --force to replace it") from exc
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


@contextlib.contextmanager
def _locked(p: Paths) -> Iterator[None]:
    """Serialise writers (two `dmr pki issue` at once would lose an index entry)."""
    if not p.dir.is_dir():
        raise PkiError(f"{p.dir} does not exist; run 'dmr pki init --dir {p.dir}' first")
    with open(p.dir / ".lock", "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


# --- small checks --------------------------------------------------------------------------


def _check_kind(kind: str) -> str:
    if kind not in KINDS:
        raise PkiError(f"unknown kind {kind!r}; use one of {', '.join(KINDS)}")
    return kind


def _check_name(name: str) -> str:
    if not PARTICIPANT_ID.fullmatch(name):
        raise PkiError(f"invalid name {name!r}: {PARTICIPANT_ID_RULE}")
    return name


def _check_days(days: int) -> None:
    if days < 1:
        raise PkiError(f"days must be at least 1, not {days}")


def _now() -> dt.datetime:
    # Whole seconds: X.509 times carry no fractions, and index.json should match the cert.
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def _format_time(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_time(value: str) -> dt.datetime:
    return dt.datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC)
