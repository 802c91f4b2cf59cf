"""The relay's kept-alive HTTPS connections (relay/connections.py) against a scripted TLS
server: reuse, a peer that closed an idle connection, answers that end a connection,
a trickling answer bounded by one deadline, the pool's limits."""

from __future__ import annotations

import dataclasses
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest

from dmr_appliance.relay.connections import ConnectionPool, target
from dmr_appliance.relay.outbound import tls_context
from tests.support.relay_kit import relay_config

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
LIMIT = 1024


@dataclasses.dataclass
class Scripted:
    """A TLS server (the PKI's recipient certificate, relay certificates required) that
    answers each request with ``answer(conn, n)``: what to send, and whether to close."""

    answer: Callable[[ssl.SSLSocket, int], bool]
    connections: int = 0
    requests: int = 0
    closed: threading.Event = dataclasses.field(default_factory=threading.Event)


@contextmanager
def scripted(
    pki, answer: Callable[[ssl.SSLSocket, int], bool], first_reads: list[bytes] | None = None
) -> Iterator[tuple[str, Scripted]]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(pki.ca))
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_cert_chain(pki.cert("server", "recipient"), pki.key("server", "recipient"))
    listener = socket.create_server(("127.0.0.1", 0))
    state = Scripted(answer)

    def serve(raw: socket.socket) -> None:
        with context.wrap_socket(raw, server_side=True) as conn:
            while _read_request(conn, first_reads):
                state.requests += 1
                if answer(conn, state.requests):
                    break
        state.closed.set()

    def accept() -> None:
        while True:
            try:
                raw, _ = listener.accept()
            except OSError:
                return
            state.connections += 1
            threading.Thread(target=serve, args=(raw,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield f"https://127.0.0.1:{listener.getsockname()[1]}/inbox?x=1", state
    finally:
        listener.close()


def _read_request(conn: ssl.SSLSocket, first_reads: list[bytes] | None = None) -> bool:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return False
        if not data and first_reads is not None:
            first_reads.append(chunk)
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        body += conn.recv(65536)
    return True


def keep_open(conn: ssl.SSLSocket, n: int) -> bool:
    conn.sendall(OK)
    return False


@pytest.fixture
def make_pool(pki, tmp_path):
    pools: list[ConnectionPool] = []

    def make(**overrides) -> ConnectionPool:
        settings = {"per_host": 8, "hosts": 16, "connect_timeout": 2.0, "read_timeout": 5.0}
        context = tls_context(relay_config(pki, tmp_path).tls, check_hostname=True)
        pools.append(ConnectionPool(context, **{**settings, **overrides}))
        return pools[-1]

    yield make
    for pool in pools:
        pool.clear()


def post(pool: ConnectionPool, url: str) -> int:
    reply = pool.post(url, b'{"a":1}', {"Content-Type": "application/json"}, answer_limit=LIMIT)
    return reply.status


def test_a_connection_is_kept_and_reused(pki, make_pool):
    pool = make_pool()
    with scripted(pki, keep_open) as (url, server):
        assert [post(pool, url) for _ in range(3)] == [200] * 3
        assert (server.connections, server.requests, pool.opened, pool.idle(url)) == (1, 3, 1, 1)


def test_a_request_is_written_in_one_piece(pki, make_pool):
    # A TLS read returns one record: the whole request in the first means one write.
    firsts: list[bytes] = []
    pool = make_pool()
    with scripted(pki, keep_open, first_reads=firsts) as (url, _):
        assert [post(pool, url) for _ in range(2)] == [200, 200]
    assert len(firsts) == 2 and all(f.endswith(b'\r\n\r\n{"a":1}') for f in firsts), firsts


def test_a_request_with_an_empty_body_is_sent_too(pki, make_pool):
    pool = make_pool()
    with scripted(pki, keep_open) as (url, server):
        assert pool.post(url, b"", {}, answer_limit=LIMIT).status == 200
        assert server.requests == 1


def test_an_idle_connection_the_peer_closed_is_not_reused(pki, make_pool):
    def answer_then_close(conn, n):  # no "Connection: close": the peer just goes
        conn.sendall(OK)
        return True

    pool = make_pool()
    with scripted(pki, answer_then_close) as (url, server):
        assert post(pool, url) == 200
        assert server.closed.wait(5)
        time.sleep(0.1)  # the FIN reaches our side
        assert post(pool, url) == 200  # on a new connection, not a failure
        assert (server.connections, pool.opened) == (2, 2)


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok",
        b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % (LIMIT + 1) + b"x" * (LIMIT + 1),
    ],
    ids=["connection-close", "longer-than-the-limit"],
)
def test_an_answer_that_ends_the_connection_is_read_and_not_kept(pki, make_pool, answer):
    def reply(conn, n):
        conn.sendall(answer)
        return False

    pool = make_pool()
    with scripted(pki, reply) as (url, _):
        assert post(pool, url) == 200
        assert pool.idle(url) == 0


def test_a_chunked_answer_read_to_its_end_keeps_the_connection(pki, make_pool):
    def chunked(conn, n):
        conn.sendall(
            b"HTTP/1.1 202 Accepted\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"
        )
        return False

    pool = make_pool()
    with scripted(pki, chunked) as (url, _):
        assert [post(pool, url) for _ in range(2)] == [202, 202]
        assert (pool.opened, pool.idle(url)) == (1, 1)


def test_a_trickled_answer_ends_at_the_deadline(pki, make_pool):
    def trickle(conn, n):
        conn.sendall(b"HTTP/1.1 200 OK\r\n")
        try:
            for _ in range(100):  # a header byte every 0.1 s: each under the read timeout
                conn.sendall(b"X")
                time.sleep(0.1)
        except OSError:
            pass
        return True

    pool = make_pool(connect_timeout=0.4, read_timeout=0.4)
    with scripted(pki, trickle) as (url, _):
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            post(pool, url)
        assert time.monotonic() - started < 2.0
        assert pool.idle(url) == 0


def test_at_most_per_host_connections_are_kept(pki, make_pool):
    def slow(conn, n):
        time.sleep(0.3)
        conn.sendall(OK)
        return False

    pool = make_pool(per_host=2)
    with scripted(pki, slow) as (url, server):
        threads = [threading.Thread(target=post, args=(pool, url)) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
        assert (server.requests, pool.opened, pool.idle(url)) == (4, 4, 2)


def test_the_least_recently_used_host_is_dropped(pki, make_pool):
    pool = make_pool(hosts=1)
    with scripted(pki, keep_open) as (first, _), scripted(pki, keep_open) as (second, _):
        post(pool, first)
        post(pool, second)
        assert (pool.idle(first), pool.idle(second)) == (0, 1)


def test_a_context_that_does_not_check_names_is_refused(pki, tmp_path):
    context = tls_context(relay_config(pki, tmp_path).tls)  # the agent's (urllib3's) kind
    with pytest.raises(ValueError, match="verified"):
        ConnectionPool(context, per_host=1, hosts=1, connect_timeout=1, read_timeout=1)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://example.org", ("example.org", 443, "/")),
        ("https://example.org?q=1", ("example.org", 443, "/?q=1")),
        ("https://10.0.0.1:8443/in/box?a=b&c", ("10.0.0.1", 8443, "/in/box?a=b&c")),
        ("https://[2001:db8::1]:9/x", ("2001:db8::1", 9, "/x")),
        ("https://example.org/a?", ("example.org", 443, "/a?")),
    ],
)
def test_target_is_host_port_and_the_request_line(url, expected):
    assert target(url) == expected


def test_a_non_https_endpoint_is_refused():
    with pytest.raises(ValueError):
        target("http://example.org/")
