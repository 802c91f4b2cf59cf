"""The deployment's CRL as the apps read it: which certificates are revoked, kept fresh.

nginx (router and gates) refuses a revoked certificate at the handshake; the apps check
again, for the certificate a router forwards as much as for the peer's own, so that a
token is never issued to, and a message never accepted from, a revoked certificate even
if a CRL reached one nginx late. The file is re-read when it changes (checked at most
once a second); one that does not parse or is not signed by the deployment CA is logged
and the last good list stays in force.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path

from cryptography import x509

from dmr_appliance import logs

_log = logs.get_logger("dmr.revocation")
CHECK_INTERVAL = 1.0  # seconds between stats of the CRL file


class CrlFile:
    """``cert in crl``: is ``cert``'s serial listed in the deployment's CRL file?"""

    def __init__(
        self, path: Path | None, ca_cert: x509.Certificate, *, interval: float = CHECK_INTERVAL
    ) -> None:
        self.path = path
        self.ca_cert = ca_cert
        self.interval = interval
        self._serials: frozenset[int] = frozenset()
        self._stamp: tuple[int, int, int] | None = None
        self._checked = float("-inf")
        self._lock = threading.Lock()
        self.refresh()

    def __contains__(self, cert: object) -> bool:
        if not isinstance(cert, x509.Certificate):
            return False
        return self.lists(cert.serial_number)

    def lists(self, serial: int) -> bool:
        """Is this serial revoked by the CRL in force (re-read first if it changed)?"""
        if time.monotonic() - self._checked >= self.interval:
            self.refresh()
        return serial in self._serials

    def refresh(self) -> None:
        """Re-read the CRL if its file changed (one thread at a time; others go on)."""
        if not self._lock.acquire(blocking=False):
            return
        try:
            self._checked = time.monotonic()
            stamp = _stamp(self.path)
            if stamp != self._stamp:
                self._load(stamp)
        finally:
            self._lock.release()

    def _load(self, stamp: tuple[int, int, int] | None) -> None:
        if stamp is None:
            if self.path is not None:
                logs.log_event(_log, "crl-missing", logging.WARNING, path=str(self.path))
            self._stamp = stamp
            return
        assert self.path is not None
        try:
            crl = x509.load_pem_x509_crl(self.path.read_bytes())
            if not crl.is_signature_valid(self.ca_cert.public_key()):
                raise ValueError("not signed by the deployment CA")
        except (OSError, ValueError) as exc:
            # Keep the last good list; try again once the file changes.
            logs.log_event(
                _log, "crl-invalid", logging.ERROR, path=str(self.path), error=str(exc)[:200]
            )
            self._stamp = stamp
            return
        self._serials = frozenset(entry.serial_number for entry in crl)
        self._stamp = stamp
        logs.log_event(_log, "crl-loaded", path=str(self.path), revoked=len(self._serials))


def _stamp(path: Path | None) -> tuple[int, int, int] | None:
    if path is None:
        return None
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)
