"""A recipient's side of the end-to-end proof, for any recipient endpoint.

``verify_delivery`` checks one delivery as a relay posts it (decoded strictly, addressed
to this recipient alone, its sender's signature verified or its absence allowed, not
expired); ``ReceiptSigner`` signs the receipt for an accepted signed message;
``Middleware`` does both around any WSGI app. Refusals are ``EnvelopeError`` or
``ProofError``: each a code, a status and a problem+json document.
"""

from dmr_appliance.recipient.middleware import (
    ENVIRON_KEY,
    Middleware,
    recipient_from_path,
    request_endpoint,
)
from dmr_appliance.recipient.receipts import HEADER, ReceiptSigner, endpoint
from dmr_appliance.recipient.verify import (
    SIGNATURE_MISSING,
    WRONG_RECIPIENT,
    Accepted,
    path_recipient,
    verify_delivery,
)

__all__ = [
    "ENVIRON_KEY",
    "HEADER",
    "SIGNATURE_MISSING",
    "WRONG_RECIPIENT",
    "Accepted",
    "Middleware",
    "ReceiptSigner",
    "endpoint",
    "path_recipient",
    "recipient_from_path",
    "request_endpoint",
    "verify_delivery",
]
