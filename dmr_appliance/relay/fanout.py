"""Several deliveries at once on the calling thread: every request written, then every
answer read as it comes, on non-blocking sockets watched by one ``poll``.

A thread per recipient (the former fan-out) paid a thread hop, a wake-up and the GIL's
hand-over per recipient: in relay_wrk.py ten recipients took 3.9x one recipient's time
(issue 28), and ``benchmarks/delivery.py`` compares the two.
Here each request (``_Exchange``) is a small state machine, stepped whenever its socket
is ready: connect (each of the host's addresses in turn), TLS handshake, write, read.
New connections' handshakes thus overlap instead of running one after another. Every
rule of ``ConnectionPool.post`` holds per request: idle connections checked before reuse,
the connect timeout for TCP and TLS, each wait for the answer at most the read timeout and
the whole request within connect + read timeout, the answer read by ``http1.Answer``, the
connection kept only as ``ConnectionPool.finish`` says. One request's failure is its own.
Host names are resolved first, one lookup per host, on the calling thread.
"""

from __future__ import annotations

import errno
import math
import os
import select
import socket
import ssl
import time
from collections.abc import Callable, Sequence
from typing import NamedTuple

from dmr_appliance.relay import http1
from dmr_appliance.relay.connections import RECEIVE, ConnectionPool, Reply, Wire, wire

_IN, _OUT = select.POLLIN, select.POLLOUT
_PENDING = (errno.EINPROGRESS, errno.EWOULDBLOCK, errno.EAGAIN)
Addresses = list[tuple[int, int, int, str, tuple]]


class Result(NamedTuple):
    reply: Reply | None
    error: BaseException | None  # why there is no reply
    seconds: float  # from the start of the fan-out to this request's end


def post_all(
    pool: ConnectionPool, posts: Sequence[tuple[str, bytes]], headers: bytes, *, answer_limit: int
) -> list[Result]:
    """Each ``(url, body)`` POSTed with ``headers`` (``http1.header_block``); the results
    in the same order, each a reply or the error that stood for it."""
    lookups: dict[tuple[str, int], Addresses] = {}
    exchanges = [_Exchange(pool, url, body, headers, answer_limit, lookups) for url, body in posts]
    loop = _Loop()
    try:
        for exchange in exchanges:
            loop.step(exchange, exchange.start)
        loop.run()
    finally:
        for exchange in exchanges:
            if exchange.result is None:
                exchange.close()
    return [e.result for e in exchanges]  # type: ignore[misc]


class _Loop:
    """One ``poll`` over the fan-out's sockets, and the time of its next deadline."""

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.poller = select.poll()
        self.waiting: dict[int, _Exchange] = {}
        self.check = math.inf  # no deadline is before this (checked again then)

    def run(self) -> None:
        waiting = self.waiting
        while waiting:
            wait = max(0.0, self.check - time.monotonic())
            for fd, _ in self.poller.poll(math.ceil(wait * 1000)):
                if (exchange := waiting.get(fd)) is not None:
                    self.step(exchange, exchange.step)
            now = time.monotonic()
            if now >= self.check:  # a full look only when a deadline may have passed
                for exchange in [e for e in waiting.values() if e.until <= now]:
                    self.step(exchange, exchange.expire)
                self.check = min((e.until for e in waiting.values()), default=math.inf)

    def step(self, exchange: _Exchange, step: Callable[[], int]) -> None:
        """Run one step of ``exchange``; watch its socket for what it waits for next, or
        record its result when it has ended."""
        before, was = exchange.fd, exchange.events
        try:
            events = step()
        except Exception as exc:  # this request's end, never the others'
            events, exchange.error = 0, exc
        after = exchange.fileno() if events else -1
        if before >= 0 and before != after:
            self.poller.unregister(before)
            del self.waiting[before]
        exchange.fd, exchange.events = after, events
        if not events:
            exchange.end(time.perf_counter() - self.started)
            return
        if after != before:
            self.poller.register(after, events)
            self.waiting[after] = exchange
        elif events != was:
            self.poller.modify(after, events)
        self.check = min(self.check, exchange.until)


