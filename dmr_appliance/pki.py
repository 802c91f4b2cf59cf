"""The deployment PKI: one ECDSA P-256 CA, leaf certificates per kind, a CRL.

Pure: files and cryptography only. Layout (docs/architecture.md, "PKI layout")::

    DIR/ca.pem  DIR/ca.key  DIR/crl.pem  DIR/index.json
    DIR/<kind>/<name>.pem  DIR/<kind>/<name>.key

A certificate states its kind in ``OU`` and its name in ``CN``. Keys are written 0600
and never replaced unless ``force`` (or by ``renew``, which re-issues what is about to
expire). ``index.json`` records every certificate ever issued, so a revocation also
covers certificates that a forced re-issue or a renewal replaced.
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
from collections.abc import Callable, Iterator, Sequence
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

# "router" is a kind of its own because relays and home believe the forwarded
# client-certificate header only from a peer holding a router certificate: the kind is
# the router's cryptographic mark. "server" stays for home and recipients.
KINDS = ("server", "router", "relay", "participant", "admin")
DEFAULT_DIR = Path("/etc/dmr-appliance/pki")
CA_DAYS = 3650
# A year at most by default (DESIGN "Trust"); `renew` keeps that painless.
LEAF_DAYS = 365
RENEW_WITHIN_DAYS = 30
CRL_DAYS = 30

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
    # Serial of the certificate that replaced this one (renewal or forced re-issue). It
    # is not revoked: hosts may still use it until the new one is deployed.
    superseded_by: int | None = None

    def status(self, now: dt.datetime | None = None, *, current_serial: int | None = None) -> str:
        """revoked, expired, superseded (a later certificate has the same name) or valid."""
        if self.revoked_at:
            return "revoked"
        if _parse_time(self.not_after) <= (now or _now()):
            return "expired"
        if self.superseded_by is not None or current_serial not in (None, self.serial):
            return "superseded"
        return "valid"


@dataclass(frozen=True)
class Renewal:
    """What ``renew`` did, or with ``dry_run`` would do, for one certificate of the index.

    ``action``: "renewed", "due" (dry run), "valid" (expires after the window) or
    "skipped" (``detail`` says why). ``serial``/``not_after`` describe the certificate in
    place afterwards: the new one when renewed (``old_serial`` is the replaced one).
    """

    kind: str
    name: str
    action: str
    serial: int | None = None
    not_after: dt.datetime | None = None
    old_serial: int | None = None
    detail: str = ""

    @property
    def renewed(self) -> bool:
        return self.action == "renewed"


# --- public operations -----------------------------------------------------------------


def init_ca(
    directory: Path,
    *,
    common_name: str = "dmr deployment CA",
    days: int = CA_DAYS,
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
        _write_crl_locked(p, days=CRL_DAYS)
    return True


def issue(
    directory: Path,
    kind: str,
    name: str,
    *,
    dns: Sequence[str] = (),
    ips: Sequence[str] = (),
    days: int = LEAF_DAYS,
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
        _append_record(index, kind, name, cert, _now())
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
        _write_crl_locked(p, days=CRL_DAYS)


def write_crl(directory: Path, *, days: int = CRL_DAYS) -> Path:
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
    known = set(Record.__dataclass_fields__)
    return [
        Record(**{k: v for k, v in entry.items() if k in known})
        for entry in _load_index(p)["certificates"]
    ]


def crl_next_update(directory: Path) -> dt.datetime:
    """When the CRL in ``directory`` expires (nginx then refuses every client)."""
    path = paths(directory).crl
    try:
        crl = x509.load_pem_x509_crl(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise PkiError(f"cannot read the CRL {path}: {exc}") from exc
    value = getattr(crl, "next_update_utc", None)  # new in cryptography 42
    if value is None:
        if crl.next_update is None:
            raise PkiError(f"the CRL {path} has no next update time")
        value = crl.next_update.replace(tzinfo=dt.UTC)
    return value


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


# --- renewal -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _RenewJob:
    """One run of ``renew``: loaded once under the lock, shared by every certificate."""

    p: Paths
    ca_key: ec.EllipticCurvePrivateKey
    ca_cert: x509.Certificate
    index: dict[str, Any]
    now: dt.datetime
    deadline: dt.datetime  # certificates expiring at or before this are due
    days: int
    dry_run: bool


def renew(
    directory: Path,
    *,
    within_days: int = RENEW_WITHIN_DAYS,
    days: int = LEAF_DAYS,
    kinds: Sequence[str] | None = None,
    names: Sequence[str] | None = None,
    now: dt.datetime | None = None,
    dry_run: bool = False,
) -> list[Renewal]:
    """Re-issue every unrevoked certificate of the index expiring within ``within_days``.

    Kind, name and SANs are read from the certificate in place; the key is fresh. One
    ``Renewal`` per certificate considered, in index order: ``[r for r in result if
    r.renewed]`` is what changed. Idempotent: a renewed certificate outlives the window
    (``days`` must exceed ``within_days``), so a second run renews nothing. ``now``
    (aware) moves the clock, for tests and "what if" runs; new certificates start then.
    """
    _check_days(days)
    if within_days < 0:
        raise PkiError(f"within must be at least 0 days, not {within_days}")
    if days <= within_days:
        raise PkiError(
            f"days ({days}) must exceed within ({within_days}): "
            "otherwise every run would renew the same certificates again"
        )
    p = paths(directory)
    wanted = _renewal_filter(kinds, names)
    moment = _moment(now)
    with _locked(p):
        ca_key, ca_cert = _load_ca(p)
        index = _load_index(p)
        deadline = moment + dt.timedelta(days=within_days)
        job = _RenewJob(p, ca_key, ca_cert, index, moment, deadline, days, dry_run)
        selected = [pair for pair in _index_names(index) if wanted(*pair)]
        return [_renew_one(job, kind, name) for kind, name in selected]


def _renewal_filter(
    kinds: Sequence[str] | None, names: Sequence[str] | None
) -> Callable[[str, str], bool]:
    kind_set = {_check_kind(k) for k in kinds} if kinds else None
    name_set = {_check_name(n) for n in names} if names else None
    return lambda kind, name: (
        (kind_set is None or kind in kind_set) and (name_set is None or name in name_set)
    )


def _index_names(index: dict[str, Any]) -> list[tuple[str, str]]:
    """Each (kind, name) of the index once, in order of first issue; unknown kinds left out."""
    seen = dict.fromkeys((e["kind"], e["name"]) for e in index["certificates"])
    return [(kind, name) for kind, name in seen if kind in KINDS]


def _renew_one(job: _RenewJob, kind: str, name: str) -> Renewal:
    cert_path = job.p.cert(kind, name)
    if not cert_path.exists():
        return Renewal(kind, name, "skipped", detail=f"no certificate at {cert_path}")
    try:
        cert = load_certificate(cert_path.read_bytes())
    except PkiError as exc:
        # One damaged file must not stop the renewal of all the others.
        return Renewal(kind, name, "skipped", detail=f"{cert_path}: {exc.detail}")
    serial, not_after = cert.serial_number, cert_not_after(cert)
    obstacle = _renewal_obstacle(job, kind, name, cert)
    if obstacle:
        return Renewal(kind, name, "skipped", serial, not_after, detail=obstacle)
    if not_after > job.deadline:
        return Renewal(kind, name, "valid", serial, not_after)
    ca_end = cert_not_after(job.ca_cert)
    if min(job.now + dt.timedelta(days=job.days), ca_end) <= job.deadline:
        # A leaf never outlives its CA: the renewed one would be due again at once.
        detail = f"the CA expires {_format_time(ca_end)}: replace the CA first"
        return Renewal(kind, name, "skipped", serial, not_after, detail=detail)
    if job.dry_run:
        return Renewal(kind, name, "due", serial, not_after)
    return _reissue(job, kind, name, cert)


def _renewal_obstacle(job: _RenewJob, kind: str, name: str, cert: x509.Certificate) -> str:
    """Why the certificate in place must not be renewed automatically ("" if it may)."""
    entries = [e for e in job.index["certificates"] if e["serial"] == cert.serial_number]
    if not entries:
        return "its serial is not in index.json (not issued from this directory)"
    if any(e.get("revoked_at") for e in entries):
        return "revoked"
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if certificate_kind(cert) != kind or [n.value for n in names] != [name]:
        return f"its subject does not say {kind} '{name}'"
    if not verify_issued_by(cert, job.ca_cert):
        return "not signed by the current CA"
    return ""


def _reissue(job: _RenewJob, kind: str, name: str, old: x509.Certificate) -> Renewal:
    dns, ips = _sans_of(old)
    san = _subject_alt_names(kind, name, dns, ips)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _build_leaf(
        key.public_key(), kind, name, san, job.days, job.ca_key, job.ca_cert, now=job.now
    )
    # Index first: a certificate on disk is then always in the index (revocable); an
    # interruption before the files are in place leaves only a superseded entry behind.
    _append_record(job.index, kind, name, cert, job.now)
    _save_index(job.p, job.index)
    _replace_pair(job.p.key(kind, name), key, job.p.cert(kind, name), cert)
    return Renewal(
        kind, name, "renewed", cert.serial_number, cert_not_after(cert), old.serial_number
    )


def _sans_of(cert: x509.Certificate) -> tuple[list[str], list[str]]:
    """The DNS names and IP addresses a certificate names (the only SANs we issue)."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return [], []
    dns = san.get_values_for_type(x509.DNSName)
    ips = [str(ip) for ip in san.get_values_for_type(x509.IPAddress)]
    return dns, ips


