"""The client-certificate header as the nginx router sets it."""

from __future__ import annotations

import urllib.parse
from pathlib import Path

CLIENT_CERT_HEADER = "X-DMR-Client-Cert"


def escaped_cert(pem: str | bytes | Path) -> str:
    """A PEM certificate URL-escaped like nginx's ``$ssl_client_escaped_cert``."""
    if isinstance(pem, Path):
        pem = pem.read_text()
    if isinstance(pem, bytes):
        pem = pem.decode("ascii")
    return urllib.parse.quote(pem, safe="")


def cert_headers(pki, kind: str | None, name: str | None = None) -> dict[str, str]:
    """Headers making the caller ``kind``/``name`` of the test PKI (none for kind None)."""
    if kind is None:
        return {}
    return {CLIENT_CERT_HEADER: escaped_cert(pki.cert(kind, name))}


class Caller:
    """A falcon.testing client speaking as one certificate, from the trusted router address."""

    def __init__(self, client, pki, kind: str | None = None, name: str | None = None,
                 remote_addr: str = "127.0.0.1") -> None:
        self.client = client
        self.headers = cert_headers(pki, kind, name)
        self.remote_addr = remote_addr

    def request(self, method: str, path: str, *, headers: dict | None = None, **kwargs):
        merged = {**self.headers, **(headers or {})}
        return self.client.simulate_request(method, path, headers=merged,
                                            remote_addr=self.remote_addr, **kwargs)

    def get(self, path: str, **kwargs):
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs):
        return self.request("POST", path, **kwargs)

    def delete(self, path: str, **kwargs):
        return self.request("DELETE", path, **kwargs)
