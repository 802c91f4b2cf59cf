"""What both Falcon apps share: request ids and the access log, problem+json errors and a
bounded JSON body reader (who the caller is: ``identity``).

Works on Falcon 3.1 (Debian 12) and 4.x: it uses only APIs present in both
(``add_error_handler`` with ``(req, resp, ex, params)``, ``set_error_serializer``,
middleware ``process_response(req, resp, resource, req_succeeded)``).
"""

from __future__ import annotations

import http
import json
import logging
import re
import time
import uuid
from typing import Any

import falcon

from dmr_appliance import logs
from dmr_appliance.errors import PROBLEM_BASE, DmrError

PEER_ADDR_HEADER = "X-DMR-Peer-Addr"  # set by the gate: that peer's address
REQUEST_ID_HEADER = "X-Request-Id"
PROBLEM_JSON = "application/problem+json"

# nginx's $request_id is 32 hex digits; accept any id of the same harmless alphabet so
# that an upstream's own id survives, but never echo arbitrary text into logs/headers.
_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")

# Falcon's HTTPErrors (routing, media parsing, size limits) by status: a stable code each.
_HTTP_CODES = {
    400: "bad-request",
    401: "unauthorized",
    403: "forbidden",
    404: "not-found",
    405: "method-not-allowed",
    406: "not-acceptable",
    408: "request-timeout",
    409: "conflict",
    411: "length-required",
    413: "too-large",
    414: "uri-too-long",
    415: "unsupported-media-type",
    422: "unprocessable",
    429: "too-many-requests",
    431: "headers-too-large",
    500: "internal-error",
    503: "unavailable",
}

_LINE = "dmr_line"  # req.context: fields a responder adds to the response line
_access_log = logs.get_logger("dmr.access")
_error_log = logs.get_logger("dmr.web")


# --- request ids and the access log ------------------------------------------------


class RequestContext:
    """Middleware: request id (taken, or made), timing, and one ``response`` line per request.

    A responder may add to that line (``add_to_line``) what it learnt (the relay: the
    message and every recipient's outcome), and a refusal then goes into it too rather
    than on a line of its own: one line per request, built once.
    """

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        request_id = _request_id_from(req.get_header(REQUEST_ID_HEADER))
        req.context.request_id = request_id
        req.context.started = time.perf_counter()
        req.context.log_token = logs.set_request_id(request_id)
        resp.set_header(REQUEST_ID_HEADER, request_id)

    def process_response(
        self,
        req: falcon.Request,
        resp: falcon.Response,
        resource: object,
        req_succeeded: bool,
    ) -> None:
        started = getattr(req.context, "started", None)
        ms = round((time.perf_counter() - started) * 1000, 1) if started is not None else None
        status = status_code(resp.status)
        fields = {
            **(getattr(req.context, _LINE, None) or {}),
            # The query string is left out on purpose: it may carry tokens.
            "method": req.method,
            "path": req.path,
            "status": status,
            "ms": ms,
            "remote_addr": peer_address(req),
            "request_id": getattr(req.context, "request_id", None),
        }
        level = logging.WARNING if status >= 500 else logging.INFO
        logs.log_event(_access_log, "response", level, **fields)
        token = getattr(req.context, "log_token", None)
        if token is not None:
            # Threaded workers reuse threads: do not let this id leak into the next request.
            logs.reset_request_id(token)
            req.context.log_token = None


def add_to_line(req: falcon.Request, **fields: Any) -> None:
    """Fields for ``req``'s ``response`` line (None values are left out); from the first
    call on, a refusal is written into that line instead of a ``refused`` line."""
    line = getattr(req.context, _LINE, None)
    if line is None:
        line = {}
        setattr(req.context, _LINE, line)
    line.update(fields)


def _request_id_from(value: str | None) -> str:
    if value and _REQUEST_ID.fullmatch(value):
        return value
    return uuid.uuid4().hex


def status_code(status: Any) -> int:
    """The integer code of a Falcon status ("404 Not Found", 404 or HTTPStatus)."""
    return int(falcon.http_status_to_code(status))


def peer_address(req: falcon.Request) -> str | None:
    # gunicorn listens on a unix socket only the gate reaches: the gate names the peer.
    # Not req.remote_addr: Falcon reports 127.0.0.1 when REMOTE_ADDR is missing.
    return req.get_header(PEER_ADDR_HEADER) or req.env.get("REMOTE_ADDR") or None


# --- problem+json ----------------------------------------------------------------------


def install_error_handlers(app: falcon.App) -> None:
    """Make every exception leave ``app`` as ``application/problem+json`` (RFC 9457).

    Only refusals are raised (and logged ``refused``); a result that is a problem
    document, such as a partly failed delivery, is answered with ``answer_problem``.

    Falcon picks the handler of the most specific class in the exception's MRO, so a
    DmrError never reaches the catch-all ``Exception`` handler.
    """
    app.add_error_handler(Exception, _unexpected_error)
    app.add_error_handler(falcon.HTTPError, _http_error)
    app.add_error_handler(DmrError, _dmr_error)
    # Used when Falcon composes an HTTPError itself (e.g. one raised by a handler).
    app.set_error_serializer(_serialize_http_error)


