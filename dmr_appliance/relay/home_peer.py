"""Whom the sync agent takes for home: the certificate at the other end of its connection.

The CA alone is not enough: it also signs recipients' and log hosts' ``server``
certificates and every relay's. The agent talks to home through the routers'
``/v1/home`` (certificate kind ``router``, which only routers get) or, where no router
stands between them (Kubernetes), to home's own gate (kind ``server``, a name in
``home_names``). Any other peer is refused right after the handshake, before a byte of
the request is sent: it neither hands the relay a document nor reads its heartbeat.

The check sits in the TLS context itself (its socket class ends every handshake with
it), so it holds whatever HTTP client drives the context; the agent's is requests
(``wire.mtls.context_session``), through which ``Refused`` comes out as it is.
"""

from __future__ import annotations

import ssl
from collections.abc import Collection

import requests
from cryptography import x509

from dmr_appliance import pki
from dmr_appliance.config import RelayConfig
from dmr_appliance.errors import PkiError
from dmr_appliance.identity import ROUTER_KIND  # the kind that vouches; here, that relays home
from dmr_appliance.relay.outbound import tls_context
from dmr_appliance.wire import mtls

HOME_KIND = "server"


class Refused(Exception):
    """The sync agent refused home's URL or what it sent; ``reason`` is a stable word
    (for logs and the ``dmr_relay_sync_refused_total`` counter)."""

    def __init__(self, event: str, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.event = event
        self.reason = reason


def check_peer(der: bytes | None, home_names: Collection[str]) -> str:
    """``kind/name`` of a peer certificate acceptable as home; ``Refused`` otherwise.
    (The TLS handshake already checked it against the CA; nginx checks the CRL.)"""
    if not der:
        raise Refused("home-refused", "no-certificate", "the peer showed no certificate")
    try:
        cert = x509.load_der_x509_certificate(der)
        kind, name = pki.certificate_kind(cert), pki.certificate_name(cert)
    except (PkiError, ValueError) as exc:
        raise Refused("home-refused", "unreadable-certificate", str(exc)) from exc
    if kind == ROUTER_KIND or (kind == HOME_KIND and name in home_names):
        return f"{kind}/{name}"
    raise Refused(
        "home-refused",
        "not-home",
        f"the {kind} certificate {name!r} is neither a router's nor home's "
        f"(home_names: {', '.join(home_names)})",
    )


def home_context(cfg: RelayConfig) -> ssl.SSLContext:
    """The relay's client context (``outbound.tls_context``) whose every handshake ends
    with ``check_peer``: any peer but home is hung up on before a request is sent."""
    names = frozenset(cfg.home_names)

    class HomeSocket(ssl.SSLSocket):
        def do_handshake(self, block: bool = False) -> None:
            super().do_handshake(block)
            try:
                check_peer(self.getpeercert(binary_form=True), names)
            except Refused:
                self.close()  # ssl closes it on its own errors only: hang up, send nothing
                raise

    context = tls_context(cfg.tls)
    context.sslsocket_class = HomeSocket
    return context


def session(cfg: RelayConfig) -> requests.Session:
    """The agent's session to home: only ``home_context``, two connections per router
    (the sync long poll and a heartbeat run at once)."""
    return mtls.context_session(home_context(cfg), connections=2)
