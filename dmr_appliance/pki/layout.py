"""The PKI directory: its layout, index.json, the lock, safe writes, the checks on names.

Pure: files and cryptography only (docs/architecture.md, "PKI layout").
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from dmr_appliance import files
from dmr_appliance.errors import PkiError
from dmr_appliance.ids import PARTICIPANT_ID, PARTICIPANT_ID_RULE
from dmr_appliance.pki.certs import KINDS, cert_not_after, load_certificate, utc_now
from dmr_appliance.timefmt import format_time, parse_time

DEFAULT_DIR = Path("/etc/dmr-appliance/pki")
CA_DAYS = 3650
# A year at most by default (DESIGN "Trust"); `renew` keeps that painless.
LEAF_DAYS = 365
RENEW_WITHIN_DAYS = 30
CRL_DAYS = 30


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
        return self.dir / check_kind(kind) / f"{check_name(name)}.pem"

    def key(self, kind: str, name: str) -> Path:
        return self.dir / check_kind(kind) / f"{check_name(name)}.key"


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
        if parse_time(self.not_after) <= (now or utc_now()):
            return "expired"
        if self.superseded_by is not None or current_serial not in (None, self.serial):
            return "superseded"
        return "valid"


def load_ca(p: Paths) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    if not (p.ca.exists() and p.ca_key.exists()):
        raise PkiError(f"no CA in {p.dir}; run 'dmr pki init --dir {p.dir}' first")
    key = serialization.load_pem_private_key(p.ca_key.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise PkiError(f"{p.ca_key} is not an ECDSA key")
    return key, load_certificate(p.ca.read_bytes())


def load_index(p: Paths) -> dict[str, Any]:
    if not p.index.exists():
        # A CA made by hand (or an older layout) has issued nothing we know of.
        return {"crl_number": 0, "certificates": []}
    try:
        data = json.loads(p.index.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise PkiError(f"{p.index} is not valid JSON: {exc}") from exc
    data.setdefault("certificates", [])
    return data


def append_record(
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
        issued_at=format_time(now),
        not_after=format_time(cert_not_after(cert)),
    )
    index["certificates"].append(asdict(record))


def save_index(p: Paths, index: dict[str, Any]) -> None:
    text = json.dumps(index, indent=2, sort_keys=True) + "\n"
    write_file(p.index, text.encode("utf-8"), 0o644, force=True)


def private_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def write_private_key(path: Path, key: ec.EllipticCurvePrivateKey, *, force: bool) -> None:
    write_file(path, private_pem(key), 0o600, force=force)


def write_file(path: Path, data: bytes, mode: int, *, force: bool) -> None:
    """Atomically, with ``mode`` from birth; without ``force`` an existing file stays."""
    try:
        files.write_atomic(path, data, mode=mode, replace=force)
    except FileExistsError as exc:
        raise PkiError(f"{path} exists; use --force to replace it") from exc


@contextlib.contextmanager
def locked(p: Paths) -> Iterator[None]:
    """Serialise writers (two `dmr pki issue` at once would lose an index entry)."""
    if not p.dir.is_dir():
        raise PkiError(f"{p.dir} does not exist; run 'dmr pki init --dir {p.dir}' first")
    with open(p.dir / ".lock", "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def check_kind(kind: str) -> str:
    if kind not in KINDS:
        raise PkiError(f"unknown kind {kind!r}; use one of {', '.join(KINDS)}")
    return kind


def check_name(name: str) -> str:
    if not PARTICIPANT_ID.fullmatch(name):
        raise PkiError(f"invalid name {name!r}: {PARTICIPANT_ID_RULE}")
    return name


def check_days(days: int) -> None:
    if days < 1:
        raise PkiError(f"days must be at least 1, not {days}")


def aware_moment(now: dt.datetime | None) -> dt.datetime:
    if now is None:
        return utc_now()
    if now.tzinfo is None:
        raise PkiError("now must be a timezone-aware datetime")
    return now.astimezone(dt.UTC).replace(microsecond=0)
