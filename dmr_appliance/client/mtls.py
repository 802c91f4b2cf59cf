"""The one way this project makes a ``requests`` session for mutual TLS with the deployment.

``trust_env`` is off: otherwise ``REQUESTS_CA_BUNDLE`` (or ``CURL_CA_BUNDLE``) in the
environment silently replaces ``verify``, and proxy variables would reroute the
connection. The session presents ``cert``/``key`` and trusts only ``ca``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import requests


def session(ca: Path | str, cert: Path | str, key: Path | str,
            headers: Mapping[str, str] | None = None) -> requests.Session:
    """A session presenting ``cert``/``key`` and trusting only ``ca``."""
    s = requests.Session()
    s.trust_env = False
    s.verify = str(ca)
    s.cert = (str(cert), str(key))
    s.headers.update(headers or {})
    return s