def _replace_pair(
    key_path: Path, key: ec.EllipticCurvePrivateKey, cert_path: Path, cert: x509.Certificate
) -> None:
    """Put a new key and certificate in place: both written in full first, then renamed.

    Two renames are not one atomic step. The key goes first: a reader in between gets
    the new key with the old certificate, which TLS libraries refuse at load ("key
    values mismatch"; nginx keeps its running configuration), and a retry gets the
    pair. An interruption there leaves the old certificate, still due, so the next
    run repairs the pair; the other order would leave a new certificate that is not
    due with the old key, and no run would ever touch it again.
    """
    tmp_key = _write_temp(key_path, _private_pem(key), 0o600)
    try:
        tmp_cert = _write_temp(cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)
        try:
            os.replace(tmp_key, key_path)
            os.replace(tmp_cert, cert_path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp_cert)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_key)
    _fsync_dir(cert_path.parent)


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
    *,
    now: dt.datetime | None = None,
) -> x509.Certificate:
    now = now or _now()
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


def _append_record(
    index: dict[str, Any], kind: str, name: str, cert: x509.Certificate, now: dt.datetime
) -> None:
    """Record a new certificate; earlier ones of the same name are now superseded by it."""
    for entry in index["certificates"]:
        if (entry["kind"], entry["name"]) == (kind, name) and entry.get("superseded_by") is None:
            entry["superseded_by"] = cert.serial_number
    record = Record(
        kind=kind,
        name=name,
        serial=cert.serial_number,
        issued_at=_format_time(now),
        not_after=_format_time(cert_not_after(cert)),
    )
    index["certificates"].append(asdict(record))


