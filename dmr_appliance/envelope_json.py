"""The envelope's JSON decoding: bytes to a document, refused before any field is read
when it is too large, not UTF-8, nested too deep, or not strict JSON (duplicate keys,
NaN/Infinity, numbers that do not fit). On the relay's hot path: one pass each.
"""

from __future__ import annotations

import json
import math
import re
from array import array
from itertools import accumulate
from typing import Any, NoReturn

from dmr_appliance.errors import EnvelopeError

# 400: the body is not a JSON document we are willing to decode; 413: too big.
SYNTAX = 400
TOO_LARGE = 413

# The depth scan works on the raw bytes (UTF-8 never puts an ASCII byte inside a
# multi-byte character). It blanks out JSON strings, so brackets in them do not
# count, then keeps only brackets as +1/-1. The string pattern is possessive and
# always matches once a quote opens (even unterminated or ending in a backslash),
# which keeps it linear on hostile input; on valid JSON it is exact, and on invalid
# JSON it agrees with the parser up to the point where the parser gives up.
_JSON_STRING = re.compile(rb'"(?:[^"\\]++|\\.?)*+(?:"|\Z)', re.DOTALL)
_BRACKET_STEPS = bytes.maketrans(b"[]{}", b"\x01\xff\x01\xff")  # +1 / -1 as signed bytes
_NOT_BRACKETS = bytes(sorted(set(range(256)) - set(b"[]{}")))


def _fail(code: str, detail: str, *, status: int, **extra: Any) -> NoReturn:
    raise EnvelopeError(detail, code=code, status=status, **extra)


def _check_depth(body: bytes, limit: int) -> None:
    # Cheap bound first: nesting can never exceed the number of opening brackets.
    if body.count(b"[") + body.count(b"{") <= limit:
        return
    steps = _JSON_STRING.sub(b"", body).translate(_BRACKET_STEPS, _NOT_BRACKETS)
    if max(accumulate(array("b", steps)), default=0) > limit:
        _fail(
            "envelope-too-deep",
            f"JSON nesting is deeper than {limit} arrays and objects",
            status=SYNTAX,
            limit=limit,
        )


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):  # only then pay for finding which key repeats
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                _fail("envelope-malformed-json", f"duplicate key {key[:64]!r}", status=SYNTAX)
            seen.add(key)
    return obj


def _constant(name: str) -> NoReturn:
    _fail("envelope-malformed-json", f"{name} is not valid JSON", status=SYNTAX)


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # e.g. 1e999, which would come back out as Infinity
        _fail("envelope-malformed-json", f"number out of range: {text[:40]}", status=SYNTAX)
    return value


def decode(body: bytes, *, max_bytes: int, max_depth: int) -> Any:
    """The JSON document in ``body``, or the ``EnvelopeError`` that says why not."""
    if len(body) > max_bytes:
        _fail(
            "envelope-too-large",
            f"body is {len(body)} bytes; at most {max_bytes} are allowed",
            status=TOO_LARGE,
            limit=max_bytes,
        )
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        _fail("envelope-malformed-json", f"body is not UTF-8 (byte {exc.start})", status=SYNTAX)
    _check_depth(body, max_depth)
    try:
        return json.loads(
            text, object_pairs_hook=_object, parse_constant=_constant, parse_float=_float
        )
    except json.JSONDecodeError as exc:
        _fail(
            "envelope-malformed-json",
            f"body is not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
            status=SYNTAX,
        )
    except ValueError:  # an integer beyond Python's digit limit
        _fail("envelope-malformed-json", "body is not JSON: a number is too long", status=SYNTAX)
