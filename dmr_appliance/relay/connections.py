"""Kept-alive HTTPS connections to recipients, on the standard library's ``http.client``.

The relay's hot path posts one delivery body per recipient; ``http.client`` costs about
two thirds of urllib3's CPU per POST (``benchmarks/delivery.py`` measures both), and
the few things urllib3 added here are kept: a pool of idle connections per host (LIFO, at most
``per_host`` kept, at most ``hosts`` hosts, the least recently used dropped), a check
that an idle connection was not closed by its peer before it is reused, connect and
read timeouts, and certificate and host name verification by the TLS context. One
deadline (connect + read timeout) bounds a whole request, however slowly a recipient
trickles its answer. Nothing is retried: the sender retries (DESIGN.md).
"""

from __future__ import annotations

import functools
import http.client
import io
import select
import socket
import ssl
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any, NamedTuple
from urllib.parse import urlsplit

from dmr_appliance import ids
from dmr_appliance.proof import receipt

Target = tuple[str, int, str]  # host, port, request target


class Reply(NamedTuple):
    status: int
    receipt: str | None  # the recipient's DMR-Receipt header, unread


@functools.lru_cache(maxsize=4096)
def target(url: str) -> Target:
    """Host, port and request target of an endpoint home accepted (``ids.ENDPOINT_RULE``)."""
    split = urlsplit(url)
    if split.scheme != "https" or not split.hostname:
        raise ValueError(f"not an https:// endpoint: {url[:100]!r}")
    return split.hostname, split.port or 443, ids.request_target(url)


class ConnectionPool:
    """``post(url, body, headers)`` over kept-alive connections; safe across threads."""

    def __init__(
        self,
        context: ssl.SSLContext,
        *,
        per_host: int,
        hosts: int,
        connect_timeout: float,
        read_timeout: float,
    ) -> None:
        if not context.check_hostname or context.verify_mode != ssl.CERT_REQUIRED:
            raise ValueError("recipients' certificates and names must be verified")
        self.context = context
        self.per_host = per_host
        self.hosts = hosts
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.opened = 0  # connections made so far (kept-alive ones are reused, not counted)
        self._idle: OrderedDict[tuple[str, int], list[_Connection]] = OrderedDict()
        self._lock = threading.Lock()

    def post(self, url: str, body: bytes, headers: dict[str, str], *, answer_limit: int) -> Reply:
        """The recipient's HTTP status and receipt; its answer is read up to ``answer_limit``
        bytes.

        Raises ``http.client.HTTPException`` or ``OSError`` (``ssl.SSLError`` and timeouts
        among them) when there is no answer; the connection is then closed, not kept.
        """
        host, port, path = target(url)
        deadline = time.monotonic() + self.connect_timeout + self.read_timeout
        conn = self._take(host, port) or self._connect(host, port)
        try:
            conn.deadline = deadline
            conn.sock.settimeout(min(self.read_timeout, _left(deadline)))
            conn.request("POST", path, body=body, headers=headers)
            response = conn.getresponse()
            response.read(answer_limit)
        except BaseException:
            conn.close()
            raise
        # Kept only when the answer was read to its end and the peer keeps the connection
        # open (http.client drops its socket on "Connection: close").
        if response.isclosed() and conn.sock is not None:
            self._give_back(host, port, conn)
        else:
            conn.close()
        return Reply(response.status, response.getheader(receipt.HEADER))

    def idle(self, url: str) -> int:
        """How many idle connections are kept for ``url``'s host."""
        host, port, _ = target(url)
        with self._lock:
            return len(self._idle.get((host, port), ()))

    def clear(self) -> None:
        with self._lock:
            conns = [c for idle in self._idle.values() for c in idle]
            self._idle.clear()
        for conn in conns:
            conn.close()

    def _connect(self, host: str, port: int) -> _Connection:
        conn = _Connection(host, port, timeout=self.connect_timeout, context=self.context)
        conn.read_timeout = self.read_timeout
        try:
            conn.connect()  # TCP and the TLS handshake, within the connect timeout
        except BaseException:
            conn.close()
            raise
        with self._lock:
            self.opened += 1
        return conn

    def _take(self, host: str, port: int) -> _Connection | None:
        while True:
            with self._lock:
                idle = self._idle.get((host, port))
                conn = idle.pop() if idle else None
            if conn is None:
                return None
            if not _dropped(conn):
                return conn
            conn.close()

    def _give_back(self, host: str, port: int, conn: _Connection) -> None:
        closing: list[_Connection] = []
        with self._lock:
            idle = self._idle.setdefault((host, port), [])
            self._idle.move_to_end((host, port))
            (idle if len(idle) < self.per_host else closing).append(conn)
            while len(self._idle) > self.hosts:
                closing += self._idle.popitem(last=False)[1]
        for extra in closing:
            extra.close()


class _Connection(http.client.HTTPSConnection):
    """An HTTPS connection that writes a request in one piece and reads its answer
    against the request's deadline."""

    deadline = 0.0
    read_timeout = 10.0
    _hold = False
    _held: bytes | None = None

    def request(
        self,
        method: str,
        url: str,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
        *,
        encode_chunked: bool = False,
    ) -> None:
        # http.client writes the head and then the body: two TLS records, two system
        # calls (and two reads for the recipient). The head is held for the body's write.
        self._hold = True
        try:
            super().request(method, url, body, dict(headers or {}), encode_chunked=encode_chunked)
        finally:
            self._hold, held, self._held = False, self._held, None
        if held is not None:  # no body was written (an empty one)
            super().send(held)

    def send(self, data: Any) -> None:
        if self._hold:
            self._hold, self._held = False, bytes(data)
            return
        if self._held is not None:
            data, self._held = self._held + bytes(data), None
        super().send(data)

    def response_class(
        self, sock: socket.socket, method: str | None = None
    ) -> http.client.HTTPResponse:
        return http.client.HTTPResponse(_DeadlineSocket(sock, self), method=method)


class _DeadlineSocket:
    """What ``HTTPResponse`` reads through: each receive waits at most the read timeout,
    and never past the deadline (a socket timeout alone restarts at every byte)."""

    def __init__(self, sock: socket.socket, conn: _Connection) -> None:
        self._sock = sock
        self._conn = conn

    def makefile(self, mode: str) -> io.BufferedReader:
        # The socket's own raw file: it keeps the socket open while the answer is read
        # after http.client has let go of it ("Connection: close").
        raw = self._sock.makefile("rb", buffering=0)
        return io.BufferedReader(_DeadlineReader(raw, self._sock, self._conn))


class _DeadlineReader(io.RawIOBase):
    def __init__(self, raw: io.RawIOBase, sock: socket.socket, conn: _Connection) -> None:
        self._raw = raw
        self._sock = sock
        self._conn = conn

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int | None:  # type: ignore[override]
        conn = self._conn
        self._sock.settimeout(min(conn.read_timeout, _left(conn.deadline)))
        return self._raw.readinto(buffer)

    def close(self) -> None:
        self._raw.close()
        super().close()


def _left(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("the recipient did not answer within the delivery timeouts")
    return left


def _dropped(conn: _Connection) -> bool:
    """An idle connection with something to read has been closed by its peer (or talks
    out of turn): either way it cannot carry a request."""
    if conn.sock is None:
        return True
    poller = select.poll()
    poller.register(conn.sock, select.POLLIN)
    return bool(poller.poll(0))
