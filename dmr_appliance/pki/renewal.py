"""Renewal: re-issue what is about to expire, with a fresh key (``dmr pki renew``).

Pure: files and cryptography only (docs/architecture.md, "Renewal").
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from dmr_appliance import files
from dmr_appliance.errors import PkiError
from dmr_appliance.pki.certs import (
    build_leaf,
    cert_not_after,
    certificate_kind,
    load_certificate,
    subject_alt_names,
    verify_issued_by,
)
from dmr_appliance.pki.layout import (
    KINDS,
    LEAF_DAYS,
    RENEW_WITHIN_DAYS,
    Paths,
    append_record,
    aware_moment,
    check_days,
    check_kind,
    check_name,
    load_ca,
    load_index,
    locked,
    paths,
    private_pem,
    save_index,
)
from dmr_appliance.timefmt import format_time


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
    check_days(days)
    if within_days < 0:
        raise PkiError(f"within must be at least 0 days, not {within_days}")
    if days <= within_days:
        raise PkiError(
            f"days ({days}) must exceed within ({within_days}): "
            "otherwise every run would renew the same certificates again"
        )
    p = paths(directory)
    wanted = _renewal_filter(kinds, names)
    moment = aware_moment(now)
    with locked(p):
        ca_key, ca_cert = load_ca(p)
        index = load_index(p)
        deadline = moment + dt.timedelta(days=within_days)
        job = _RenewJob(p, ca_key, ca_cert, index, moment, deadline, days, dry_run)
        selected = [pair for pair in _index_names(index) if wanted(*pair)]
        return [_renew_one(job, kind, name) for kind, name in selected]


def _renewal_filter(
    kinds: Sequence[str] | None, names: Sequence[str] | None
) -> Callable[[str, str], bool]:
    kind_set = {check_kind(k) for k in kinds} if kinds else None
    name_set = {check_name(n) for n in names} if names else None
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
        detail = f"the CA expires {format_time(ca_end)}: replace the CA first"
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
    san = subject_alt_names(kind, name, dns, ips)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = build_leaf(
        key.public_key(), kind, name, san, job.days, job.ca_key, job.ca_cert, now=job.now
    )
    # Index first: a certificate on disk is then always in the index (revocable); an
    # interruption before the files are in place leaves only a superseded entry behind.
    append_record(job.index, kind, name, cert, job.now)
    save_index(job.p, job.index)
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
    tmp_key = files.write_temp(key_path, private_pem(key), 0o600)
    try:
        tmp_cert = files.write_temp(cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)
        try:
            os.replace(tmp_key, key_path)
            os.replace(tmp_cert, cert_path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp_cert)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_key)
    files.fsync_dir(cert_path.parent)
