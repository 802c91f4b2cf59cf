"""The one error type every layer raises, and how it becomes an RFC 9457 problem.

Pure: no Falcon, no sockets. Each cause has a stable ``code`` (a slug); the problem
``type`` is ``PROBLEM_BASE + code`` so clients can branch on it without parsing text.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

PROBLEM_BASE = "urn:dmr:problem:"


class DmrError(Exception):
    """A refusal with a stable code, an HTTP status and a human explanation."""

    code: str = "error"
    status: int = 500
    title: str = "Internal error"

    def __init__(
        self,
        detail: str,
        *,
        code: str | None = None,
        status: int | None = None,
        title: str | None = None,
        headers: Mapping[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status
        if title is not None:
            self.title = title
        self.extra = extra
        # Response headers that belong with the refusal (e.g. Retry-After on a 503).
        self.headers = dict(headers or {})

    @property
    def type(self) -> str:
        return PROBLEM_BASE + self.code

    def problem(self, instance: str | None = None) -> dict[str, Any]:
        """The problem+json document for this error."""
        doc: dict[str, Any] = {
            "type": self.type,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }
        if instance:
            doc["instance"] = instance
        doc.update(self.extra)
        return doc

    def __str__(self) -> str:
        return f"{self.code}: {self.detail}"


class ConfigError(DmrError):
    code = "config-invalid"
    status = 500
    title = "Invalid configuration"


class PkiError(DmrError):
    code = "pki-error"
    status = 400
    title = "PKI operation refused"


class TokenError(DmrError):
    """A token or card that must not be trusted; ``code`` names the exact reason."""

    code = "token-invalid"
    status = 401
    title = "Token refused"


class EnvelopeError(DmrError):
    """A message envelope that breaks the v1 rules; ``code`` names the rule."""

    code = "envelope-invalid"
    status = 400
    title = "Invalid message envelope"


class AuthError(DmrError):
    code = "forbidden"
    status = 403
    title = "Forbidden"


class InvalidRequest(DmrError):
    """A request body or parameter that breaks the API's rules."""

    code = "invalid-request"
    status = 422
    title = "Invalid request"


class NotFound(DmrError):
    code = "not-found"
    status = 404
    title = "Not found"


class Conflict(DmrError):
    code = "conflict"
    status = 409
    title = "Conflict"


class Unavailable(DmrError):
    code = "unavailable"
    status = 503
    title = "Service unavailable"


class ProofError(DmrError):
    """A sender's signature or a recipient's receipt that does not prove what it must;
    ``code`` names the check that failed (``signature-*``, ``receipt-*``)."""

    code = "signature-invalid"
    status = 422
    title = "Signature refused"
