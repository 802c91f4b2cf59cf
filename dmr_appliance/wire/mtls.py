"""The one way this project makes a ``requests`` session for mutual TLS with the deployment.

``trust_env`` is off: otherwise ``REQUESTS_CA_BUNDLE`` (or ``CURL_CA_BUNDLE``) in the
environment silently replaces ``verify``, and proxy variables would reroute the
connection. ``session`` presents ``cert``/``key`` and trusts only ``ca`` (the sender, the
CLI); ``context_session`` uses an ``ssl.SSLContext`` the caller built, and only it (the
relay's sync agent: its TLS profile, and a check of who answered, see relay/home_peer.py).
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import requests
from requests.adapters import HTTPAdapter


def session(
    ca: Path | str, cert: Path | str, key: Path | str, headers: Mapping[str, str] | None = None
) -> requests.Session:
    """A session presenting ``cert``/``key`` and trusting only ``ca``."""
    s = requests.Session()
    s.trust_env = False
    s.verify = str(ca)
    s.cert = (str(cert), str(key))
    s.headers.update(headers or {})
    return s


def context_session(context: ssl.SSLContext, *, connections: int = 2) -> requests.Session:
    """A session whose HTTPS connections all use ``context``: its certificate, its CA, its
    protocols and whatever its sockets check at the handshake; no other trust store.
    ``connections`` kept alive per host (the agent's long poll and a heartbeat at once)."""
    s = requests.Session()
    s.trust_env = False
    s.mount("https://", _ContextAdapter(context, connections))
    return s


class _ContextAdapter(HTTPAdapter):
    """requests' adapter with the caller's context in place of requests' own TLS setup."""

    def __init__(self, context: ssl.SSLContext, connections: int) -> None:
        self.context = context
        super().__init__(pool_maxsize=connections, max_retries=0)

    def init_poolmanager(
        self, connections: int, maxsize: int, block: bool = False, **pool_kwargs: Any
    ) -> None:
        # cert_reqs too: urllib3 sets the context's verify_mode from it on each connection.
        super().init_poolmanager(
            connections,
            maxsize,
            block,
            ssl_context=self.context,
            cert_reqs="CERT_REQUIRED",
            **pool_kwargs,
        )

    def cert_verify(self, conn: Any, url: str, verify: Any, cert: Any) -> None:
        # requests would load its own CA bundle (certifi) or the session's files into the
        # context, on every new connection: the context already holds all the trust.
        conn.cert_reqs = "CERT_REQUIRED"
        conn.ca_certs = conn.ca_cert_dir = None
        conn.cert_file = conn.key_file = None