def _dmr_error(req: falcon.Request, resp: falcon.Response, ex: DmrError, params: dict) -> None:
    if getattr(req.context, _LINE, None) is not None:  # the response line says it
        add_to_line(req, outcome="refused", code=ex.code, detail=ex.detail)
    else:
        level = logging.WARNING if ex.status >= 500 else logging.INFO
        logs.log_event(
            _error_log, "refused", level, code=ex.code, status=ex.status, detail=ex.detail
        )
    if ex.headers:
        resp.set_headers(ex.headers)
    _write_problem(resp, ex.status, ex.problem(instance=req.path))


def _http_error(
    req: falcon.Request, resp: falcon.Response, ex: falcon.HTTPError, params: dict
) -> None:
    if ex.headers:
        resp.set_headers(ex.headers)  # keeps Allow on 405, Retry-After, ...
    _serialize_http_error(req, resp, ex)


def _serialize_http_error(req: falcon.Request, resp: falcon.Response, ex: falcon.HTTPError) -> None:
    code = status_code(ex.status)
    doc = _problem(
        _HTTP_CODES.get(code, f"http-{code}"),
        code,
        ex.description or _phrase(code),
        instance=req.path,
    )
    _write_problem(resp, code, doc)


def _unexpected_error(
    req: falcon.Request, resp: falcon.Response, ex: Exception, params: dict
) -> None:
    request_id = getattr(req.context, "request_id", None) or logs.current_request_id()
    logs.log_event(
        _error_log,
        "internal-error",
        logging.ERROR,
        exc_info=ex,
        method=req.method,
        path=req.path,
        request_id=request_id,
    )
    # Nothing about the failure itself: only what lets support find the log line.
    detail = "The server failed to handle this request."
    if request_id:
        detail += f" Quote request id {request_id} when reporting it."
    doc = _problem("internal-error", 500, detail, instance=req.path)
    if request_id:
        doc["request_id"] = request_id
    _write_problem(resp, 500, doc)


def answer_problem(
    req: falcon.Request,
    resp: falcon.Response,
    *,
    code: str,
    status: int,
    title: str,
    detail: str,
    **extra: Any,
) -> None:
    """Answer with a problem document that reports a result rather than a refusal (the
    relay's 502 and 422 listing every recipient's outcome): the document a raised
    ``DmrError`` would give, logged only by the response line."""
    doc = _problem(code, status, detail, instance=req.path, title=title)
    doc.update(extra)
    _write_problem(resp, status, doc)


def _problem(
    code: str, status: int, detail: str, *, instance: str | None, title: str | None = None
) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "type": PROBLEM_BASE + code,
        "title": title or _phrase(status),
        "status": status,
        "detail": detail,
    }
    if instance:
        doc["instance"] = instance
    return doc


def _phrase(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def _write_problem(resp: falcon.Response, status: int, doc: dict[str, Any]) -> None:
    resp.status = falcon.code_to_http_status(status)
    resp.content_type = PROBLEM_JSON
    # resp.text, not resp.media: no media handler is registered for problem+json.
    resp.text = json.dumps(doc, default=str)


# --- JSON request bodies ----------------------------------------------------------------


def json_body(req: falcon.Request, max_bytes: int) -> Any:
    """The request's JSON body, refused when not JSON, too large or malformed."""
    too_large = DmrError(
        f"the body is larger than {max_bytes} bytes",
        code="too-large",
        status=413,
        title="Content too large",
    )
    return _parse_json(read_body(req, max_bytes, too_large=too_large))


def read_body(req: falcon.Request, max_bytes: int, *, too_large: DmrError) -> bytes:
    """The raw body of a JSON request, at most ``max_bytes``; ``too_large`` is raised
    beyond that (each app names its own limit's problem type)."""
    media_type = (req.content_type or "").split(";", 1)[0].strip().lower()
    if media_type != falcon.MEDIA_JSON:
        raise DmrError(
            f"the body must be {falcon.MEDIA_JSON}, not {media_type or 'unspecified'}",
            code="unsupported-media-type",
            status=415,
            title="Unsupported media type",
        )
    if req.content_length is not None and req.content_length > max_bytes:
        raise too_large
    # A chunked body has no Content-Length, and Falcon's bounded_stream would then read
    # nothing: read the raw stream instead (gunicorn ends it with the last chunk). Either
    # way one byte more than allowed is enough to tell "too large".
    stream = req.bounded_stream if req.content_length is not None else req.stream
    raw = stream.read(max_bytes + 1)
    if len(raw) > max_bytes:
        raise too_large
    return raw


def _parse_json(raw: bytes) -> Any:
    try:
        return json.loads(raw, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        raise DmrError(
            f"the body is not valid JSON: {_short(exc)}",
            code="malformed-json",
            status=400,
            title="Malformed JSON",
        ) from exc


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _short(exc: BaseException) -> str:
    return str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
