"""HTTP/1.1 on the wire for delivery: a request's bytes, and ``Answer``, the incremental
reader of a recipient's answer (status, framing, ``Connection``, ``DMR-Receipt``).

``http.client`` parses every answer's headers through the ``email`` package (4.4 % of a
relay worker's time in issue 28's profile). The relay needs five headers of an answer and
never its body, so ``Answer`` reads the head itself
and counts the body off (``Content-Length``, chunked, or up to the peer's close) without
keeping it, byte by byte as they come: the same reader serves a blocking connection and
the fan-out's non-blocking ones.

Bounds: a whole answer (head, body and chunk framing) beyond ``limit`` bytes is cut
there; its status counts once its head was read, but its connection is not kept. A head
that does not fit in ``limit``, more than ``MAX_HEADERS`` header lines, a malformed status
line, header line or chunk size raise ``BadAnswer`` (an ``http.client.HTTPException``, as
``http.client``'s own errors were).
"""

from __future__ import annotations

import http.client
import re
from collections.abc import Mapping

MAX_HEADERS = 100  # http.client's bound
MAX_HEAD = 64 * 1024  # http.client's longest line: a whole head never needs more
_WANTED = frozenset(
    (b"content-length", b"transfer-encoding", b"connection", b"keep-alive", b"dmr-receipt")
)
_STATUS = re.compile(rb"HTTP/1\.([01]) ([1-9][0-9][0-9])(?: [^\x00-\x08\x0a-\x1f\x7f]*)?")
_TOKEN = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_CHUNK_SIZE = re.compile(rb"([0-9A-Fa-f]{1,15})[ \t]*(?:;[^\r\n]*)?")
# What a header value must not hold: it would end the line early.
_BREAKS = re.compile(rb"[\x00\r\n]")

# Body framing
_LENGTH, _CHUNK_LINE, _CHUNK_DATA, _CHUNK_END, _TRAILER, _TO_CLOSE, _DONE = range(7)


class BadAnswer(http.client.HTTPException):
    """The recipient's answer is not HTTP/1.1 the relay can read."""


def header_block(headers: Mapping[str, str]) -> bytes:
    """``Name: value\\r\\n`` lines, encoded once per message (Latin-1, as http.client);
    ``ValueError`` for a name or value that would break the head (http.client's checks)."""
    for name, value in headers.items():
        if not _TOKEN.fullmatch(name.encode("latin-1")) or _BREAKS.search(value.encode("latin-1")):
            raise ValueError(f"invalid header {name!r}")
    return "".join(f"{name}: {value}\r\n" for name, value in headers.items()).encode("latin-1")


def host_header(host: str, port: int) -> bytes:
    """The ``Host`` value http.client sent: IPv6 in brackets, the port unless 443."""
    name = f"[{host}]" if ":" in host else host
    return (name if port == 443 else f"{name}:{port}").encode("ascii")


def request(target: bytes, host: bytes, headers: bytes, body: bytes) -> bytes:
    """A whole POST: head and body in one piece, written with one send."""
    return (
        b"POST %s HTTP/1.1\r\nHost: %s\r\nAccept-Encoding: identity\r\nContent-Length: %d\r\n"
        b"%s\r\n%s" % (target, host, len(body), headers, body)
    )


