"""What the relay's outgoing HTTPS shares (delivery to recipients, the sync agent's calls
to home): its TLS context as a client, and how a failed request is described."""

from __future__ import annotations

import ssl

from dmr_appliance import tls_profile
from dmr_appliance.config import Tls


def tls_context(tls: Tls, *, check_hostname: bool = False) -> ssl.SSLContext:
    """Client side of relay -> recipient (and home): our certificate, their CA, the
    deployment's TLS profile.

    ``check_hostname``: the context matches the peer's name itself (``http.client``, the
    delivery's client). urllib3 (under requests, the sync agent's client) matches it when
    the context does not; 1.26 has to, as it sends no server_hostname for an IP address.
    """
    context = tls_profile.apply(
        ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(tls.ca))
    )
    context.check_hostname = check_hostname
    context.load_cert_chain(str(tls.cert), str(tls.key))
    return context


def describe(exc: BaseException) -> str:
    """A short, stable description of a transport error (no addresses of our own)."""
    # urllib3 wraps the cause in ``reason``; ssl.SSLError's ``reason`` is only a code.
    reason = getattr(exc, "reason", None)
    cause = reason if isinstance(reason, BaseException) else exc
    return f"{type(exc).__name__}: {str(cause) or 'no answer'}"[:300]
