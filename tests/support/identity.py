"""The identity headers as the gate in front of an app sets them (falcon.testing side).

The gate always sets ``X-DMR-Peer-Cert`` to the certificate its TLS peer proved; a router
peer forwards its own client's in ``X-DMR-Client-Cert``. ``cert_headers`` speaks as a
caller reached through the router; ``direct_headers`` as a peer that connected itself.
"""

from __future__ import annotations

import urllib.parse
from pathlib import Path

CLIENT_CERT_HEADER = "X-DMR-Client-Cert"
PEER_CERT_HEADER = "X-DMR-Peer-Cert"
ROUTER = ("router", "router")


def escaped_cert(pem: str | bytes | Path) -> str:
    """A PEM certificate URL-escaped like nginx's ``$ssl_client_escaped_cert``."""
    if isinstance(pem, Path):
        pem = pem.read_text()
    if isinstance(pem, bytes):
        pem = pem.decode("ascii")
    return urllib.parse.quote(pem, safe="")


def cert_headers(pki, kind: str | None, name: str | None = None) -> dict[str, str]:
    """Headers of caller ``kind``/``name`` reached through the router (none for kind None)."""
    if kind is None:
        return {}
    return {**direct_headers(pki, *ROUTER), CLIENT_CERT_HEADER: escaped_cert(pki.cert(kind, name))}


def direct_headers(pki, kind: str, name: str) -> dict[str, str]:
    """Headers of a peer ``kind``/``name`` that connected to the gate itself."""
    return {PEER_CERT_HEADER: escaped_cert(pki.cert(kind, name))}


class Caller:
    """A falcon.testing client speaking as one certificate, through the router."""

    def __init__(self, client, pki, kind: str | None = None, name: str | None = None) -> None:
        self.client = client
        self.headers = cert_headers(pki, kind, name)

    def request(self, method: str, path: str, *, headers: dict | None = None, **kwargs):
        merged = {**self.headers, **(headers or {})}
        return self.client.simulate_request(method, path, headers=merged, **kwargs)

    def get(self, path: str, **kwargs):
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs):
        return self.request("POST", path, **kwargs)

    def delete(self, path: str, **kwargs):
        return self.request("DELETE", path, **kwargs)


def forwarded(pki, kind: str, name: str) -> dict[str, str]:
    """What a router adds over real TLS: the client it vouches for (the gate sets the peer)."""
    return {CLIENT_CERT_HEADER: escaped_cert(pki.cert(kind, name))}
