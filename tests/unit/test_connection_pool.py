"""relay/connections.py against scripted TLS peers on loopback (tests/unit/tls_peers.py,
the test PKI's certificates): what the request looks like, which answers keep their
connection, the deadline against a trickling peer, malformed answers, a peer that goes
mid-answer, and the name check."""

from __future__ import annotations

import ssl
import time

import pytest

from dmr_appliance import pki as pki_mod
from dmr_appliance.relay.connections import ConnectionPool
from dmr_appliance.relay.http1 import BadAnswer
from tests.unit.tls_peers import OK, answer, make_pool, silent_peer, tls_peer

LIMIT = 1024
HEADERS = {"Content-Type": "application/json", "X-Request-Id": "r-1"}


@pytest.fixture
def pool(pki, tmp_path):
    made = make_pool(pki, tmp_path)
    yield made
    made.clear()


def post(pool: ConnectionPool, url: str, body: bytes = b'{"a":1}') -> tuple[int, str | None]:
    reply = pool.post(url + "/inbox/bob?x=1", body, HEADERS, answer_limit=LIMIT)
    return reply.status, reply.receipt


def test_the_request_is_one_record_with_http_clients_head(pki, pool):
    with tls_peer(pki, answer(OK)) as peer:
        assert post(pool, peer.url) == (200, None)
    [request] = peer.requests
    port = peer.url.rsplit(":", 1)[1]
    assert request.first_read == request.head + b"\r\n\r\n" + b'{"a":1}'  # one write
    assert request.head.split(b"\r\n") == [
        b"POST /inbox/bob?x=1 HTTP/1.1",
        f"Host: 127.0.0.1:{port}".encode(),  # as http.client sent it: a receipt names it
        b"Accept-Encoding: identity",
        b"Content-Length: 7",
        b"Content-Type: application/json",
        b"X-Request-Id: r-1",
    ]


def test_a_connection_is_kept_and_reused(pki, pool):
    with tls_peer(pki, answer(OK)) as peer:
        assert [post(pool, peer.url)[0] for _ in range(3)] == [200] * 3
        assert (peer.connections, len(peer.requests), pool.opened, pool.idle(peer.url)) == (
            1,
            3,
            1,
            1,
        )


def test_the_receipt_header_is_returned(pki, pool):
    ok = b"HTTP/1.1 200 OK\r\nDMR-Receipt: a.b.c\r\nContent-Length: 0\r\n\r\n"
    with tls_peer(pki, answer(ok)) as peer:
        assert post(pool, peer.url) == (200, "a.b.c")


KEPT = {
    "chunked": b"HTTP/1.1 202 Accepted\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
    "HTTP/1.0 keep-alive": (
        b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n"
    ),
    "204": b"HTTP/1.1 204 No Content\r\n\r\n",
    "100 Continue first": b"HTTP/1.1 100 Continue\r\n\r\n" + OK,
}


@pytest.mark.parametrize("data", KEPT.values(), ids=KEPT.keys())
def test_an_answer_read_to_its_end_keeps_the_connection(pki, pool, data):
    with tls_peer(pki, answer(data)) as peer:
        statuses = [post(pool, peer.url)[0] for _ in range(2)]
        assert (pool.opened, pool.idle(peer.url), peer.connections) == (1, 1, 1)
    assert statuses[0] == statuses[1] == int(data.rsplit(b"HTTP/1.", 1)[1][2:5])


NOT_KEPT = {
    "Connection: close": b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok",
    "HTTP/1.0": b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok",
    "longer than the limit": b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % (LIMIT + 1)
    + b"x" * (LIMIT + 1),
    "chunked, longer than the limit": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    + b"%x\r\n" % (4 * LIMIT)
    + b"x" * (4 * LIMIT)
    + b"\r\n0\r\n\r\n",
    "more than the answer": OK + b"HTTP/1.1 200 OK\r\n",
}


@pytest.mark.parametrize("data", NOT_KEPT.values(), ids=NOT_KEPT.keys())
def test_an_answer_that_ends_its_connection_still_has_its_status(pki, pool, data):
    with tls_peer(pki, answer(data)) as peer:
        assert [post(pool, peer.url)[0] for _ in range(2)] == [200, 200]
        assert (pool.opened, pool.idle(peer.url), peer.connections) == (2, 0, 2)


def test_a_body_up_to_the_close_is_read_to_the_close(pki, pool):
    with tls_peer(pki, answer(b"HTTP/1.1 200 OK\r\n\r\nto the end", close=True)) as peer:
        assert post(pool, peer.url) == (200, None)
        assert pool.idle(peer.url) == 0


