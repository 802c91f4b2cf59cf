"""A recipient's outcome by HTTP status: the one rule the relay answers by and the sender
retries by (DESIGN.md: 2xx delivered; 4xx but 408/429 rejected for good; else failed).

Pure. ``None`` is "no answer" (timeout, refused connection, TLS failure): failed.
"""

from __future__ import annotations

from dmr_appliance.errors import DmrError

DELIVERED, REJECTED, FAILED = "delivered", "rejected", "failed"

# 4xx answers that say "not now" rather than "never".
RETRYABLE_4XX = frozenset({408, 429})


def classify(status: int | None) -> str:
    if status is not None and 200 <= status < 300:
        return DELIVERED
    if status is not None and 400 <= status < 500 and status not in RETRYABLE_4XX:
        return REJECTED
    return FAILED


def transient(error: DmrError) -> bool:
    """A failure worth trying again later (home or a router unreachable or failing), as
    opposed to a refusal that will not change."""
    return classify(error.status) == FAILED
