"""Kept-alive HTTPS connections to recipients: TLS sockets of the standard library, and
the answer read by ``relay/http1.py``.

The relay's hot path posts one delivery body per recipient. ``http.client`` parsed each
answer's headers through the ``email`` package (4.4 % of a relay worker's time, issue
28), so the pool speaks the little HTTP/1.1 it needs itself and keeps what ``http.client``
and urllib3 gave: a pool of idle connections per host (LIFO, at most ``per_host`` kept,
at most ``hosts`` hosts, the least recently used dropped), a check that an idle
connection was not closed by its peer before it is reused, connect and read timeouts,
certificate and host name verification by the TLS context (``server_hostname``). One
deadline (connect + read timeout) bounds a whole request, however slowly a recipient
trickles its answer. A request is written with one send. Nothing is retried: the sender
retries (DESIGN.md). ``relay/fanout.py`` drives several requests at once on the same pool.
"""

from __future__ import annotations

import functools
import re
import select
import socket
import ssl
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping
from typing import NamedTuple
from urllib.parse import urlsplit

from dmr_appliance import ids
from dmr_appliance.relay import http1

Target = tuple[str, int, str]  # host, port, request target
RECEIVE = 65536  # bytes asked of one receive
# http.client's rule for a request target or host: no control character, no space.
_UNSAFE = re.compile(r"[\x00-\x20\x7f]")


class Reply(NamedTuple):
    status: int
    receipt: str | None  # the recipient's DMR-Receipt header, unread


class Wire(NamedTuple):
    """What a request to one endpoint puts on the wire, worked out once per endpoint."""

    host: str
    port: int
    target: bytes
    host_header: bytes


@functools.lru_cache(maxsize=4096)
def target(url: str) -> Target:
    """Host, port and request target of an endpoint home accepted (``ids.ENDPOINT_RULE``)."""
    split = urlsplit(url)
    if split.scheme != "https" or not split.hostname:
        raise ValueError(f"not an https:// endpoint: {url[:100]!r}")
    path = ids.request_target(url)
    if _UNSAFE.search(path) or _UNSAFE.search(split.hostname) or not path.isascii():
        raise ValueError(f"an endpoint with a control character or space: {url[:100]!r}")
    return split.hostname, split.port or 443, path


@functools.lru_cache(maxsize=4096)
def wire(url: str) -> Wire:
    host, port, path = target(url)
    return Wire(host, port, path.encode("ascii"), http1.host_header(host, port))


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
        self._idle: OrderedDict[tuple[str, int], list[ssl.SSLSocket]] = OrderedDict()
        self._lock = threading.Lock()

    def post(
        self, url: str, body: bytes, headers: Mapping[str, str] | bytes, *, answer_limit: int
    ) -> Reply:
        """The recipient's HTTP status and receipt; its answer is read up to ``answer_limit``
        bytes (``headers`` as a mapping, or as ``http1.header_block`` encoded them).

        Raises ``http.client.HTTPException`` (``http1.BadAnswer``), ``OSError``
        (``ssl.SSLError`` and timeouts among them) or ``ValueError`` when there is no
        answer; the connection is then closed, not kept.
        """
        to = wire(url)
        block = headers if isinstance(headers, bytes) else http1.header_block(headers)
        deadline = time.monotonic() + self.connect_timeout + self.read_timeout
        sock = self.take(to.host, to.port) or self._connect(to.host, to.port)
        answer = http1.Answer(answer_limit)
        try:
            sock.settimeout(min(self.read_timeout, _left(deadline)))
            sock.sendall(http1.request(to.target, to.host_header, block, body))
            # Each receive waits at most the read timeout, and never past the deadline
            # (a socket timeout alone restarts at every byte).
            while True:
                data = sock.recv(RECEIVE)
                if answer.feed(data) if data else answer.eof():
                    break
                sock.settimeout(min(self.read_timeout, _left(deadline)))
        except BaseException:
            sock.close()
            raise
        self.finish(to.host, to.port, sock, answer)
        return Reply(answer.status, answer.receipt)  # type: ignore[arg-type]

    def idle(self, url: str) -> int:
        """How many idle connections are kept for ``url``'s host."""
        host, port, _ = target(url)
        with self._lock:
            return len(self._idle.get((host, port), ()))

    def clear(self) -> None:
        with self._lock:
            socks = [s for idle in self._idle.values() for s in idle]
            self._idle.clear()
        for sock in socks:
            sock.close()

    # --- shared with relay/fanout.py --------------------------------------------------

    def take(self, host: str, port: int) -> ssl.SSLSocket | None:
        """The most recently used idle connection to ``host:port`` still open, or None."""
        while True:
            with self._lock:
                idle = self._idle.get((host, port))
                sock = idle.pop() if idle else None
            if sock is None:
                return None
            if not _dropped(sock):
                return sock
            sock.close()

    def finish(self, host: str, port: int, sock: ssl.SSLSocket, answer: http1.Answer) -> None:
        """Keep ``sock`` only when its answer was read to its end and the peer keeps the
        connection open (and sent nothing more)."""
        if answer.keep_alive and not sock.pending():
            self._give_back(host, port, sock)
        else:
            sock.close()

    def count_opened(self) -> None:
        with self._lock:
            self.opened += 1

    # --- inside ---------------------------------------------------------------------

    def _connect(self, host: str, port: int) -> ssl.SSLSocket:
        """TCP and the TLS handshake, each step within the connect timeout (as
        http.client's)."""
        raw = socket.create_connection((host, port), timeout=self.connect_timeout)
        try:
            raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock = self.context.wrap_socket(raw, server_hostname=host)
        except BaseException:
            raw.close()
            raise
        self.count_opened()
        return sock

    def _give_back(self, host: str, port: int, sock: ssl.SSLSocket) -> None:
        closing: list[ssl.SSLSocket] = []
        with self._lock:
            idle = self._idle.setdefault((host, port), [])
            self._idle.move_to_end((host, port))
            (idle if len(idle) < self.per_host else closing).append(sock)
            while len(self._idle) > self.hosts:
                closing += self._idle.popitem(last=False)[1]
        for extra in closing:
            extra.close()


def _left(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("the recipient did not answer within the delivery timeouts")
    return left


def _dropped(sock: ssl.SSLSocket) -> bool:
    """An idle connection with something to read has been closed by its peer (or talks
    out of turn): either way it cannot carry a request."""
    if sock.fileno() < 0 or sock.pending():
        return True
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    return bool(poller.poll(0))
