"""Who the caller is: the certificate the gate saw at the TLS handshake (or, from a router,
the one it vouches for), checked against the deployment's CA, its dates and the CRL.

``Caller`` is the answer; ``Verifier`` holds the CA and CRL and answers ``caller(req)``;
``CheckCaller`` is the middleware that refuses an unacceptable certificate on every
route; ``require`` admits only some kinds. Shared by both apps, below them.
"""

from __future__ import annotations

import functools
import logging
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import falcon
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from dmr_appliance import logs, pki, web
from dmr_appliance.crl import CrlFile
from dmr_appliance.errors import AuthError, PkiError

CLIENT_CERT_HEADER = "X-DMR-Client-Cert"  # forwarded by a router: whom it vouches for
PEER_CERT_HEADER = "X-DMR-Peer-Cert"  # set by the gate: who proved a key at the handshake
ROUTER_KIND = "router"

_log = logs.get_logger("dmr.web")  # the logger name operators already filter on


@dataclass(frozen=True)
class Caller:
    """Who the router says the caller is, from the client certificate it verified."""

    kind: str
    name: str
    thumbprint: str  # x5t#S256 of the certificate, as in a token's cnf claim
    certificate: x509.Certificate = field(repr=False, compare=False)


class Verifier:
    """Checks certificates against the deployment's CA, their dates and its CRL:
    ``caller(req)`` for the one a request presents, ``certificate(pem)`` for one handed
    over in a body."""

    def __init__(self, ca_cert: x509.Certificate, revoked: CrlFile | None = None) -> None:
        self.ca_cert = ca_cert
        self.revoked = revoked
        self._anchor = _Anchor(ca_cert)

    @classmethod
    def from_files(cls, ca: Path, crl: Path | None) -> Verifier:
        """From the deployment CA's certificate and its CRL (re-read when it changes)."""
        ca_cert = pki.load_certificate(Path(ca).read_bytes())
        return cls(ca_cert, CrlFile(crl, ca_cert))

    def caller(self, req: falcon.Request) -> Caller | None:
        """The caller: the gate's peer, or whom a router peer vouches for (``_caller``)."""
        return _caller(req, anchor=self._anchor, revoked=self.revoked)

    def certificate(self, pem: str) -> Caller:
        """A certificate handed over in a request body, checked as a peer's would be."""
        return _accepted(urllib.parse.quote(pem, safe=""), self._anchor, self.revoked)


class CheckCaller:
    """Middleware: no route answers a certificate the app does not accept (CA, validity, CRL).

    nginx checks the CRL at a full handshake only: a resumed TLS session skips it, and
    nginx's session cache outlives the reload that brings a new CRL. The gate's TLS port
    always passes the peer's certificate, so every request from it is checked here, on
    identity-free routes too (/metrics, /openapi.json, the JWKS, the probes). A request
    without one came from the gate's health port (the probes only) or gunicorn's own
    socket. ``skip``: paths whose responder identifies (and counts) the caller itself.
    """

    def __init__(self, verifier: Verifier, skip: frozenset[str] = frozenset()) -> None:
        self.verifier = verifier
        self.skip = skip

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        if req.path not in self.skip and req.get_header(PEER_CERT_HEADER):
            # An app that identifies its callers anyway (home) shares that one answer.
            shared = getattr(req.context, "find_caller", None)
            if shared is not None:
                shared()  # raises a 403 problem for a certificate it cannot accept
            else:
                self.verifier.caller(req)


