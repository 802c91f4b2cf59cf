"""The one reader of problem documents (RFC 9457), whoever wrote them: home, a relay, or
nginx (whose own error pages carry no JSON at all).

``code`` is the slug of our own ``type`` (``PROBLEM_BASE + code``); a foreign or missing
type reads as ``""`` so that callers can tell "a refusal we defined" from "something in
between answered". Transport-agnostic: callers pass status, headers and body.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from dmr_appliance.errors import PROBLEM_BASE, DmrError
from dmr_appliance.wire.retry import parse_retry_after

_RECIPIENT_FIELD = re.compile(r"to\[(\d+)\]")


@dataclass(frozen=True)
class Problem:
    status: int
    code: str = ""  # the slug of our problem type; "" for none or a foreign one
    title: str = ""  # the document's, else the HTTP reason phrase
    detail: str = ""
    retry_after: float | None = None  # seconds, from the Retry-After header
    request_id: str | None = None  # X-Request-Id: the router's, for `dmr trace`
    doc: dict[str, Any] = field(default_factory=dict)  # the whole document, {} if none

    @property
    def field_index(self) -> int | None:
        """The ``i`` of a ``field: to[i]`` that names one recipient, if any."""
        value = self.doc.get("field")
        match = _RECIPIENT_FIELD.fullmatch(value) if isinstance(value, str) else None
        return int(match.group(1)) if match else None

    def error(self, *, default_code: str) -> DmrError:
        """The refusal as the ``DmrError`` it describes (a missing type: ``default_code``)."""
        detail = self.detail or f"answered {self.status} {self.title}".rstrip()
        return DmrError(
            detail, code=self.code or default_code, status=self.status, title=self.title or "Error"
        )


def read_problem(
    status: int, headers: Mapping[str, str], body: bytes | str | None, reason: str = ""
) -> Problem:
    """The problem an answer carries; any body that is not a JSON object reads as none."""
    doc = _document(body)
    kind = str(doc.get("type", ""))
    return Problem(
        status=status,
        code=kind[len(PROBLEM_BASE) :] if kind.startswith(PROBLEM_BASE) else "",
        title=str(doc.get("title") or reason or ""),
        detail=str(doc.get("detail") or ""),
        retry_after=parse_retry_after(headers.get("Retry-After")),
        request_id=headers.get("X-Request-Id"),
        doc=doc,
    )


def _document(body: bytes | str | None) -> dict[str, Any]:
    if not body:
        return {}
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError):  # nginx's HTML page, or a cut body
        return {}
    return doc if isinstance(doc, dict) else {}