def _save_index(p: Paths, index: dict[str, Any]) -> None:
    text = json.dumps(index, indent=2, sort_keys=True) + "\n"
    _write_atomic(p.index, text.encode("utf-8"), 0o644, force=True)


def _private_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _write_private_key(path: Path, key: ec.EllipticCurvePrivateKey, *, force: bool) -> None:
    _write_atomic(path, _private_pem(key), 0o600, force=force)


def _write_atomic(path: Path, data: bytes, mode: int, *, force: bool) -> None:
    """Write via a temporary file that has ``mode`` from birth, then move it into place.

    The key never exists with looser permissions, a reader never sees half a file, and
    without ``force`` the final link fails rather than replacing an existing file.
    """
    tmp = _write_temp(path, data, mode)
    try:
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


def _write_temp(path: Path, data: bytes, mode: int) -> str:
    """A complete, fsynced temporary file beside ``path`` with ``mode`` from birth."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)  # 0600, O_EXCL
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return tmp


def _fsync_dir(directory: Path) -> None:
    # The renames themselves survive a power loss only once the directory is synced.
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


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


def _moment(now: dt.datetime | None) -> dt.datetime:
    if now is None:
        return _now()
    if now.tzinfo is None:
        raise PkiError("now must be a timezone-aware datetime")
    return now.astimezone(dt.UTC).replace(microsecond=0)


def _now() -> dt.datetime:
    # Whole seconds: X.509 times carry no fractions, and index.json should match the cert.
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def _format_time(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_time(value: str) -> dt.datetime:
    return dt.datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC)
