"""The one assertion that an answer is our problem document (RFC 9457), whoever wrote it
(an app, a gate or the router), read through requests, falcon.testing or a raw socket.
Independent of ``dmr_appliance.wire.problem``, which reads leniently."""

from __future__ import annotations

import json
from typing import Any

PROBLEM = "application/problem+json"


def assert_problem(answer: Any, status: int, code: str) -> dict:
    """``answer`` is problem ``code`` with ``status``: the content type, and a JSON body
    (never an HTML page) whose type and status say so. Returns the document."""
    got, headers, body = parts(answer)
    assert got == status, (got, body[:500])
    assert headers["Content-Type"] == PROBLEM, headers
    assert not body.lstrip().startswith(b"<"), body[:500]
    doc = json.loads(body)
    assert doc["type"] == f"urn:dmr:problem:{code}", doc
    assert doc["status"] == status, doc
    return doc


def assert_nginx_problem(answer: Any, status: int, code: str) -> dict:
    """nginx's own problem (the router's or a gate's): it also names its request id, the
    X-Request-Id it answers with (the apps' problems carry none)."""
    doc = assert_problem(answer, status, code)
    request_id = parts(answer)[1]["X-Request-Id"]
    assert request_id and doc["request_id"] == request_id, (request_id, doc)
    return doc


def parts(answer: Any) -> tuple[int, Any, bytes]:
    """(status, headers, body) of a requests.Response or falcon.testing.Result (both have
    ``status_code`` and ``content``), or of a raw answer with ``status`` and ``body``."""
    if hasattr(answer, "status_code"):
        return answer.status_code, answer.headers, answer.content
    return answer.status, answer.headers, answer.body
