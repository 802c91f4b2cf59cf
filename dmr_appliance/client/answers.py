"""How the sender reads a router's answer to ``POST /v1/messages``.

The relay lists every recipient's outcome on 200 (all delivered), 502
``delivery-failed`` and 422 ``delivery-rejected``. Any other answer carries no
outcomes and speaks for the whole request: nginx's own 502/504 (the relay died or hung
mid-request: a delivery may have happened, so a retry may duplicate it and recipients
deduplicate), 503 (nothing attempted), 429 (rate limit), or a refusal before delivery
(401 token, 403, 4xx envelope or card problems).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import requests

from dmr_appliance.errors import PROBLEM_BASE
from dmr_appliance.wire.outcome import FAILED, REJECTED, classify
from dmr_appliance.wire.retry import parse_retry_after

_RECIPIENT_FIELD = re.compile(r"to\[(\d+)\]")
# Refusals that name one recipient (``field: to[i]``): only that recipient is refused.
_RECIPIENT_CODES = ("card-", "recipient-")
EXPIRED_CODE = "envelope-expired"


@dataclass(frozen=True)
class RecipientAnswer:
    outcome: str
    status: int | None
    reason: str


@dataclass(frozen=True)
class Answer:
    status: int | None  # None: no HTTP answer at all
    code: str = ""  # the problem type's slug, when there is one
    detail: str = ""
    retry_after: float | None = None
    outcomes: dict[str, RecipientAnswer] = field(default_factory=dict)
    recipient_index: int | None = None  # the to[i] a per-recipient refusal names
    request_id: str | None = None  # the router's, for the trace across its logs

    @property
    def outcome(self) -> str:
        """The whole request's class when the relay listed no outcomes."""
        return classify(self.status)

    @property
    def token_refused(self) -> bool:
        return self.status == 401

    @property
    def expired(self) -> bool:
        return self.code == EXPIRED_CODE

    @property
    def refuses_one_recipient(self) -> bool:
        return (self.recipient_index is not None and self.outcome == REJECTED
                and self.code.startswith(_RECIPIENT_CODES))

    def summary(self) -> str:
        if self.status is None:
            return self.detail
        head = f"{self.status} {self.code}" if self.code else str(self.status)
        return f"{head}: {self.detail}" if self.detail else head


def no_answer(exc: requests.RequestException) -> Answer:
    return Answer(None, code="unreachable", detail=f"{type(exc).__name__}: {exc}")


def read_answer(resp: requests.Response) -> Answer:
    doc = _json(resp)
    problem = str(doc.get("type", ""))
    code = problem[len(PROBLEM_BASE):] if problem.startswith(PROBLEM_BASE) else ""
    detail = str(doc.get("detail") or resp.reason or "")
    return Answer(resp.status_code, code=code, detail=detail,
                  retry_after=parse_retry_after(resp.headers.get("Retry-After")),
                  outcomes=_outcomes(doc.get("outcomes")),
                  recipient_index=_index(doc.get("field")),
                  request_id=resp.headers.get("X-Request-Id"))


def _json(resp: requests.Response) -> dict:
    try:
        doc = resp.json()
    except ValueError:  # nginx's own HTML error page, or an empty body
        return {}
    return doc if isinstance(doc, dict) else {}


def _outcomes(items: object) -> dict[str, RecipientAnswer]:
    found: dict[str, RecipientAnswer] = {}
    for item in items if isinstance(items, list) else ():
        if not isinstance(item, dict) or not isinstance(item.get("to"), str):
            continue
        status = item.get("status") if isinstance(item.get("status"), int) else None
        outcome = item.get("outcome")
        if outcome not in ("delivered", "rejected", "failed"):
            outcome = FAILED  # an outcome we cannot read is not a delivery
        reason = str(item.get("error") or (f"recipient answered {status}" if status
                                           else "no answer from the recipient"))
        found[item["to"]] = RecipientAnswer(outcome, status, reason)
    return found


def _index(value: object) -> int | None:
    match = _RECIPIENT_FIELD.fullmatch(value) if isinstance(value, str) else None
    return int(match.group(1)) if match else None
