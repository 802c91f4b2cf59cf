"""What ``Sender.send`` returns: every recipient's final outcome and every attempt made.

Pure data. A recipient ends ``delivered``, ``rejected`` (refused for good, with the
reason) or ``failed`` (retries spent or the message expired; reported to home).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from dmr_appliance.proof.receipt import Receipt
from dmr_appliance.timefmt import format_time
from dmr_appliance.wire.outcome import DELIVERED, FAILED, REJECTED, Outcome

MAX_DETAIL = 1000  # home keeps at most this much of an attempt's detail


@dataclass(frozen=True)
class Attempt:
    """One try: a POST to a router, or a try that could not be made (no token, no card)."""

    number: int  # 1-based over the whole send, routers included
    target: str  # the router's base URL
    at: datetime
    outcome: str  # delivered | rejected | failed
    status: int | None  # the router's HTTP status; None when it never answered
    detail: str
    recipients: tuple[str, ...]  # whom this try carried
    ms: float = 0.0

    def for_report(self) -> dict[str, Any]:
        """The attempt as home's failure report holds it."""
        return {
            "target": self.target,
            "at": format_time(self.at),
            "outcome": self.outcome,
            "status": self.status,
            "detail": self.detail[:MAX_DETAIL],
        }


@dataclass
class RecipientOutcome:
    """A recipient's final outcome: the latest wire ``Outcome`` it had (the relay's, or one
    the sender decided), in words, and how many tries carried it."""

    recipient: str
    outcome: str = FAILED
    status: int | None = None  # the recipient's (or the refusing router's) HTTP status
    reason: str = "not attempted"
    attempts: int = 0  # tries that carried this recipient
    receipt: Receipt | None = None  # the recipient's verified receipt (signed messages)

    def settle(self, latest: Outcome, receipt: Receipt | None = None) -> None:
        self.outcome, self.status, self.reason = latest.outcome, latest.status, latest.reason
        self.receipt = receipt

    def to_json(self) -> dict[str, Any]:
        return {
            "to": self.recipient,
            "outcome": self.outcome,
            "status": self.status,
            "reason": self.reason,
            "attempts": self.attempts,
            "receipt": self.receipt.to_json() if self.receipt else None,
        }


@dataclass
class SendResult:
    message_id: str
    room: str
    recipients: dict[str, RecipientOutcome]
    attempts: list[Attempt] = field(default_factory=list)
    expired: bool = False  # the message's expires_at came before its delivery
    reported: bool = False  # home holds the failure report
    spooled: bool = False  # the report waits in the local spool for home to come back
    report_error: str | None = None
    resent: bool = False  # a re-send of a reported failure (``resend.retry_failed``)
    resolved: bool = False  # ... which home now records as resolved
    signed: bool = False  # the message carried the sender's signature
    digest: str | None = None  # of its signed content: what each receipt names
    # The signed message as sent (recipient ids in ``to``): a proof bundle's (proof_bundle).
    envelope: dict[str, Any] | None = field(default=None, repr=False)

    @property
    def ok(self) -> bool:
        return all(r.outcome == DELIVERED for r in self.recipients.values())

    def _with(self, outcome: str) -> list[str]:
        return [pid for pid, r in self.recipients.items() if r.outcome == outcome]

    @property
    def delivered(self) -> list[str]:
        return self._with(DELIVERED)

    @property
    def rejected(self) -> list[str]:
        return self._with(REJECTED)

    @property
    def failed(self) -> list[str]:
        return self._with(FAILED)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.message_id,
            "room": self.room,
            "ok": self.ok,
            "signed": self.signed,
            "digest": self.digest,
            "outcomes": [r.to_json() for r in self.recipients.values()],
            "attempts": [
                {"number": a.number, **a.for_report(), "ms": a.ms, "recipients": list(a.recipients)}
                for a in self.attempts
            ],
            "expired": self.expired,
            "reported": self.reported,
            "spooled": self.spooled,
            "report_error": self.report_error,
            **({"resent": True, "resolved": self.resolved} if self.resent else {}),
        }