def _caller(
    req: falcon.Request, *, anchor: _Anchor, revoked: CrlFile | None = None
) -> Caller | None:
    """The caller: the gate's peer, or whom a router peer vouches for.

    The gate in front of the app always sets ``X-DMR-Peer-Cert`` to the certificate the
    peer proved at the TLS handshake. Only a peer of kind ``router`` may name someone
    else, in ``X-DMR-Client-Cert``; from any other peer that header is ignored and the
    caller is exactly the peer. A certificate we cannot accept is an error, never
    "anonymous". No peer header at all (only a request that did not come through the
    gate, e.g. a probe on the health port) has no identity.
    """
    peer_value = req.get_header(PEER_CERT_HEADER)
    if not peer_value:
        return None
    peer = _accepted(peer_value, anchor, revoked)
    forwarded = req.get_header(CLIENT_CERT_HEADER)
    if peer.kind != ROUTER_KIND:
        if forwarded:
            logs.log_event(
                _log,
                "client-cert-ignored",
                logging.WARNING,
                peer_kind=peer.kind,
                peer=peer.name,
                remote_addr=web.peer_address(req),
            )
        return peer
    return _accepted(forwarded, anchor, revoked) if forwarded else peer


def _accepted(value: str, anchor: _Anchor, revoked: CrlFile | None) -> Caller:
    verdict = _from_header(value, anchor)
    if not verdict.not_before <= time.time() <= verdict.not_after:
        raise _invalid("the client certificate is outside its validity period")
    if revoked is not None and revoked.lists(verdict.serial):
        caller = verdict.caller
        raise AuthError(
            f"the {caller.kind} certificate of {caller.name!r} is revoked "
            "(listed in the deployment's CRL)",
            code="client-cert-revoked",
            title="Client certificate revoked",
        )
    return verdict.caller


class _Verdict(NamedTuple):
    """What a certificate header proved once: who, and what must be checked every time."""

    caller: Caller
    not_before: float  # epoch seconds: the clock moves, so validity is checked per request
    not_after: float
    serial: int  # against the CRL in force (a new one counts at once)


class _Anchor:
    """The deployment CA as part of a cache key, hashed once: a ``Certificate`` hashes its
    DER again on every call, which cost the relay's hot path more than the lookup."""

    __slots__ = ("_der", "_hash", "cert")

    def __init__(self, cert: x509.Certificate) -> None:
        self.cert = cert
        self._der = cert.public_bytes(serialization.Encoding.DER)
        self._hash = hash(self._der)

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Anchor) and other._der == self._der


@functools.lru_cache(maxsize=1024)
def _from_header(value: str, anchor: _Anchor) -> _Verdict:
    # Cached by the certificate's bytes as the gate passes them: parsing and an ECDSA
    # verification on every relay request add up. The CA (compared by its DER) is part of
    # the key, so a rotated CA never reuses a verdict; the dates and serial are read here
    # once, so that no request touches the shared certificate object. Errors are not
    # cached.
    ca_cert = anchor.cert
    try:
        cert = pki.load_certificate(urllib.parse.unquote(value))
    except (PkiError, ValueError, UnicodeError) as exc:
        raise _invalid("the client certificate could not be parsed") from exc
    if not pki.verify_issued_by(cert, ca_cert):
        raise _invalid("the client certificate was not issued by this deployment's CA")
    kind = pki.certificate_kind(cert)
    try:
        name = pki.certificate_name(cert)
    except PkiError as exc:
        raise _invalid("the client certificate has no single common name (CN)") from exc
    if kind is None or not name:
        raise _invalid("the client certificate states no known kind (OU)")
    return _Verdict(
        Caller(kind, name, pki.cert_thumbprint(cert), cert),
        pki.cert_not_before(cert).timestamp(),
        pki.cert_not_after(cert).timestamp(),
        cert.serial_number,
    )


def _invalid(detail: str) -> AuthError:
    return AuthError(detail, code="client-cert-invalid", title="Client certificate refused")


def require(caller: Caller | None, *kinds: str) -> Caller:
    """``caller`` if it is one of ``kinds``; otherwise a 403 problem."""
    if caller is None:
        raise AuthError(
            "this endpoint needs a client certificate presented through the router",
            code="no-client-identity",
        )
    if caller.kind not in kinds:
        raise AuthError(
            f"this route is not for {caller.kind} certificates; allowed: {', '.join(kinds)}"
        )
    return caller