def test_a_peer_that_closes_mid_body_leaves_the_status_but_not_the_connection(pki, pool):
    cut = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly some"
    with tls_peer(pki, answer(cut, close=True)) as peer:
        assert post(pool, peer.url) == (200, None)
        assert pool.idle(peer.url) == 0


@pytest.mark.parametrize(
    "data", [b"", b"HTTP/1.1 200 OK\r\nContent-"], ids=["before answering", "mid-head"]
)
def test_a_peer_that_closes_before_its_head_ends_gave_no_answer(pki, pool, data):
    with tls_peer(pki, answer(data, close=True)) as peer, pytest.raises(BadAnswer, match="closed"):
        post(pool, peer.url)
    assert pool.idle(peer.url) == 0


MALFORMED = {
    "status line": b"HTTP/1.1 OK 200\r\nContent-Length: 0\r\n\r\n",
    "header line": b"HTTP/1.1 200 OK\r\nContent-Length 0\r\n\r\n",
    "too many headers": b"HTTP/1.1 200 OK\r\n" + b"X-A: 1\r\n" * 101 + b"\r\n",
    "head past the limit": b"HTTP/1.1 200 OK\r\nX-A: " + b"a" * LIMIT + b"\r\n\r\n",
    "101": b"HTTP/1.1 101 Switching Protocols\r\n\r\n",
}


@pytest.mark.parametrize("data", MALFORMED.values(), ids=MALFORMED.keys())
def test_a_malformed_answer_raises_and_loses_its_connection(pki, pool, data):
    with tls_peer(pki, answer(data)) as peer, pytest.raises(BadAnswer):
        post(pool, peer.url)
    assert pool.idle(peer.url) == 0


def test_a_trickled_answer_ends_at_the_deadline(pki, tmp_path):
    def trickle(conn, request):
        conn.sendall(b"HTTP/1.1 200 OK\r\n")
        for _ in range(100):  # a header byte every 0.1 s: each under the read timeout
            conn.sendall(b"X")
            time.sleep(0.1)
        return True

    pool = make_pool(pki, tmp_path, connect_timeout=0.4, read_timeout=0.4)
    with tls_peer(pki, trickle) as peer:
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            post(pool, peer.url)
        assert time.monotonic() - started < 1.5
        assert pool.idle(peer.url) == 0


def test_a_peer_that_never_answers_times_out_at_the_read_timeout(pki, tmp_path):
    pool = make_pool(pki, tmp_path, connect_timeout=0.3, read_timeout=0.3)
    with silent_peer() as url:  # accepts, never handshakes
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            post(pool, url)
    assert time.monotonic() - started < 1.0


def test_an_idle_connection_the_peer_closed_is_not_reused(pki, pool):
    with tls_peer(pki, answer(OK, close=True)) as peer:  # no "Connection: close": it just goes
        assert post(pool, peer.url)[0] == 200
        assert peer.closed.wait(5)
        time.sleep(0.1)  # the close reaches our side
        assert post(pool, peer.url)[0] == 200  # on a new connection, not a failure
        assert (peer.connections, pool.opened) == (2, 2)


def test_a_certificate_for_another_name_is_refused(fresh_pki, tmp_path):
    pki_mod.issue(fresh_pki.dir, "server", "elsewhere", dns=("elsewhere.example",))
    pool = make_pool(fresh_pki, tmp_path)
    with tls_peer(fresh_pki, answer(OK), name="elsewhere") as peer:
        with pytest.raises(ssl.SSLCertVerificationError, match=r"127\.0\.0\.1"):
            post(pool, peer.url)
        assert peer.requests == [] and pool.opened == 0


def test_a_header_that_would_break_the_request_is_refused_before_connecting(pki, pool):
    with tls_peer(pki, answer(OK)) as peer, pytest.raises(ValueError):
        pool.post(peer.url, b"", {"X-Request-Id": "a\r\nX-B: 1"}, answer_limit=LIMIT)
    assert peer.connections == 0


def test_a_context_that_does_not_check_names_is_refused(pki, tmp_path):
    context = make_pool(pki, tmp_path).context
    context.check_hostname = False  # the agent's (urllib3's) kind
    with pytest.raises(ValueError, match="verified"):
        ConnectionPool(context, per_host=1, hosts=1, connect_timeout=1, read_timeout=1)
