"""How the sender reads a router's answer to ``POST /v1/messages``.

The relay lists every recipient's outcome on 200 (all delivered), 502
``delivery-failed`` and 422 ``delivery-rejected``. Any other answer carries no
outcomes and speaks for the whole request: nginx's own 502/504 (the relay died or hung
mid-request: a delivery may have happened, so a retry may duplicate it and recipients
deduplicate), 503 (nothing attempted), 429 (rate limit), or a refusal before delivery
(401 token, 403, 4xx envelope or card problems).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import requests

from dmr_appliance.wire.outcome import REJECTED, Outcome, classify, roll_up
from dmr_appliance.wire.problem import read_problem

# Refusals that name one recipient (``field: to[i]``): only that recipient is refused.
_RECIPIENT_CODES = ("card-", "recipient-")
EXPIRED_CODE = "envelope-expired"


@dataclass(frozen=True)
class Answer:
    status: int | None  # None: no HTTP answer at all
    code: str = ""  # the problem type's slug, when there is one
    detail: str = ""
    retry_after: float | None = None
    outcomes: dict[str, Outcome] = field(default_factory=dict)  # by recipient
    recipient_index: int | None = None  # the to[i] a per-recipient refusal names
    request_id: str | None = None  # the router's, for the trace across its logs

    @property
    def outcome(self) -> str:
        """The whole try's outcome: its recipients' roll-up when the relay listed them,
        else what the status says for all of them."""
        if self.outcomes:
            return roll_up(o.outcome for o in self.outcomes.values())
        return classify(self.status)

    @property
    def token_refused(self) -> bool:
        return self.status == 401

    @property
    def expired(self) -> bool:
        return self.code == EXPIRED_CODE

    @property
    def refuses_one_recipient(self) -> bool:
        return (
            self.recipient_index is not None
            and self.outcome == REJECTED
            and self.code.startswith(_RECIPIENT_CODES)
        )

    def summary(self) -> str:
        if self.status is None:
            return self.detail
        head = f"{self.status} {self.code}" if self.code else str(self.status)
        return f"{head}: {self.detail}" if self.detail else head


def no_answer(exc: requests.RequestException) -> Answer:
    return Answer(None, code="unreachable", detail=f"{type(exc).__name__}: {exc}")


def read_answer(resp: requests.Response) -> Answer:
    problem = read_problem(resp.status_code, resp.headers, resp.content, resp.reason or "")
    return Answer(
        resp.status_code,
        code=problem.code,
        detail=problem.detail or resp.reason or "",
        retry_after=problem.retry_after,
        outcomes=_outcomes(problem.doc.get("outcomes")),
        recipient_index=problem.field_index,
        request_id=problem.request_id,
    )


def _outcomes(items: object) -> dict[str, Outcome]:
    read = (Outcome.from_json(item) for item in items) if isinstance(items, list) else ()
    return {o.to: o for o in read if o is not None}
