"""wire/outcome.py: a recipient's outcome by HTTP status (DESIGN.md), the outcome the relay
lists and the sender reads, and a message's roll-up."""

from __future__ import annotations

import pytest

from dmr_appliance.errors import DmrError
from dmr_appliance.wire.outcome import (
    DELIVERED,
    FAILED,
    REJECTED,
    Outcome,
    classify,
    roll_up,
    transient,
)


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        (200, DELIVERED),
        (202, DELIVERED),
        (204, DELIVERED),
        (400, REJECTED),
        (403, REJECTED),
        (404, REJECTED),
        (410, REJECTED),
        (422, REJECTED),
        (408, FAILED),
        (429, FAILED),
        (500, FAILED),
        (502, FAILED),
        (503, FAILED),
        (301, FAILED),
        (None, FAILED),  # no answer at all
    ],
)
def test_classify(status, outcome):
    assert classify(status) == outcome


@pytest.mark.parametrize(
    ("outcomes", "message"),
    [
        ([DELIVERED, DELIVERED], DELIVERED),
        ([DELIVERED, REJECTED], REJECTED),
        ([REJECTED, FAILED, DELIVERED], FAILED),  # failed wins: a retry may still help
        ([], DELIVERED),
    ],
)
def test_a_message_rolls_up_its_recipients(outcomes, message):
    assert roll_up(outcomes) == message


def test_transient_is_a_failure_worth_another_try():
    assert transient(DmrError("down", status=503))
    assert not transient(DmrError("suspended", status=403))


def test_an_outcome_goes_over_the_wire_and_back():
    sent = [
        Outcome("bob", DELIVERED, 200, 3.5, receipt="a.b.c"),
        Outcome("carol", FAILED, None, 10.0, "timeout"),
    ]
    docs = [o.to_json() for o in sent]
    assert docs == [
        {"to": "bob", "outcome": "delivered", "status": 200, "ms": 3.5, "receipt": "a.b.c"},
        {"to": "carol", "outcome": "failed", "status": None, "ms": 10.0, "error": "timeout"},
    ]
    assert [Outcome.from_json(d) for d in docs] == sent


@pytest.mark.parametrize(
    ("item", "read"),
    [
        ({"to": "bob", "outcome": "maybe", "status": 200}, Outcome("bob", FAILED, 200)),
        (
            {"to": "bob", "outcome": DELIVERED, "status": "200", "ms": "x"},
            Outcome("bob", DELIVERED, None),
        ),
        ({"to": "bob"}, Outcome("bob", FAILED, None)),
        ({"to": 7, "outcome": DELIVERED}, None),
        ("bob", None),
    ],
)
def test_an_outcome_is_read_defensively_and_never_guessed_delivered(item, read):
    assert Outcome.from_json(item) == read


@pytest.mark.parametrize(
    ("outcome", "reason"),
    [
        (Outcome("bob", FAILED, None, error="timeout"), "timeout"),
        (Outcome("bob", REJECTED, 410), "recipient answered 410"),
        (Outcome("bob", FAILED, None), "no answer from the recipient"),
    ],
)
def test_an_outcome_in_words(outcome, reason):
    assert outcome.reason == reason
