"""The deployment PKI: one ECDSA P-256 CA, leaf certificates per kind, a CRL.

Pure: files and cryptography only. Layout (docs/architecture.md, "PKI layout")::

    DIR/ca.pem  DIR/ca.key  DIR/crl.pem  DIR/index.json
    DIR/<kind>/<name>.pem  DIR/<kind>/<name>.key

A certificate states its kind in ``OU`` and its name in ``CN``. Keys are written 0600
and never replaced unless ``force`` (or by ``renew``, which re-issues what is about to
expire). ``index.json`` records every certificate ever issued, so a revocation also
covers certificates that a forced re-issue or a renewal replaced.
Works with cryptography 38 (Debian 12) and current releases.

Callers use this package (``from dmr_appliance import pki``); its modules are
``certs`` (reading and building certificates), ``layout`` (the directory, index.json,
the lock), ``issuing`` (CA, issue, revoke, CRL) and ``renewal``.
"""

from dmr_appliance.pki.certs import (
    KINDS,
    SERVER_KINDS,
    cert_not_after,
    cert_not_before,
    cert_thumbprint,
    certificate_kind,
    certificate_name,
    load_certificate,
    verify_issued_by,
)
from dmr_appliance.pki.issuing import (
    REASONS,
    crl_file_next_update,
    crl_next_update,
    init_ca,
    issue,
    records,
    revoke,
    write_crl,
)
from dmr_appliance.pki.layout import (
    CA_DAYS,
    CRL_DAYS,
    DEFAULT_DIR,
    LEAF_DAYS,
    RENEW_WITHIN_DAYS,
    Issued,
    Paths,
    Record,
    paths,
)
from dmr_appliance.pki.renewal import Renewal, renew

__all__ = [
    "CA_DAYS",
    "CRL_DAYS",
    "DEFAULT_DIR",
    "KINDS",
    "LEAF_DAYS",
    "REASONS",
    "RENEW_WITHIN_DAYS",
    "SERVER_KINDS",
    "Issued",
    "Paths",
    "Record",
    "Renewal",
    "cert_not_after",
    "cert_not_before",
    "cert_thumbprint",
    "certificate_kind",
    "certificate_name",
    "crl_file_next_update",
    "crl_next_update",
    "init_ca",
    "issue",
    "load_certificate",
    "paths",
    "records",
    "renew",
    "revoke",
    "verify_issued_by",
    "write_crl",
]