class _Exchange:
    """One request of a fan-out; each step returns the poll events it waits for, or 0
    once the request has ended."""

    def __init__(
        self,
        pool: ConnectionPool,
        url: str,
        body: bytes,
        headers: bytes,
        answer_limit: int,
        lookups: dict[tuple[str, int], Addresses],
    ) -> None:
        self.pool = pool
        self.url, self.body, self.headers = url, body, headers
        self.answer = http1.Answer(answer_limit)
        self.lookups = lookups
        now = time.monotonic()
        self.deadline = now + pool.connect_timeout + pool.read_timeout
        self.until = now + pool.connect_timeout  # the current phase's end
        self.to: Wire | None = None
        self.raw: socket.socket | None = None  # while connecting
        self.sock: ssl.SSLSocket | None = None
        self.addresses: Addresses = []
        self.request = memoryview(b"")
        self.step: Callable[[], int] = self.start
        self.fd = -1  # the descriptor registered for it
        self.events = 0  # and the events it waits for
        self.error: BaseException | None = None
        self.result: Result | None = None

    def fileno(self) -> int:
        sock = self.sock if self.sock is not None else self.raw
        return sock.fileno() if sock is not None else -1

    def start(self) -> int:
        to = self.to = wire(self.url)
        self.request = memoryview(http1.request(to.target, to.host_header, self.headers, self.body))
        sock = self.pool.take(to.host, to.port)
        if sock is not None:
            sock.setblocking(False)
            self.sock = sock
            return self._sending()
        key = (to.host, to.port)
        if key not in self.lookups:
            self.lookups[key] = socket.getaddrinfo(to.host, to.port, 0, socket.SOCK_STREAM)
        self.addresses = list(self.lookups[key])
        return self._connect()

    def _connect(self, failure: OSError | None = None) -> int:
        """Connect to the next address (as socket.create_connection tries them in turn)."""
        if not self.addresses:
            raise failure or OSError("no address to connect to")
        family, kind, proto, _, address = self.addresses.pop(0)
        try:
            raw = self.raw = socket.socket(family, kind, proto)
            raw.setblocking(False)
            code = raw.connect_ex(address)
        except OSError as exc:  # e.g. no IPv6 here: the next address
            self.close()
            self.raw = None
            return self._connect(exc)
        if code in _PENDING:
            self.step = self._connected
            return _OUT
        return self._connected(code)

    def _connected(self, code: int | None = None) -> int:
        assert self.raw is not None and self.to is not None
        if code is None:
            code = self.raw.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if code not in (0, errno.EISCONN):
            self.raw.close()
            self.raw = None
            return self._connect(OSError(code, os.strerror(code)))
        self.raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = self.pool.context.wrap_socket(
            self.raw, server_hostname=self.to.host, do_handshake_on_connect=False
        )
        self.raw = None
        self.step = self._handshake
        return self._handshake()

    def _handshake(self) -> int:
        assert self.sock is not None
        try:
            self.sock.do_handshake()
        except ssl.SSLWantReadError:
            return _IN
        except ssl.SSLWantWriteError:
            return _OUT
        self.pool.count_opened()
        return self._sending()

    def _sending(self) -> int:
        self.until = min(self.deadline, time.monotonic() + self.pool.read_timeout)
        self.step = self._write
        return self._write()

    def _write(self) -> int:
        assert self.sock is not None
        while self.request:
            try:
                sent = self.sock.send(self.request)
            except ssl.SSLWantWriteError:
                return _OUT
            except ssl.SSLWantReadError:
                return _IN
            self.request = self.request[sent:]
        self.step = self._read
        return _IN  # the answer cannot be there yet: poll says when it is

    def _read(self) -> int:
        assert self.sock is not None
        while True:
            try:
                data = self.sock.recv(RECEIVE)
            except ssl.SSLWantReadError:
                # Each wait for the answer at most the read timeout, within the deadline.
                self.until = min(self.deadline, time.monotonic() + self.pool.read_timeout)
                return _IN
            except ssl.SSLWantWriteError:
                return _OUT
            if self.answer.feed(data) if data else self.answer.eof():
                return 0

    def expire(self) -> int:
        connecting = self.step in (self._connected, self._handshake)
        raise TimeoutError(
            "connecting to the recipient timed out"
            if connecting
            else "the recipient did not answer within the delivery timeouts"
        )

    def end(self, seconds: float) -> None:
        if self.error is None and self.sock is not None and self.to is not None:
            self.pool.finish(self.to.host, self.to.port, self.sock, self.answer)
            reply = Reply(self.answer.status, self.answer.receipt)  # type: ignore[arg-type]
            self.result = Result(reply, None, seconds)
        else:
            self.close()
            self.result = Result(None, self.error, seconds)

    def close(self) -> None:
        for sock in (self.sock, self.raw):
            if sock is not None:
                sock.close()
