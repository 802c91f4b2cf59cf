"""The one TLS profile of the deployment: Mozilla's "intermediate", narrowed to ECDHE
with AEAD suites on TLS 1.2 (no DHE, no CBC), and TLS 1.3.

Pure. The nginx templates (router and gates) read these values through ``render`` and
the Python TLS clients and servers (relay delivery, the sync agent, the demo recipient)
through ``apply``, so every endpoint and every client speaks the same profile.
"""

from __future__ import annotations

import ssl

PROTOCOLS = ("TLSv1.2", "TLSv1.3")
# TLS 1.2 suites, in nginx/OpenSSL names; TLS 1.3's are OpenSSL's defaults, all AEAD.
CIPHERS = (
    "ECDHE-ECDSA-AES128-GCM-SHA256",
    "ECDHE-RSA-AES128-GCM-SHA256",
    "ECDHE-ECDSA-AES256-GCM-SHA384",
    "ECDHE-RSA-AES256-GCM-SHA384",
    "ECDHE-ECDSA-CHACHA20-POLY1305",
    "ECDHE-RSA-CHACHA20-POLY1305",
)
GROUPS = ("X25519", "prime256v1", "secp384r1")  # key exchange: X25519, P-256, P-384

TEMPLATE_VALUES = {
    "protocols": " ".join(PROTOCOLS),
    "ciphers": ":".join(CIPHERS),
    "groups": ":".join(GROUPS),
}


def apply(context: ssl.SSLContext) -> ssl.SSLContext:
    """Restrict ``context`` to the profile (Python's ssl cannot pick TLS 1.2 groups; the
    nginx peers refuse any other, and OpenSSL offers X25519 and P-256 first)."""
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(":".join(CIPHERS))
    return context
