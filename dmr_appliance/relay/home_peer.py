"""Whom the sync agent takes for home: the certificate at the other end of its connection.

The CA alone is not enough: it also signs recipients' and log hosts' ``server``
certificates and every relay's. The agent talks to home through the routers'
``/v1/home`` (certificate kind ``router``, which only routers get) or, where no router
stands between them (Kubernetes), to home's own gate (kind ``server``, a name in
``home_names``). Any other peer is refused right after the handshake, before a byte of
the request is sent: it neither hands the relay a document nor reads its heartbeat.
"""

from __future__ import annotations

from collections.abc import Collection

import urllib3
from cryptography import x509
from urllib3.connection import HTTPSConnection
from urllib3.connectionpool import HTTPSConnectionPool

from dmr_appliance import pki
from dmr_appliance.config import RelayConfig
from dmr_appliance.errors import PkiError
from dmr_appliance.relay.outbound import tls_context

ROUTER_KIND = "router"  # web.ROUTER_KIND: the kind that vouches; here, that relays home
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
    raise Refused("home-refused", "not-home",
                  f"the {kind} certificate {name!r} is neither a router's nor home's "
                  f"(home_names: {', '.join(home_names)})")


def pool_manager(cfg: RelayConfig) -> urllib3.PoolManager:
    """urllib3 for the agent's calls: every new connection's peer passes ``check_peer``."""
    names = frozenset(cfg.home_names)

    class HomeConnection(HTTPSConnection):
        def connect(self) -> None:
            super().connect()
            try:
                check_peer(self.sock.getpeercert(binary_form=True), names)
            except Refused:
                self.close()
                raise

    class HomePool(HTTPSConnectionPool):
        ConnectionCls = HomeConnection

    # Two connections per router: the sync long poll and a heartbeat run at once.
    http = urllib3.PoolManager(ssl_context=tls_context(cfg.tls), cert_reqs="CERT_REQUIRED",
                               maxsize=2)
    http.pool_classes_by_scheme = {**http.pool_classes_by_scheme, "https": HomePool}
    return http
