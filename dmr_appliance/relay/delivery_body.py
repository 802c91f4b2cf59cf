"""A message's delivery body encoded once for all its recipients.

Each recipient's body is ``envelope.delivery_body(message, [recipient])``; only ``to``
differs, so the message is encoded once with a mark in ``to`` and split around it.
"""

from __future__ import annotations

from dmr_appliance import envelope

# Its JSON starts with `["`, which no JSON string value can hold unescaped (the quote
# would be `\"`), and no key holds: its one match in the document is the ``to`` value.
_TO_MARK = "\u0000dmr-to\u0000"
_TO_MARK_JSON = envelope.compact_json([_TO_MARK])

Parts = tuple[bytes, bytes]


def parts(message: envelope.Envelope) -> Parts:
    """The delivery body before and after ``to``."""
    head, mark, tail = envelope.delivery_body(message, [_TO_MARK]).partition(_TO_MARK_JSON)
    if not mark:  # cannot happen (the document always holds the mark): fail loudly
        raise AssertionError("delivery body without its recipient mark")
    return head, tail


def for_recipient(body_parts: Parts, recipient: str) -> bytes:
    """Byte for byte ``envelope.delivery_body(message, [recipient])``."""
    head, tail = body_parts
    return head + envelope.compact_json([recipient]) + tail
