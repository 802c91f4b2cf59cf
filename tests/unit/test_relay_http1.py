"""relay/http1.py: the answer reader fed whole, byte by byte and in odd pieces (each
way gives the same verdict), its bounds and refusals, and the request's bytes."""

from __future__ import annotations

import http.client

import pytest

from dmr_appliance.relay.http1 import MAX_HEADERS, Answer, BadAnswer, header_block, request

LIMIT = 1024


def read(data: bytes, pieces: int | None = None, *, eof: bool = False) -> Answer:
    """``data`` fed in one piece (``pieces=None``), or cut every ``pieces`` bytes."""
    answer = Answer(LIMIT)
    step = pieces or len(data) or 1
    for at in range(0, len(data), step):
        if answer.feed(data[at : at + step]):
            return answer
    if eof:
        answer.eof()
    return answer


def verdict(answer: Answer) -> tuple:
    return answer.done, answer.status, answer.keep_alive, answer.receipt


CASES = {
    "length": (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", (True, 200, True, None)),
    "receipt": (
        b"HTTP/1.1 201 Created\r\ncontent-length: 0\r\nDMR-Receipt:  a.b.c \r\n\r\n",
        (True, 201, True, "a.b.c"),
    ),
    "two receipts joined, as http.client": (
        b"HTTP/1.1 200 OK\r\nDMR-Receipt: a.b.c\r\nDmr-Receipt: d.e.f\r\nContent-Length: 0\r\n\r\n",
        (True, 200, True, "a.b.c, d.e.f"),
    ),
    "close": (
        b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok",
        (True, 200, False, None),
    ),
    "close among tokens": (
        b"HTTP/1.1 200 OK\r\nConnection: TE, Close\r\nContent-Length: 0\r\n\r\n",
        (True, 200, False, None),
    ),
    "HTTP/1.0 closes": (b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", (True, 200, False, None)),
    "HTTP/1.0 keep-alive": (
        b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n",
        (True, 200, True, None),
    ),
    "chunked": (
        b"HTTP/1.1 202 Accepted\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"2;ext=1\r\nok\r\n10\r\n0123456789abcdef\r\n0\r\nTrailer: x\r\n\r\n",
        (True, 202, True, None),
    ),
    "chunked and a length": (
        b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        (True, 200, False, None),
    ),
    "204 has no body": (b"HTTP/1.1 204 No Content\r\n\r\n", (True, 204, True, None)),
    "304 has no body": (
        b"HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n",
        (True, 304, True, None),
    ),
    "100 Continue skipped": (
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\n"
        b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
        (True, 200, True, None),
    ),
    "bare LF": (b"HTTP/1.1 200 OK\nContent-Length: 2\n\nok", (True, 200, True, None)),
    "no reason": (b"HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n", (True, 200, True, None)),
    "longer than the limit": (
        b"HTTP/1.1 200 OK\r\nContent-Length: 2000\r\n\r\n" + b"x" * 2000,
        (True, 200, False, None),
    ),
    "complete, but longer than the limit": (
        b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + b"x" * 1000,
        (True, 200, False, None),
    ),
    "chunked, longer than the limit": (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + b"100\r\n" + b"x" * 2000,
        (True, 200, False, None),
    ),
}


@pytest.mark.parametrize("pieces", [None, 1, 7], ids=["whole", "bytewise", "sevens"])
@pytest.mark.parametrize(("data", "expected"), CASES.values(), ids=CASES.keys())
def test_each_answer_reads_the_same_however_it_arrives(data, expected, pieces):
    assert verdict(read(data, pieces)) == expected


@pytest.mark.parametrize(
    ("body", "kept"),
    [(b"ok", True), (b"okHTTP/1.1 200 OK\r\n", False), (b"okk", False)],
    ids=["exact", "another answer", "a byte more"],
)
def test_bytes_after_the_answer_cost_it_its_connection(body, kept):
    answer = read(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n" + body)
    assert (answer.done, answer.keep_alive) == (True, kept)


@pytest.mark.parametrize("pieces", [None, 1])
def test_a_body_up_to_the_close_ends_there_and_is_not_kept(pieces):
    answer = read(b"HTTP/1.1 200 OK\r\n\r\nsome body", pieces)
    assert not answer.done
    assert answer.eof() and verdict(answer) == (True, 200, False, None)


def test_a_body_cut_short_keeps_its_status_but_not_its_connection():
    answer = read(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", eof=True)
    assert verdict(answer) == (True, 200, False, None)


@pytest.mark.parametrize(
    "data",
    [b"", b"HTTP/1.1 200 OK\r\nContent-Le"],
    ids=["before answering", "within the head"],
)
def test_a_close_before_the_head_ends_is_no_answer(data):
    with pytest.raises(BadAnswer, match="closed"):
        read(data, eof=True)


BAD = {
    "HTTP/2": b"HTTP/2 200 OK\r\n\r\n",
    "HTTP/0.9": b"HTTP/0.9 200 OK\r\n\r\n",
    "not HTTP": b"ICY 200 OK\r\n\r\n",
    "two digit status": b"HTTP/1.1 20 OK\r\n\r\n",
    "status 099": b"HTTP/1.1 099 Hm\r\n\r\n",
    "no colon": b"HTTP/1.1 200 OK\r\nContent-Length 0\r\n\r\n",
    "space before colon": b"HTTP/1.1 200 OK\r\nContent-Length : 0\r\n\r\n",
    "folded line": b"HTTP/1.1 200 OK\r\nX-A: 1\r\n  more\r\nContent-Length: 0\r\n\r\n",
    "bare CR": b"HTTP/1.1 200 OK\r\nX-A: 1\rDMR-Receipt: a.b.c\r\nContent-Length: 0\r\n\r\n",
    "bad length": b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
    "two lengths": b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
    "bad chunk size": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    "chunk longer than its size": (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nabc\r\n0\r\n\r\n"
    ),
    "101 unasked": b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n\r\n",
    "too many headers": (
        b"HTTP/1.1 200 OK\r\n" + b"X-A: 1\r\n" * (MAX_HEADERS + 1) + b"Content-Length: 0\r\n\r\n"
    ),
}


@pytest.mark.parametrize("pieces", [None, 1])
@pytest.mark.parametrize("data", BAD.values(), ids=BAD.keys())
def test_a_malformed_answer_is_refused(data, pieces):
    answer = Answer(64 * 1024)
    with pytest.raises(BadAnswer):
        for at in range(0, len(data), pieces or len(data)):
            answer.feed(data[at : at + (pieces or len(data))])


def test_a_head_longer_than_the_limit_is_refused_without_waiting_for_its_end():
    with pytest.raises(BadAnswer, match="head is longer"):
        read(b"HTTP/1.1 200 OK\r\nX-Long: " + b"x" * LIMIT, 100)


def test_bad_answer_is_what_the_deliverer_counts_as_no_answer():
    assert issubclass(BadAnswer, http.client.HTTPException)


def test_the_request_is_head_and_body_in_one_piece():
    block = header_block({"Content-Type": "application/json", "X-Request-Id": "r-1"})
    assert request(b"/in?x=1", b"example.org:8443", block, b"{}") == (
        b"POST /in?x=1 HTTP/1.1\r\nHost: example.org:8443\r\nAccept-Encoding: identity\r\n"
        b"Content-Length: 2\r\nContent-Type: application/json\r\nX-Request-Id: r-1\r\n\r\n{}"
    )


@pytest.mark.parametrize(
    "headers",
    [{"X-Request-Id": "a\r\nX-Evil: 1"}, {"X-A": "a\nb"}, {"X-A": "a\x00"}, {"Bad Name": "1"}],
)
def test_a_header_that_would_break_the_head_is_refused(headers):
    with pytest.raises(ValueError):
        header_block(headers)
