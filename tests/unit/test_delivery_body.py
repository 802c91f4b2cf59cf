"""The delivery body encoded once per message gives each recipient the same bytes."""

from __future__ import annotations

from typing import Any

import pytest

from dmr_appliance.envelope import delivery_body, parse_envelope
from dmr_appliance.relay import delivery_body as bodies
from tests.unit.test_envelope import NOW, encode, valid_doc


@pytest.mark.parametrize("payload", [
    {"text": "héllo"}, "\ud800", '["\u0000dmr-to\u0000"]', ["\u0000dmr-to\u0000"],
    {"to": ["\u0000dmr-to\u0000"]},
])
def test_every_recipient_gets_the_bytes_delivery_body_makes(payload: Any) -> None:
    env = parse_envelope(encode(valid_doc(payload=payload)), now=NOW)
    parts = bodies.parts(env)
    for recipient in ("bob", "carol"):
        assert bodies.for_recipient(parts, recipient) == delivery_body(env, [recipient])
