"""requests sessions that speak mutual TLS with the deployment CA."""

from __future__ import annotations

from pathlib import Path

import requests


def mtls_session(ca: Path, cert: Path, key: Path, headers: dict[str, str] | None = None
                 ) -> requests.Session:
    """A session presenting ``cert``/``key`` and trusting only ``ca``."""
    session = requests.Session()
    # Otherwise REQUESTS_CA_BUNDLE (and proxy variables) would override verify.
    session.trust_env = False
    session.verify = str(ca)
    session.cert = (str(cert), str(key))
    session.headers.update(headers or {})
    return session
