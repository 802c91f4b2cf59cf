"""wire.outcome.classify: a recipient's outcome by HTTP status (DESIGN.md)."""

from __future__ import annotations

import pytest

from dmr_appliance.wire.outcome import DELIVERED, FAILED, REJECTED, classify


@pytest.mark.parametrize(("status", "outcome"), [
    (200, DELIVERED), (202, DELIVERED), (204, DELIVERED),
    (400, REJECTED), (403, REJECTED), (404, REJECTED), (410, REJECTED), (422, REJECTED),
    (408, FAILED), (429, FAILED), (500, FAILED), (502, FAILED), (503, FAILED), (301, FAILED),
])
def test_classify(status, outcome):
    assert classify(status) == outcome
