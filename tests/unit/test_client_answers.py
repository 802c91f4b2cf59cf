"""client/answers.py: reading a router's answer."""

from __future__ import annotations

import json

import pytest
import requests

from dmr_appliance.client.answers import read_answer
from dmr_appliance.wire.outcome import DELIVERED, FAILED, REJECTED

PROBLEM = "urn:dmr:problem:"


def response(status: int, body: object = None, headers: dict | None = None) -> requests.Response:
    resp = requests.Response()
    resp.status_code = status
    resp.reason = "Reason"
    resp.headers.update(headers or {})
    resp._content = json.dumps(body).encode() if body is not None else b"<html>nginx</html>"
    return resp


def outcome(to: str, result: str, status: int | None, error: str | None = None) -> dict:
    doc = {"to": to, "outcome": result, "status": status, "ms": 1.0}
    return {**doc, "error": error} if error else doc


# -- answers -----------------------------------------------------------------------------


def test_partial_delivery_lists_each_recipient():
    answer = read_answer(
        response(
            502,
            {
                "type": PROBLEM + "delivery-failed",
                "detail": "1 of 2 failed",
                "outcomes": [
                    outcome("bob", DELIVERED, 200),
                    outcome("carol", FAILED, None, "timeout"),
                ],
            },
        )
    )
    assert answer.outcomes["bob"].outcome == DELIVERED
    assert (answer.outcomes["carol"].outcome, answer.outcomes["carol"].reason) == (
        FAILED,
        "timeout",
    )
    assert answer.code == "delivery-failed"


def test_an_unreadable_outcome_is_never_a_delivery():
    answer = read_answer(response(200, {"outcomes": [{"to": "bob", "outcome": "maybe"}]}))
    assert answer.outcomes["bob"].outcome == FAILED


def test_nginx_error_page_fails_the_whole_request_retryably():
    answer = read_answer(response(502))
    assert answer.outcomes == {} and answer.outcome == FAILED and answer.status == 502


def test_rate_limit_carries_retry_after():
    answer = read_answer(
        response(429, {"type": PROBLEM + "too-many-requests"}, {"Retry-After": "2"})
    )
    assert (answer.outcome, answer.retry_after) == (FAILED, 2.0)


@pytest.mark.parametrize(
    ("status", "code", "field", "one"),
    [
        (422, "card-expired", "to[1]", True),
        (403, "recipient-revoked", "to[0]", True),
        (403, "sender-suspended", None, False),
        (422, "envelope-bad-room", "room", False),
    ],
)
def test_refusals_naming_one_recipient(status, code, field, one):
    body = {"type": PROBLEM + code, "detail": "no"}
    if field:
        body["field"] = field
    answer = read_answer(response(status, body))
    assert answer.outcome == REJECTED and answer.refuses_one_recipient is one


def test_token_and_expiry_refusals_are_recognised():
    assert read_answer(response(401, {"type": PROBLEM + "token-expired"})).token_refused
    assert read_answer(response(422, {"type": PROBLEM + "envelope-expired"})).expired
