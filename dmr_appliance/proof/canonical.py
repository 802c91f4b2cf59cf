"""RFC 8785 JSON Canonicalization Scheme (JCS): one byte string per JSON value.

A signed message is signed over the JCS form of its fields, not over the bytes the
sender posted: every relay decodes the envelope and encodes each recipient's body anew
(``relay/delivery_body.py``), so whitespace, key order and number spelling may change
on the way while the values do not. Sender and recipient each canonicalize the values
they hold and so sign and verify the same bytes.

JCS is defined on I-JSON (RFC 7493): a number is an IEEE 754 double, so an integer
beyond +/-(2**53 - 1) has no exact canonical form and is refused (send it as a string),
as are NaN, infinities and strings holding lone surrogates. Numbers are written as
ECMAScript writes them (``Number.prototype.toString``); object members are sorted by
their names' UTF-16 code units.
"""

from __future__ import annotations

import json
import math
from decimal import Decimal
from typing import Any

MAX_SAFE_INTEGER = 2**53 - 1

# ensure_ascii=False leaves non-ASCII as it is and escapes exactly what JCS escapes:
# the quote, the backslash and the controls (\b \t \n \f \r as such, others \u00xx).
_STRING = json.JSONEncoder(ensure_ascii=False)


def canonical(value: Any) -> bytes:
    """The JCS bytes of ``value`` (decoded JSON); ``ValueError`` for what JCS cannot hold."""
    parts: list[str] = []
    _write(value, parts)
    try:
        return "".join(parts).encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("a string holds a lone surrogate, which JSON text cannot carry") from None


def _write(value: Any, out: list[str]) -> None:
    # Recursive: the envelope's depth limit (32 levels) bounds it.
    if value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, str):
        out.append(_STRING.encode(value))
    elif isinstance(value, int):
        out.append(_integer(value))
    elif isinstance(value, float):
        out.append(number(value))
    elif isinstance(value, list | tuple):
        _array(value, out)
    elif isinstance(value, dict):
        _object(value, out)
    else:
        raise ValueError(f"{type(value).__name__} is not a JSON value")


def _array(items: list[Any] | tuple[Any, ...], out: list[str]) -> None:
    out.append("[")
    for i, item in enumerate(items):
        if i:
            out.append(",")
        _write(item, out)
    out.append("]")


def _object(members: dict[Any, Any], out: list[str]) -> None:
    if not all(isinstance(name, str) for name in members):
        raise ValueError("object member names must be strings")
    out.append("{")
    for i, name in enumerate(sorted(members, key=_utf16)):
        if i:
            out.append(",")
        out.append(_STRING.encode(name))
        out.append(":")
        _write(members[name], out)
    out.append("}")


def _utf16(name: str) -> bytes:
    return name.encode("utf-16-be", "surrogatepass")


def _integer(value: int) -> str:
    if abs(value) > MAX_SAFE_INTEGER:
        raise ValueError(
            f"the integer {str(value)[:24]} is beyond +/-(2**53 - 1), where JSON numbers "
            "stop being exact (RFC 7493); send it as a string"
        )
    return str(value)


def number(value: float) -> str:
    """A double as ECMAScript's ``Number.prototype.toString`` writes it (RFC 8785 3.2.2.3)."""
    if not math.isfinite(value):
        raise ValueError("NaN and infinities are not JSON numbers")
    if value == 0:
        return "0"  # -0 too
    # repr gives the shortest digits that read back as the same double, as ECMAScript's do.
    sign, digits, exponent = Decimal(repr(value)).as_tuple()
    text = "".join(map(str, digits)).rstrip("0") or "0"
    k = len(text)
    n = int(exponent) + len(digits)  # value = 0.text * 10**n
    if k <= n <= 21:
        body = text + "0" * (n - k)
    elif 0 < n <= 21:
        body = f"{text[:n]}.{text[n:]}"
    elif -6 < n <= 0:
        body = f"0.{'0' * -n}{text}"
    else:
        mantissa = text if k == 1 else f"{text[0]}.{text[1:]}"
        body = f"{mantissa}e{'+' if n - 1 >= 0 else '-'}{abs(n - 1)}"
    return ("-" if sign else "") + body
