"""What the relay's outgoing HTTPS shares (delivery to recipients, the sync agent's calls
to home): its TLS context as a client, and how a failed request is described."""

from __future__ import annotations

import ssl

from dmr_appliance import tls_profile
from dmr_appliance.config import Tls


def tls_context(tls: Tls) -> ssl.SSLContext:
    """Client side of relay -> recipient (and home): our certificate, their CA, the
    deployment's TLS profile."""
    context = tls_profile.apply(
        ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(tls.ca)))
    # urllib3 matches the host name itself when the context does not; 1.26 has to, as it
    # sends no server_hostname for an IP address, which check_hostname would refuse.
    context.check_hostname = False
    context.load_cert_chain(str(tls.cert), str(tls.key))
    return context


def describe(exc: BaseException) -> str:
    """A short, stable description of a transport error (no addresses of our own)."""
    reason = getattr(exc, "reason", None) or exc
    return f"{type(exc).__name__}: {reason}"[:300]