class Answer:
    """One answer, fed as its bytes arrive; ``feed`` and ``eof`` say when it is complete."""

    __slots__ = (
        "_buf",
        "_left",
        "_mode",
        "_scanned",
        "done",
        "keep_alive",
        "limit",
        "receipt",
        "received",
        "status",
    )

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.status: int | None = None
        self.receipt: str | None = None
        self.keep_alive = False  # known once done: the connection may carry another request
        self.done = False
        self.received = 0  # bytes of this answer so far, head and framing included
        self._buf = b""  # unparsed bytes (the head, a chunk size line, trailers)
        self._mode = _DONE
        self._left = 0  # body bytes still to come (a length, or the current chunk)
        self._scanned = 0  # how far the head was searched for its end

    def feed(self, data: bytes) -> bool:
        """Take the next bytes read; True once the answer is complete or cut at the limit."""
        self.received += len(data)
        if self.status is None:
            data = self._head(data)
            if self.status is None:
                return False
        if data:
            self._body(data)
        if self.received > self.limit:
            # Cut here if unfinished (the status still counts); a connection that carried
            # more than the limit is not kept, finished or not.
            self.done, self.keep_alive = True, False
        return self.done

    def eof(self) -> bool:
        """The peer closed the connection: the answer ends there (True; never kept), or
        ``BadAnswer`` if its head had not."""
        self.keep_alive = False
        if self.status is None:
            raise BadAnswer(
                "the recipient closed the connection before answering"
                if not self.received
                else "the recipient closed the connection within its answer's head"
            )
        # A body cut short still has its status (http.client's read(limit) kept it too).
        self.done = True
        return True

    # --- the head -------------------------------------------------------------------

    def _head(self, data: bytes) -> bytes:
        """Parse the head once it is whole (skipping 1xx interim answers); the body bytes
        after it are returned."""
        buf = self._buf + data
        bound = min(self.limit, MAX_HEAD)
        while True:
            start, end = _head_end(buf, max(0, self._scanned - 3))
            # The heads so far (interim ones included): all received but what follows.
            if self.received - len(buf) + (end if end else len(buf)) > bound:
                raise BadAnswer(f"the answer's head is longer than {bound} bytes")
            if not end:
                self._buf, self._scanned = buf, len(buf)
                return b""
            head, buf = buf[:start], buf[end:]
            self._scanned = 0
            if self._parse(head):
                self._buf = b""
                return buf

    def _parse(self, head: bytes) -> bool:
        """The status and headers of ``head``; False for an interim (1xx) answer."""
        lines = head.split(b"\r\n")
        if head.count(b"\n") != len(lines) - 1:  # some line ends with a bare LF
            lines = head.replace(b"\r\n", b"\n").split(b"\n")
        if head.count(b"\r") != head.count(b"\r\n"):
            raise BadAnswer("a bare CR in the answer's head")
        status = _STATUS.fullmatch(lines[0])
        if status is None:
            raise BadAnswer(f"malformed status line {lines[0][:80]!r}")
        code = int(status.group(2))
        if len(lines) > MAX_HEADERS + 1:
            raise BadAnswer(f"more than {MAX_HEADERS} header lines")
        fields = _fields(lines)
        if code < 200:
            if code == 101:  # the relay never asks to switch protocols
                raise BadAnswer("unexpected 101 Switching Protocols")
            return False  # 100 Continue, 103 Early Hints: the answer follows
        self.status = code
        receipt = fields.get(b"dmr-receipt")
        self.receipt = receipt.decode("latin-1") if receipt is not None else None
        self._frame(code, status.group(1) == b"1", fields)
        return True

    def _frame(self, code: int, http11: bool, fields: dict[bytes, bytes]) -> None:
        """How the body ends, and whether the connection may be kept after it."""
        tokens = {t.strip() for t in fields.get(b"connection", b"").lower().split(b",")}
        if http11:
            self.keep_alive = b"close" not in tokens
        else:  # HTTP/1.0 closes unless the peer says it keeps the connection
            self.keep_alive = b"keep-alive" in tokens or b"keep-alive" in fields
        coding = fields.get(b"transfer-encoding")
        length = fields.get(b"content-length")
        if code in (204, 304):
            self._mode, self.done = _DONE, True  # never a body
        elif coding is not None:
            chunked = coding.lower().rsplit(b",", 1)[-1].strip() == b"chunked"
            self._mode = _CHUNK_LINE if chunked and http11 else _TO_CLOSE
            if length is not None:  # both: a smuggling shape; read it, then let it go
                self.keep_alive = False
        elif length is not None:
            self._left = _length(length)
            self._mode, self.done = _LENGTH, self._left == 0
        else:
            self._mode = _TO_CLOSE
        if self._mode == _TO_CLOSE:
            self.keep_alive = False

    # --- the body -------------------------------------------------------------------

    def _body(self, data: bytes) -> None:
        if self.done:  # bytes after a complete answer: the peer talks out of turn
            self.keep_alive = False
        elif self._mode == _LENGTH:
            if len(data) >= self._left:
                extra, self._left = len(data) - self._left, 0
                self.done = True
                self.keep_alive = self.keep_alive and not extra
            else:
                self._left -= len(data)
        elif self._mode == _TO_CLOSE:
            pass  # counted in received; it ends at the peer's close
        else:
            self._chunked(self._buf + data if self._buf else data)

    def _chunked(self, data: bytes) -> None:
        """Step through chunk sizes, chunk data and trailers; an unfinished line is kept."""
        pos, end = 0, len(data)
        while pos < end and not self.done:
            if self._mode == _CHUNK_DATA:
                take = min(self._left, end - pos)
                pos, self._left = pos + take, self._left - take
                if not self._left:
                    self._mode = _CHUNK_END
                continue
            eol = data.find(b"\n", pos)
            if eol < 0:
                if end - pos > 4096:
                    raise BadAnswer("a chunk size or trailer line longer than 4096 bytes")
                break
            line, pos = data[pos:eol].removesuffix(b"\r"), eol + 1
            self._chunk_line(line)
        self._buf = data[pos:] if not self.done else b""
        if self.done and pos < end:
            self.keep_alive = False  # more than the answer

    def _chunk_line(self, line: bytes) -> None:
        if self._mode == _CHUNK_END:
            if line:
                raise BadAnswer("a chunk longer than its size")
            self._mode = _CHUNK_LINE
        elif self._mode == _CHUNK_LINE:
            size = _CHUNK_SIZE.fullmatch(line)
            if size is None:
                raise BadAnswer(f"malformed chunk size {line[:40]!r}")
            self._left = int(size.group(1), 16)
            self._mode = _CHUNK_DATA if self._left else _TRAILER
        elif not line:  # the empty line after the trailers
            self.done, self._mode = True, _DONE


