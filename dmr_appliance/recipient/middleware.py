"""``Middleware``: any WSGI app as a recipient endpoint that verifies every delivery.

It reads the body (bounded), checks it with ``verify_delivery`` and, for a refusal,
answers the problem itself (``application/problem+json``) without calling the app. An
accepted delivery reaches the app with the same body and ``environ["dmr.delivery"]``
(the ``Accepted``); when the app answers 2xx to a signed message, the answer carries
the recipient's receipt in ``DMR-Receipt``. Only ``POST`` (what relays send) is
checked; other methods (a health check) pass through untouched.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from http import HTTPStatus
from typing import Any
from urllib.parse import quote

from dmr_appliance.envelope import DEFAULT_LIMITS, EnvelopeLimits
from dmr_appliance.errors import DmrError, EnvelopeError
from dmr_appliance.proof.trust import Trust
from dmr_appliance.recipient.receipts import HEADER, ReceiptSigner, endpoint
from dmr_appliance.recipient.verify import Accepted, path_recipient, verify_delivery

ENVIRON_KEY = "dmr.delivery"
PROBLEM_JSON = "application/problem+json"

Environ = dict[str, Any]
StartResponse = Callable[..., Any]
WsgiApp = Callable[[Environ, StartResponse], Iterable[bytes]]


def recipient_from_path(environ: Environ) -> str:
    """The last segment of the request's path: ``/inbox/bob`` is bob's endpoint."""
    return path_recipient(environ.get("PATH_INFO") or "")


class Middleware:
    """Wraps ``app``; ``recipient`` is this endpoint's participant id, or a callable
    that finds it in the environ (e.g. ``recipient_from_path``), never in the body."""

    def __init__(
        self,
        app: WsgiApp,
        *,
        recipient: str | Callable[[Environ], str],
        trust: Trust,
        require_signature: bool = False,
        receipts: ReceiptSigner | None = None,
        limits: EnvelopeLimits = DEFAULT_LIMITS,
        methods: Sequence[str] = ("POST",),
    ) -> None:
        self.app = app
        self.recipient = recipient
        self.trust = trust
        self.require_signature = require_signature
        self.receipts = receipts
        self.limits = limits
        self.methods = frozenset(methods)

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("REQUEST_METHOD") not in self.methods:
            return self.app(environ, start_response)
        try:
            body = read_body(environ, self.limits.max_message_bytes)
            accepted = self.verify(environ, body)
        except DmrError as refusal:
            return problem(start_response, refusal)
        environ[ENVIRON_KEY] = accepted
        environ["wsgi.input"] = io.BytesIO(body)
        environ["CONTENT_LENGTH"] = str(len(body))
        url = request_endpoint(environ)
        return self.app(environ, _with_receipt(start_response, self.receipts, accepted, url))

    def verify(self, environ: Environ, body: bytes, now: datetime | None = None) -> Accepted:
        recipient = self.recipient(environ) if callable(self.recipient) else self.recipient
        return verify_delivery(
            body,
            recipient,
            self.trust,
            require_signature=self.require_signature,
            now=now,
            limits=self.limits,
        )


def _with_receipt(
    start_response: StartResponse, receipts: ReceiptSigner | None, accepted: Accepted, url: str
) -> StartResponse:
    def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        # Only this middleware speaks for the signature: an app's own header is dropped.
        headers = [(n, v) for n, v in headers if n.lower() != HEADER.lower()]
        if receipts is not None and status[:1] == "2":
            token = receipts.issue(accepted, url)
            if token is not None:
                headers.append((HEADER, token))
        return start_response(status, headers, exc_info)

    return start


def read_body(environ: Environ, max_bytes: int) -> bytes:
    """The request body, at most ``max_bytes`` (``envelope-too-large``, 413, beyond)."""
    stream = environ["wsgi.input"]
    text = str(environ.get("CONTENT_LENGTH") or "").strip()
    if not text:
        # No length: only a server that ends the stream itself (chunked) can be read on.
        if not environ.get("wsgi.input_terminated"):
            return b""
        data = stream.read(max_bytes + 1)
        if len(data) > max_bytes:
            raise _too_large(len(data), max_bytes)
        return bytes(data)
    if not text.isdigit():
        raise EnvelopeError(
            "the request's Content-Length is not a number", code="delivery-bad-length"
        )
    length = int(text)
    if length > max_bytes:
        raise _too_large(length, max_bytes)
    chunks, left = [], length
    while left > 0:  # a server may hand the body over in parts
        chunk = stream.read(left)
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _too_large(size: int, limit: int) -> EnvelopeError:
    return EnvelopeError(
        f"body is {size}{'+' if size > limit else ''} bytes; at most {limit} are allowed",
        code="envelope-too-large",
        status=413,
        limit=limit,
    )


def request_endpoint(environ: Environ) -> str:
    """``https://`` + Host + the request target, as the sender's card names the endpoint."""
    host = environ.get("HTTP_HOST")
    if not host:
        port = str(environ.get("SERVER_PORT") or "443")
        host = environ.get("SERVER_NAME", "") + ("" if port == "443" else f":{port}")
    # Rebuilt from PATH_INFO: RAW_URI is not set by every server (and test clients fake it).
    path = environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")
    target = quote(path, safe="/;=,", encoding="latin1")  # as wsgiref.util.request_uri
    query = environ.get("QUERY_STRING")
    return endpoint(host, f"{target}?{query}" if query else target)


def problem(start_response: StartResponse, refusal: DmrError) -> list[bytes]:
    """Answer ``refusal`` as RFC 9457 problem+json."""
    body = json.dumps(refusal.problem()).encode()
    try:
        phrase = HTTPStatus(refusal.status).phrase
    except ValueError:
        phrase = "Refused"
    headers = [("Content-Type", PROBLEM_JSON), ("Content-Length", str(len(body)))]
    headers += [(str(n), str(v)) for n, v in refusal.headers.items()]
    start_response(f"{refusal.status} {phrase}", headers)
    return [body]
