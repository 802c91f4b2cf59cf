"""The outcome model the relay answers by and the sender reads and retries by.

A recipient's outcome by HTTP status (DESIGN.md: 2xx delivered; 4xx but 408/429 rejected
for good; else failed), the per-recipient ``Outcome`` the relay lists in its answers
(200, 502 ``delivery-failed``, 422 ``delivery-rejected``), a message's roll-up of its
recipients' outcomes, and whether a failure is worth trying again.

Pure. ``None`` is "no answer" (timeout, refused connection, TLS failure): failed.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from dmr_appliance.errors import DmrError

DELIVERED, REJECTED, FAILED = "delivered", "rejected", "failed"
OUTCOMES = (DELIVERED, REJECTED, FAILED)

# 4xx answers that say "not now" rather than "never".
RETRYABLE_4XX = frozenset({408, 429})


def classify(status: int | None) -> str:
    if status is not None and 200 <= status < 300:
        return DELIVERED
    if status is not None and 400 <= status < 500 and status not in RETRYABLE_4XX:
        return REJECTED
    return FAILED


def roll_up(outcomes: Iterable[str]) -> str:
    """A message's outcome from its recipients': failed when one failed (a retry may
    help), else rejected when one refused it for good, else delivered."""
    found = set(outcomes)
    return FAILED if FAILED in found else REJECTED if REJECTED in found else DELIVERED


def transient(error: DmrError) -> bool:
    """A failure worth trying again later (home or a router unreachable or failing), as
    opposed to a refusal that will not change."""
    return classify(error.status) == FAILED


@dataclass(frozen=True, slots=True)
class Outcome:
    """One recipient's outcome, as the relay lists it in ``outcomes``."""

    to: str  # the recipient's participant id
    outcome: str  # delivered | rejected | failed
    status: int | None  # the recipient's HTTP status; None when it never answered
    ms: float = 0.0
    error: str | None = None  # why there was no answer (timeout, TLS, ...)
    receipt: str | None = None  # the recipient's signed receipt (proof/receipt.py), unread

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "to": self.to,
            "outcome": self.outcome,
            "status": self.status,
            "ms": self.ms,
        }
        if self.error:
            doc["error"] = self.error
        if self.receipt:
            doc["receipt"] = self.receipt
        return doc

    @classmethod
    def from_json(cls, item: object) -> Outcome | None:
        """An item of a relay's ``outcomes``, read defensively: ``None`` when it names
        no recipient; an outcome that cannot be read is ``failed``, never a delivery."""
        if not isinstance(item, dict) or not isinstance(item.get("to"), str):
            return None
        status = item.get("status") if isinstance(item.get("status"), int) else None
        outcome = item.get("outcome")
        ms = item.get("ms")
        return cls(
            item["to"],
            outcome if outcome in OUTCOMES else FAILED,
            status,
            float(ms) if isinstance(ms, int | float) else 0.0,
            str(item["error"]) if item.get("error") else None,
            item["receipt"] if isinstance(item.get("receipt"), str) else None,
        )

    @property
    def reason(self) -> str:
        """The outcome in words, for the sender's result."""
        return self.error or (
            f"recipient answered {self.status}" if self.status else "no answer from the recipient"
        )