def _head_end(buf: bytes, start: int) -> tuple[int, int]:
    """Where the head's blank line starts and ends ((0, 0): not yet); a bare LF ends a
    line too, as http.client took it."""
    crlf = buf.find(b"\r\n\r\n", start)
    if crlf >= 0 and buf.find(b"\n\n", start, crlf) < 0 and buf.find(b"\n\r\n", start, crlf) < 0:
        return crlf, crlf + 4
    lf = [at for at in (buf.find(b"\n\n", start), buf.find(b"\n\r\n", start)) if at >= 0]
    if not lf:
        return 0, 0
    at = min(lf)
    return at, at + (2 if buf[at + 1] == 10 else 3)


def _fields(lines: list[bytes]) -> dict[bytes, bytes]:
    """The wanted headers of a head's lines, by lower-case name (repeats joined by ", ",
    as http.client's getheader joined them); every line's shape is checked."""
    fields: dict[bytes, bytes] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if not colon or not _TOKEN.fullmatch(name):
            raise BadAnswer(f"malformed header line {line[:80]!r}")
        key = name.lower()
        if key in _WANTED:
            value = value.strip(b" \t")
            fields[key] = fields[key] + b", " + value if key in fields else value
    return fields


def _length(value: bytes) -> int:
    lengths = {v.strip() for v in value.split(b",")}
    if len(lengths) != 1:
        raise BadAnswer(f"conflicting Content-Length {value[:40]!r}")
    (length,) = lengths
    if not length.isdigit() or len(length) > 18:
        raise BadAnswer(f"malformed Content-Length {value[:40]!r}")
    return int(length)
