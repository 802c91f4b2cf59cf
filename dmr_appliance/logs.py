"""JSON-lines logging: one object per line on stdout, for journald or a cluster collector.

Pure (stdlib ``logging`` only). Every line has ``ts`` (RFC 3339 UTC, milliseconds),
``level`` and ``event``; structured fields ride along with the record. The request id
lives in a context variable so that anything logged while a request is served carries
it without being passed down explicitly.
"""

from __future__ import annotations

import atexit
import contextvars
import functools
import json
import logging
import logging.handlers
import queue
import sys
from datetime import UTC, datetime
from typing import IO, Any

from dmr_appliance.errors import ConfigError

LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}

# Keys on a LogRecord where log_event() stores its data; one namespaced key each so
# that no field can collide with LogRecord's own attributes (msg, args, name...).
_EVENT_ATTR = "dmr_event"
_FIELDS_ATTR = "dmr_fields"
# Keyword spellings for fields whose names are Python keywords or read ambiguously.
_ALIASES = {"from_": "from", "sender": "from"}

_request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "dmr_request_id", default=None
)


def set_request_id(request_id: str | None) -> contextvars.Token[str | None]:
    """Bind ``request_id`` to the current context; pass the token to ``reset_request_id``."""
    return _request_id.set(request_id)


def reset_request_id(token: contextvars.Token[str | None]) -> None:
    _request_id.reset(token)


def current_request_id() -> str | None:
    return _request_id.get()


class JsonFormatter(logging.Formatter):
    """Formats any record as one line of JSON; never raises on odd field values."""

    def __init__(self, instance: str | None = None) -> None:
        super().__init__()
        self.instance = instance

    def format(self, record: logging.LogRecord) -> str:
        return _dumps(self.document(record))

    def document(self, record: logging.LogRecord) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "ts": _timestamp(record.created),
            "level": record.levelname.lower(),
            "event": getattr(record, _EVENT_ATTR, None) or "log",
            "logger": record.name,
        }
        if not hasattr(record, _EVENT_ATTR):
            doc["msg"] = record.getMessage()
        # Defaults a field may override: home logs heartbeats naming another instance.
        defaults = {"request_id": current_request_id(), "instance": self.instance}
        fields: dict[str, Any] = getattr(record, _FIELDS_ATTR, None) or {}
        for key, value in {**defaults, **fields}.items():
            if value is not None and key not in doc:  # the fixed keys above always win
                doc[key] = value
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        if record.stack_info:
            doc["stack"] = self.formatStack(record.stack_info)
        return doc


def configure(
    level: str = "info",
    *,
    instance: str | None = None,
    stream: IO[str] | None = None,
    queued: bool = False,
) -> None:
    """Send every log line to ``stream`` (stdout) as JSON; calling it again replaces it.

    ``queued``: the caller's thread only puts the record on a queue; one listener thread
    per process formats and writes it (a server's request threads then never wait on
    the JSON encoding or the stream's lock).
    """
    numeric = LEVELS.get(level.lower())
    if numeric is None:
        raise ConfigError(f"log level {level!r} is not one of {', '.join(LEVELS)}", key="log_level")
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, _DmrHandler | _DmrQueueHandler)]:
        root.removeHandler(handler)
        handler.close()
    # No line shows a record's source file, thread or process: the logging HOWTO's
    # "Optimization" settings spare every record the stack walk and lookups (~40 % of a
    # request thread's cost per line).
    logging._srcfile = None  # type: ignore[attr-defined]
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    writer = _DmrHandler(stream if stream is not None else sys.stdout)
    writer.setFormatter(JsonFormatter(instance))
    root.addHandler(_DmrQueueHandler(writer) if queued else writer)
    root.setLevel(numeric)


def get_logger(name: str) -> logging.Logger:
    return logging.getLogger(name)


def log_event(
    logger: logging.Logger,
    event: str,
    level: int = logging.INFO,
    *,
    exc_info: Any = None,
    **fields: Any,
) -> None:
    """Log one structured line; fields whose value is None are left out.

    ``from`` is a Python keyword: pass ``from_=`` or ``sender=``.
    """
    if not logger.isEnabledFor(level):
        return
    clean = {_ALIASES.get(k, k): v for k, v in fields.items() if v is not None}
    logger.log(level, event, exc_info=exc_info, extra={_EVENT_ATTR: event, _FIELDS_ATTR: clean})


class _DmrHandler(logging.StreamHandler):
    """Marks the handler configure() installed, so a second call replaces it."""


class _DmrQueueHandler(logging.handlers.QueueHandler):
    """Puts records on a queue that a listener thread writes through ``writer``."""

    def __init__(self, writer: logging.Handler) -> None:
        super().__init__(queue.SimpleQueue())
        self._listener = logging.handlers.QueueListener(self.queue, writer)
        self._listener.start()
        atexit.register(self.close)  # what is queued is written before the process ends

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        # The listener's thread has no request context: bind the request id now. The
        # record itself is formatted there (the stdlib's prepare would format it here).
        request_id = current_request_id()
        fields = getattr(record, _FIELDS_ATTR, None) or {}
        if request_id is not None and "request_id" not in fields:
            setattr(record, _FIELDS_ATTR, {"request_id": request_id, **fields})
        return record

    def close(self) -> None:
        if self._listener._thread is not None:  # stop() joins; a second call must not
            self._listener.stop()
        self._listener.handlers[0].close()
        super().close()


def _timestamp(created: float) -> str:
    """RFC 3339 UTC with milliseconds (truncated, as ``isoformat`` does)."""
    second = int(created)
    micro = round((created - second) * 1e6)  # as datetime.fromtimestamp rounds
    if micro >= 1_000_000:
        second, micro = second + 1, micro - 1_000_000
    return f"{_second(second)}.{micro // 1000:03d}Z"


@functools.lru_cache(maxsize=4)
def _second(epoch: int) -> str:
    # Most lines share their second with the one before: formatted once per second.
    return datetime.fromtimestamp(epoch, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S")


def _dumps(doc: dict[str, Any]) -> str:
    try:
        return json.dumps(doc, default=str, allow_nan=False, separators=(",", ":"))
    except Exception:  # a log line must never take its caller down
        # Circular, NaN or unprintable values: keep the line, with those values as text.
        safe = {k: v if isinstance(v, str | int | bool) else _safe_repr(v) for k, v in doc.items()}
        return json.dumps(safe, separators=(",", ":"))


def _safe_repr(value: object) -> str:
    try:
        return repr(value)
    except Exception:
        return f"<unprintable {type(value).__name__}>"
