"""Issuing: the CA, leaf certificates, revocation and the CRL, the index's records.

Pure: files and cryptography only. Every write holds the directory's lock.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from dmr_appliance.errors import PkiError
from dmr_appliance.pki.certs import SKEW, build_ca, build_leaf, subject_alt_names, utc_now
from dmr_appliance.pki.layout import (
    CA_DAYS,
    CRL_DAYS,
    LEAF_DAYS,
    Issued,
    Paths,
    Record,
    append_record,
    check_days,
    check_kind,
    check_name,
    load_ca,
    load_index,
    locked,
    paths,
    save_index,
    write_file,
    write_private_key,
)
from dmr_appliance.timefmt import format_time, parse_time

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
    check_days(days)
    p = paths(directory)
    p.dir.mkdir(parents=True, exist_ok=True)
    with locked(p):
        present = [f.name for f in (p.ca, p.ca_key) if f.exists()]
        if present and not force:
            if len(present) == 2:
                return False
            raise PkiError(
                f"incomplete CA in {p.dir}: only {present[0]} exists; "
                "use --force to create a new CA"
            )
        key = ec.generate_private_key(ec.SECP256R1())
        cert = build_ca(key, common_name, days)
        write_private_key(p.ca_key, key, force=force)
        write_file(p.ca, cert.public_bytes(serialization.Encoding.PEM), 0o644, force=force)
        save_index(p, {"crl_number": 0, "certificates": []})
        write_crl_locked(p, days=CRL_DAYS)
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
    check_days(days)
    san = subject_alt_names(kind, name, dns, ips)
    with locked(p):
        ca_key, ca_cert = load_ca(p)
        if not force and (cert_path.exists() or key_path.exists()):
            raise PkiError(f"{kind} '{name}' already exists in {p.dir}; use --force to replace it")
        key = ec.generate_private_key(ec.SECP256R1())
        cert = build_leaf(key.public_key(), kind, name, san, days, ca_key, ca_cert)
        cert_path.parent.mkdir(mode=0o755, exist_ok=True)
        write_private_key(key_path, key, force=force)
        write_file(cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644, force=force)
        index = load_index(p)
        append_record(index, kind, name, cert, utc_now())
        save_index(p, index)
    return Issued(cert=cert_path, key=key_path, serial=cert.serial_number)


def revoke(directory: Path, kind: str, name: str, *, reason: str = "unspecified") -> None:
    """Revoke every certificate issued for ``kind``/``name`` and rewrite the CRL.

    Revoking an already revoked name changes nothing but refreshes the CRL.
    """
    p = paths(directory)
    check_kind(kind)
    check_name(name)
    if reason not in REASONS:
        raise PkiError(f"unknown revocation reason {reason!r}; use one of {', '.join(REASONS)}")
    with locked(p):
        index = load_index(p)
        entries = [e for e in index["certificates"] if e["kind"] == kind and e["name"] == name]
        if not entries:
            raise PkiError(f"no {kind} certificate named '{name}' was issued from {p.dir}")
        stamp = format_time(utc_now())
        for entry in entries:
            if not entry.get("revoked_at"):
                entry.update(revoked_at=stamp, reason=reason)
        save_index(p, index)
        write_crl_locked(p, days=CRL_DAYS)


def write_crl(directory: Path, *, days: int = CRL_DAYS) -> Path:
    """Sign a fresh CRL valid for ``days``; nginx refuses every client once it has expired."""
    check_days(days)
    p = paths(directory)
    with locked(p):
        return write_crl_locked(p, days=days)


def records(directory: Path) -> list[Record]:
    """Every certificate issued from ``directory``, oldest first."""
    p = paths(directory)
    if not p.ca.exists():
        raise PkiError(f"no CA in {p.dir}; run 'dmr pki init --dir {p.dir}' first")
    known = set(Record.__dataclass_fields__)
    return [
        Record(**{k: v for k, v in entry.items() if k in known})
        for entry in load_index(p)["certificates"]
    ]


def crl_next_update(directory: Path) -> dt.datetime:
    """When the CRL in ``directory`` expires (nginx then refuses every client)."""
    return crl_file_next_update(paths(directory).crl)


def crl_file_next_update(path: Path) -> dt.datetime:
    """When the CRL file ``path`` expires (the metric every service exports)."""
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


# --- CRL ---------------------------------------------------------------------------------


def write_crl_locked(p: Paths, *, days: int) -> Path:
    ca_key, ca_cert = load_ca(p)
    index = load_index(p)
    index["crl_number"] = int(index.get("crl_number", 0)) + 1
    now = utc_now()
    ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca_cert.subject)
        .last_update(now - SKEW)
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
    write_file(p.crl, crl.public_bytes(serialization.Encoding.PEM), 0o644, force=True)
    save_index(p, index)
    return p.crl


def _revoked_entry(entry: dict[str, Any]) -> x509.RevokedCertificate:
    builder = (
        x509.RevokedCertificateBuilder()
        .serial_number(int(entry["serial"]))
        .revocation_date(parse_time(entry["revoked_at"]))
    )
    flag = REASONS.get(entry.get("reason") or "unspecified")
    if flag is not None:
        builder = builder.add_extension(x509.CRLReason(flag), critical=False)
    return builder.build()
