"""The router through a real nginx with real certificates (the session ``pki``).

The upstreams here are ``FakeUpstream``s: real TLS servers that require a client
certificate, answering what each test sets (200, the relay's 503, a slow answer), so the
failover rules of the template can be shown exactly. The relay's own checks behind the
router are in test_router_relay.py.
"""

from __future__ import annotations

import dataclasses
import http.client
import json
import os
import socket
import ssl
import time
import urllib.parse
from pathlib import Path

import pytest
import requests

from dmr_appliance import config, render, serving
from dmr_appliance import pki as pki_mod
from dmr_appliance.local.processes import NginxProcess
from tests.support.fake_upstream import FakeUpstream
from tests.support.problems import assert_nginx_problem
from tests.support.processes import free_port

pytestmark = [pytest.mark.needs_nginx, pytest.mark.once]


def mtls_session(ca: Path, cert: Path | None, key: Path | None) -> requests.Session:
    """Trust only ``ca``; present ``cert`` if given. trust_env off: REQUESTS_CA_BUNDLE in
    the environment would otherwise replace ``verify`` on every request."""
    session = requests.Session()
    session.trust_env = False
    session.verify = str(ca)
    if cert is not None:
        session.cert = (str(cert), str(key))
    return session


class Router:
    def __init__(self, pki, tmp_path: Path, cfg: config.RouterConfig) -> None:
        self.pki = pki
        self.cfg = cfg
        self.conf = tmp_path / "nginx.conf"
        render.write(cfg, self.conf)
        self.log = (tmp_path / "nginx.out").open("ab")
        self.nginx = NginxProcess(
            self.conf, prefix=cfg.prefix, pid_file=cfg.pid_file, output=self.log
        )
        self.url = f"https://127.0.0.1:{cfg.listen}"

    def session(self, kind: str = "participant", name: str = "alice") -> requests.Session:
        return mtls_session(self.pki.ca, self.pki.cert(kind, name), self.pki.key(kind, name))

    def access_log(self) -> list[dict]:
        path = Path(self.cfg.access_log)
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []

    def entry(self, request_id: str) -> dict:
        """The access-log line of ``request_id`` (nginx logs just after it answers)."""
        deadline = time.monotonic() + 5
        while True:
            found = [e for e in self.access_log() if e["request_id"] == request_id]
            if found or time.monotonic() > deadline:
                (line,) = found
                return line
            time.sleep(0.05)


@pytest.fixture
def upstream(pki):
    made: list[FakeUpstream] = []

    def make(name: str, kind: str = "relay", cert_name: str = "relay-1") -> FakeUpstream:
        up = FakeUpstream(name, pki.cert(kind, cert_name), pki.key(kind, cert_name), pki.ca)
        made.append(up.start())
        return up

    yield make
    for up in made:
        up.stop()


@pytest.fixture
def router(pki, tmp_path):
    started: list[Router] = []

    def start(relays: list[str], home: str | list[str] | None = None, pki_=None, **changes):
        p = pki_ or pki
        prefix = tmp_path / f"router-{len(started)}"
        tls = config.RouterTls(
            ca=p.ca, crl=p.crl, cert=p.cert("server", "router"), key=p.key("server", "router")
        )
        cfg = config.RouterConfig(
            listen=free_port(),
            relays=relays,
            home=[home] if isinstance(home, str) else home or [f"127.0.0.1:{free_port()}"],
            prefix=prefix,
            pid_file=prefix / "nginx.pid",
            access_log=str(prefix / "access.log"),
            error_log=str(prefix / "error.log"),
            worker_processes="1",
            tls=tls,
        )
        cfg = dataclasses.replace(cfg, **changes)
        prefix.mkdir(parents=True, exist_ok=True)
        r = Router(p, prefix, cfg)
        r.nginx.start()
        started.append(r)
        return r

    yield start
    for r in started:
        r.nginx.stop()
        r.log.close()


def dead_address() -> str:
    return f"127.0.0.1:{free_port()}"  # nothing listens: connection refused


def post(session: requests.Session, url: str, body: bytes = b"{}") -> requests.Response:
    return session.post(
        url + "/v1/messages", data=body, headers={"Content-Type": "application/json"}, timeout=30
    )


# --- client certificates ----------------------------------------------------------------------


def test_no_client_certificate_is_refused(router, upstream, pki):
    relay = upstream("relay-1")
    r = router([relay.address])
    plain = mtls_session(pki.ca, None, None)
    # nginx completes the handshake, then refuses the request (496 sent as 400) unproxied.
    assert_nginx_problem(post(plain, r.url), 400, "client-certificate-required")
    assert relay.seen == []


def test_certificate_of_another_ca_is_refused(router, upstream, tmp_path, pki):
    other = tmp_path / "other-ca"
    pki_mod.init_ca(other)
    issued = pki_mod.issue(other, "participant", "alice")
    relay = upstream("relay-1")
    r = router([relay.address])
    stranger = mtls_session(pki.ca, issued.cert, issued.key)
    assert_nginx_problem(post(stranger, r.url), 400, "client-certificate-invalid")
    assert relay.seen == []


def test_revoked_certificate_is_refused(router, upstream, fresh_pki):
    pki_mod.revoke(fresh_pki.dir, "participant", "bob")
    relay = FakeUpstream(
        "relay-1",
        fresh_pki.cert("relay", "relay-1"),
        fresh_pki.key("relay", "relay-1"),
        fresh_pki.ca,
    ).start()
    try:
        r = router([relay.address], pki_=fresh_pki)
        assert_nginx_problem(
            post(r.session("participant", "bob"), r.url), 400, "client-certificate-invalid"
        )
        assert post(r.session("participant", "alice"), r.url).status_code == 200
        assert len(relay.seen) == 1
    finally:
        relay.stop()


def test_client_sent_certificate_header_is_overwritten(router, upstream, pki):
    relay = upstream("relay-1")
    r = router([relay.address])
    forged = urllib.parse.quote(pki.pem("participant", "bob"))
    resp = r.session("participant", "alice").post(
        r.url + "/v1/messages",
        data=b"{}",
        headers={"X-DMR-Client-Cert": forged, "X-Request-Id": "chosen-by-client"},
        timeout=10,
    )
    assert resp.status_code == 200
    (seen,) = relay.seen
    sent = urllib.parse.unquote(seen.headers["x-dmr-client-cert"])
    assert sent.strip() == pki.pem("participant", "alice").strip()
    # The request id is nginx's, sent upstream and answered exactly once.
    assert seen.headers["x-request-id"] != "chosen-by-client"
    assert resp.headers["X-Request-Id"] == seen.headers["x-request-id"]
    assert resp.raw.headers.getlist("X-Request-Id") == [seen.headers["x-request-id"]]
    entry = r.entry(resp.headers["X-Request-Id"])
    assert entry["client"] == "CN=alice,OU=participant"
    assert entry["upstream_addr"] == relay.address and entry["upstream_status"] == "200"


# --- limits ---------------------------------------------------------------------------------------


def test_rate_limit_per_certificate_answers_429(router, upstream):
    relay = upstream("relay-1")
    r = router([relay.address], rate_limit=config.RateLimit(rate="1r/m", burst=2))
    alice = r.session("participant", "alice")
    codes = [post(alice, r.url).status_code for _ in range(3)]
    assert codes == [200, 200, 200]  # the rate's one plus a burst of two
    resp = post(alice, r.url)
    assert_nginx_problem(resp, 429, "too-many-requests")
    assert resp.headers["Retry-After"] == "1"
    # Keyed per client certificate: bob is not limited by alice's traffic.
    assert post(r.session("participant", "bob"), r.url).status_code == 200
    assert len(relay.seen) == 4


def test_body_over_the_message_limit_is_413(router, upstream):
    relay = upstream("relay-1")
    r = router([relay.address], limits=config.BodyLimits(max_message_bytes=2000))
    alice = r.session()
    assert post(alice, r.url, b"x" * 2000).status_code == 200
    doc = assert_nginx_problem(post(alice, r.url, b"x" * 2001), 413, "too-large")
    assert "2000 bytes" in doc["detail"]
    assert len(relay.seen) == 1


def test_wrong_method_is_405_with_allow(router, upstream):
    relay = upstream("relay-1")
    home = upstream("home", "server", "home")
    r = router([relay.address], home.address)
    alice = r.session()
    resp = alice.get(r.url + "/v1/messages", timeout=10)
    assert_nginx_problem(resp, 405, "method-not-allowed")
    assert resp.headers["Allow"] == "POST"
    resp = alice.delete(r.url + "/home/", timeout=10)
    assert_nginx_problem(resp, 405, "method-not-allowed")
    assert resp.headers["Allow"] == "GET, HEAD"
    resp = alice.request("TRACE", r.url + "/v1/home/participants", timeout=10)
    assert_nginx_problem(resp, 405, "method-not-allowed")
    assert resp.headers["Allow"] == "GET, HEAD, POST, PUT, PATCH, DELETE"
    assert_nginx_problem(alice.get(r.url + "/elsewhere", timeout=10), 404, "not-found")
    assert relay.seen == [] and home.seen == []


def test_ip_allow_lists_per_location_family(router, upstream):
    relay = upstream("relay-1")
    home = upstream("home", "server", "home")
    r = router(
        [relay.address], home.address, allow=["192.0.2.0/24"], status_allow=["2001:db8::/32"]
    )
    alice = r.session()
    assert_nginx_problem(post(alice, r.url), 403, "forbidden")
    assert_nginx_problem(alice.get(r.url + "/home/", timeout=10), 403, "forbidden")
    # The home API has its own list (loopback by default).
    assert alice.get(r.url + "/v1/home/participants", timeout=10).status_code == 200
    assert relay.seen == [] and [s.path for s in home.seen] == ["/v1/participants"]


# --- one error contract at the door: raw requests over TLS -----------------------------------


@dataclasses.dataclass
class Answer:
    status: int
    headers: http.client.HTTPMessage
    body: bytes


def raw_request(
    url: str, pki, data: bytes, kind: str = "participant", name: str = "alice"
) -> Answer:
    """Send ``data`` as it is over TLS (with ``kind``/``name``'s certificate) and read the
    whole answer: nginx closes the connection after most of these, so the body is read
    by its Content-Length, or up to the close."""
    host, port = urllib.parse.urlsplit(url).netloc.rsplit(":", 1)
    context = ssl.create_default_context(cafile=str(pki.ca))
    context.load_cert_chain(pki.cert(kind, name), pki.key(kind, name))
    with (
        socket.create_connection((host, int(port)), timeout=10) as plain,
        context.wrap_socket(plain, server_hostname="localhost") as tls,
    ):
        tls.sendall(data)
        resp = http.client.HTTPResponse(tls)
        resp.begin()
        body = resp.read()
        return Answer(resp.status, resp.headers, body)


def head(request_line: str, *fields: str, body: bytes = b"") -> bytes:
    lines = [request_line, "Host: localhost", *fields, "Connection: close"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def gunicorn_parses(method: str, path: str, headers: dict[str, str]) -> int:
    """What an upstream saw, as nginx sends it on (request line, then header fields),
    through gunicorn's own parser with its default limits: the number of fields, or
    gunicorn's exception (which it would answer with an HTML page)."""
    from gunicorn.config import Config
    from gunicorn.http.parser import RequestParser

    raw = f"{method} {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    request = next(
        RequestParser(Config(), iter([raw.encode("latin-1") + b"\r\n"]), ("127.0.0.1", 1))
    )
    return len(request.headers)


def test_a_uri_over_the_limit_is_414_problem(router, upstream, pki):
    relay = upstream("relay-1")
    r = router([relay.address])
    for line in (f"GET /{'a' * 5000} HTTP/1.1", f"POST /v1/messages?{'a' * 5000} HTTP/1.1"):
        doc = assert_nginx_problem(raw_request(r.url, pki, head(line)), 414, "uri-too-long")
        assert "4094 bytes" in doc["detail"]
    assert relay.seen == []


def test_the_longest_request_line_nginx_takes_is_one_gunicorn_takes(router, upstream, pki):
    relay = upstream("relay-1")
    r = router([relay.address])

    def line(total: int) -> str:  # a request line of `total` bytes with its CRLF
        start, end = "POST /v1/messages?", " HTTP/1.1"
        return start + "q" * (total - len(start) - len(end) - 2) + end

    # nginx counts the line against one large buffer (4k): 4096 bytes with CRLF pass...
    resp = raw_request(r.url, pki, head(line(4096), "Content-Length: 2", body=b"{}"))
    assert resp.status == 200 and json.loads(resp.body)["upstream"] == "relay-1"
    (seen,) = relay.seen
    forwarded = f"{seen.method} {seen.path} HTTP/1.1"
    assert len(forwarded) == 4094  # ...and nginx passes it on as it came: gunicorn's limit
    assert gunicorn_parses(seen.method, seen.path, seen.headers) < 100
    # ...4097 do not.
    assert_nginx_problem(raw_request(r.url, pki, head(line(4097))), 414, "uri-too-long")
    assert len(relay.seen) == 1


def test_headers_over_the_limits_are_431_problem(router, upstream, pki):
    relay = upstream("relay-1")
    r = router([relay.address])
    one_big = head("POST /v1/messages HTTP/1.1", "X-Big: " + "b" * 5000)
    doc = assert_nginx_problem(raw_request(r.url, pki, one_big), 431, "headers-too-large")
    assert "4094 bytes" in doc["detail"]
    # Each line fits a buffer, all of them do not (1k + 4 x 4k).
    many_big = head("POST /v1/messages HTTP/1.1", *(f"X-Big-{i}: {'b' * 3990}" for i in range(5)))
    assert_nginx_problem(raw_request(r.url, pki, many_big), 431, "headers-too-large")
    assert relay.seen == []
    # A header line of 4096 bytes with its CRLF still passes (half gunicorn's 8190).
    field = "X-Big: " + "b" * (4096 - len("X-Big: ") - 2)
    ok = raw_request(r.url, pki, head("POST /v1/messages HTTP/1.1", field, "Content-Length: 0"))
    assert ok.status == 200


def test_many_small_headers_never_reach_the_upstream(router, upstream, pki):
    # nginx has no limit on the number of header fields; gunicorn answers more than 100
    # with an HTML 400 (and Python's http.server, this fake upstream, with an HTML 431).
    # The router passes on only the client headers it lists: the count upstream is fixed.
    relay = upstream("relay-1")
    r = router([relay.address])
    fillers = [f"X-Filler-{i:03}: x" for i in range(120)]
    request = head(
        "POST /v1/messages HTTP/1.1",
        "Authorization: Bearer t0ken",
        "Content-Type: application/json",
        *fillers,
        "Content-Length: 2",
        body=b"{}",
    )
    resp = raw_request(r.url, pki, request)
    assert resp.status == 200 and resp.headers["Content-Type"] == "application/json"
    assert json.loads(resp.body)["upstream"] == "relay-1"
    (seen,) = relay.seen
    assert not [name for name in seen.headers if name.startswith("x-filler")]
    assert seen.headers["authorization"] == "Bearer t0ken"
    assert seen.headers["content-type"] == "application/json"
    assert seen.headers["x-request-id"] == resp.headers["X-Request-Id"]
    assert len(seen.headers) < 20
    assert gunicorn_parses(seen.method, seen.path, seen.headers) == len(seen.headers)
    # Straight to the upstream, the same request gets an HTML page: what the router prevents.
    direct = raw_request(f"https://{relay.address}", pki, request)
    assert direct.status == 431 and direct.headers["Content-Type"].startswith("text/html")


def test_only_the_listed_client_headers_go_on(router, upstream, pki):
    home = upstream("home", "server", "home")
    r = router([dead_address()], home.address)
    sent = {
        "Accept": "application/json",
        "If-None-Match": '"7"',
        "If-Match": '"6"',
        "User-Agent": "dmr-test",
        "Authorization": "Bearer t",
        "X-DMR-Peer-Cert": "forged",
        "Forwarded": "for=192.0.2.1",
        "Cookie": "a=b",
    }
    resp = r.session("admin", "admin").get(r.url + "/v1/home/sync", headers=sent, timeout=10)
    assert resp.status_code == 200
    (seen,) = home.seen
    for name in ("Accept", "If-None-Match", "If-Match", "User-Agent", "Authorization"):
        assert seen.headers[name.lower()] == sent[name]
    for name in ("x-dmr-peer-cert", "forwarded", "cookie"):
        assert name not in seen.headers
    assert seen.headers["x-forwarded-for"] == "127.0.0.1"


@pytest.mark.parametrize("encoding", ["gzip, chunked", "foo"])
def test_an_unknown_transfer_encoding_is_501_problem(router, upstream, pki, encoding):
    relay = upstream("relay-1")
    r = router([relay.address])
    request = head(
        "POST /v1/messages HTTP/1.1", f"Transfer-Encoding: {encoding}", body=b"2\r\n{}\r\n0\r\n\r\n"
    )
    assert_nginx_problem(raw_request(r.url, pki, request), 501, "transfer-encoding-not-implemented")
    # chunked itself is fine: nginx reads the body and passes it on with a Content-Length.
    chunked = head(
        "POST /v1/messages HTTP/1.1", "Transfer-Encoding: chunked", body=b"2\r\n{}\r\n0\r\n\r\n"
    )
    assert raw_request(r.url, pki, chunked).status == 200
    (seen,) = relay.seen
    assert seen.body == b"{}" and seen.headers["content-length"] == "2"
    assert "transfer-encoding" not in seen.headers


@pytest.mark.parametrize(
    ("path", "allow"),
    [
        ("/v1/messages", "POST"),
        ("/v1/messages?x=1", "POST"),
        ("/v1/home/sync", "GET, HEAD"),
        ("/v1/home/participants", "GET, HEAD, POST, PUT, PATCH, DELETE"),
        ("/home/", "GET, HEAD"),
        ("/.well-known/jwks.json", "GET, HEAD"),
        ("/elsewhere", "POST, GET, HEAD, PUT, PATCH, DELETE"),
    ],
)
def test_trace_is_405_problem_with_the_routes_allow(router, upstream, pki, path, allow):
    # nginx refuses TRACE itself, before any location runs: Allow comes from the path.
    relay = upstream("relay-1")
    home = upstream("home", "server", "home")
    r = router([relay.address], home.address)
    answer = raw_request(r.url, pki, head(f"TRACE {path} HTTP/1.1"))
    assert_nginx_problem(answer, 405, "method-not-allowed")
    assert answer.headers["Allow"] == allow
    assert relay.seen == [] and home.seen == []


@pytest.mark.parametrize(
    ("request_line", "status", "code"),
    [
        ("G@T / HTTP/1.1", 400, "bad-request"),  # not a method
        ("GET / HTTP/1.1 extra", 400, "bad-request"),
        ("GET /v1/messages HTTP/x.y", 400, "bad-request"),
        ("GET / HTTP/2.0", 505, "http-version-not-supported"),
    ],
)
def test_a_malformed_request_line_is_a_problem(router, upstream, pki, request_line, status, code):
    relay = upstream("relay-1")
    r = router([relay.address])
    assert_nginx_problem(raw_request(r.url, pki, head(request_line)), status, code)
    assert relay.seen == []


def test_malformed_headers_are_400_problem(router, upstream, pki):
    relay = upstream("relay-1")
    r = router([relay.address])
    no_host = b"POST /v1/messages HTTP/1.1\r\nConnection: close\r\n\r\n"
    both = head(
        "POST /v1/messages HTTP/1.1",
        "Content-Length: 2",
        "Transfer-Encoding: chunked",
        body=b"2\r\n{}\r\n0\r\n\r\n",
    )
    te_on_10 = head("POST /v1/messages HTTP/1.0", "Transfer-Encoding: chunked", body=b"0\r\n\r\n")
    twice = head("POST /v1/messages HTTP/1.1", "Content-Length: 2", "Content-Length: 2", body=b"{}")
    for request in (no_host, both, te_on_10, twice):
        assert_nginx_problem(raw_request(r.url, pki, request), 400, "bad-request")
    assert relay.seen == []


def test_http_0_9_gets_the_problem_body_without_a_head(router, upstream, pki):
    # HTTP/0.9 has no status line and no headers: nginx answers with the body alone.
    r = router([upstream("relay-1").address])
    host, port = urllib.parse.urlsplit(r.url).netloc.rsplit(":", 1)
    context = ssl.create_default_context(cafile=str(pki.ca))
    context.load_cert_chain(pki.cert("participant", "alice"), pki.key("participant", "alice"))
    with (
        socket.create_connection((host, int(port)), timeout=10) as plain,
        context.wrap_socket(plain, server_hostname="localhost") as tls,
    ):
        tls.sendall(b"GET /elsewhere\r\n")
        data = b""
        while chunk := tls.recv(65536):
            data += chunk
    doc = json.loads(data)
    assert doc["type"] == "urn:dmr:problem:not-found" and doc["status"] == 404


# --- routes to home -------------------------------------------------------------------------------


def test_home_routes(router, upstream):
    home = upstream("home", "server", "home")
    r = router([dead_address()], home.address)
    admin = r.session("admin", "admin")
    paths = {
        "/v1/home/participants?state=active": "/v1/participants?state=active",
        "/v1/home/sync?wait=1&after=3": "/v1/sync?after=3&wait=1",
        "/home/": "/",
        "/home/?x=1": "/?x=1",
        "/home/metrics": "/metrics",
        "/home/openapi.json": "/openapi.json",
        "/home/v1/failures/m-1?from=alice": "/v1/failures/m-1?from=alice",
        "/.well-known/jwks.json": "/.well-known/jwks.json",
    }
    for path, expected in paths.items():
        resp = admin.get(r.url + path, timeout=10)
        assert resp.status_code == 200, path
        got = urllib.parse.urlsplit(resp.json()["path"])
        want = urllib.parse.urlsplit(expected)
        assert got.path == want.path
        assert urllib.parse.parse_qs(got.query) == urllib.parse.parse_qs(want.query)
        assert resp.json()["client_cert_header"]
    assert admin.get(r.url + "/home", timeout=10, allow_redirects=False).status_code == 301


@pytest.mark.parametrize(
    "path",
    [
        "/home/v1/participants",
        "/home/v1/tokens",
        "/home/v1/sync",
        "/home/v1/keys",
        "/home/v1/instances",
        "/home/v1/failures",
        "/home/v1/failures/",
        "/home/v1/failures/m-1/x",
        "/home/v1/failures/m-1%2Fresolve",
        "/home/healthz",
        "/home/readyz",
        "/home/v1/jwks",
        "/home/.well-known/jwks.json",
        "/home/metrics/x",
        "/home/x",
    ],
)
def test_the_home_prefix_serves_only_the_status_page_and_what_it_links(router, upstream, path):
    # /home/ is open to status_allow, not home_allow: none of home's API behind it.
    home = upstream("home", "server", "home")
    r = router([dead_address()], home.address)
    resp = r.session("admin", "admin").get(r.url + path, timeout=10)
    assert_nginx_problem(resp, 404, "not-found")
    assert home.seen == []


# --- failover -------------------------------------------------------------------------------------


def test_relay_down_fails_over_to_another(router, upstream):
    live = upstream("relay-2", cert_name="relay-2")
    dead = dead_address()
    r = router([dead, live.address])
    alice = r.session()
    for _ in range(4):
        resp = post(alice, r.url)
        assert resp.status_code == 200 and resp.json()["upstream"] == "relay-2"
    assert len(live.seen) == 4
    statuses = [
        r.entry(rid)["upstream_status"] for rid in (s.headers["x-request-id"] for s in live.seen)
    ]
    assert "502, 200" in statuses  # the refused connection, then the live relay


def test_relay_503_passes_to_the_next_relay(router, upstream):
    busy = upstream("relay-1")
    busy.set(503, detail="not ready")
    ready = upstream("relay-2", cert_name="relay-2")
    r = router([busy.address, ready.address])
    alice = r.session()
    for _ in range(4):
        resp = post(alice, r.url)
        assert resp.status_code == 200 and resp.json()["upstream"] == "relay-2"
    assert len(ready.seen) == 4
    assert busy.seen, "the busy relay was asked first at least once"
    request_ids = {s.headers["x-request-id"] for s in ready.seen}
    assert all(s.headers["x-request-id"] in request_ids for s in busy.seen)


def test_at_most_three_tries_then_the_relays_own_503(router, upstream):
    relays = [upstream(f"relay-{i}") for i in range(4)]
    for relay in relays:
        relay.set(503, type="urn:dmr:problem:unavailable")
    r = router([relay.address for relay in relays])
    resp = post(r.session(), r.url)
    assert resp.status_code == 503
    assert resp.json()["type"] == "urn:dmr:problem:unavailable"  # the relay's body, passed on
    assert sum(len(relay.seen) for relay in relays) == 3
    assert r.entry(resp.headers["X-Request-Id"])["upstream_status"] == "503, 503, 503"


def test_a_timeout_is_not_retried(router, upstream):
    slow = upstream("relay-1")
    slow.set(200, delay=4)
    fast = upstream("relay-2", cert_name="relay-2")
    r = router([slow.address, fast.address], upstream=config.Upstreams(message_timeout=1))
    alice = r.session()
    answers = [post(alice, r.url) for _ in range(2)]  # round robin: one goes to the slow relay
    timed_out = [a for a in answers if a.status_code == 504]
    assert len(timed_out) == 1, [a.status_code for a in answers]
    assert_nginx_problem(timed_out[0], 504, "gateway-timeout")
    request_id = timed_out[0].headers["X-Request-Id"]
    assert request_id in {s.headers["x-request-id"] for s in slow.seen}
    assert request_id not in {s.headers["x-request-id"] for s in fast.seen}
    assert r.entry(request_id)["upstream_status"] == "504"


def test_every_relay_down_is_502_problem(router):
    r = router([dead_address(), dead_address()])
    assert_nginx_problem(post(r.session(), r.url), 502, "bad-gateway")


# --- running nginx --------------------------------------------------------------------------------


def test_reload_applies_a_new_rendering_and_stop_leaves_nothing(router, upstream):
    relay = upstream("relay-1")
    r = router([relay.address], limits=config.BodyLimits(max_message_bytes=100))
    alice = r.session()
    assert post(alice, r.url, b"x" * 150).status_code == 413
    bigger = config.BodyLimits(max_message_bytes=200)
    render.write(dataclasses.replace(r.cfg, limits=bigger), r.conf)
    r.nginx.reload()
    deadline = time.monotonic() + 10
    while post(alice, r.url, b"x" * 150).status_code != 200:
        assert time.monotonic() < deadline, "reload did not take effect"
        time.sleep(0.2)
    pgid = r.nginx.pid
    r.nginx.stop()
    with pytest.raises(ProcessLookupError):
        os.killpg(pgid, 0)
    assert not r.nginx.running()


def test_a_bad_config_is_refused_before_start_and_reload(router, upstream, tmp_path):
    relay = upstream("relay-1")
    r = router([relay.address])
    good = r.conf.read_text()
    r.conf.write_text(good.replace("ssl_verify_client on;", "ssl_verify_client sometimes;"))
    with pytest.raises(serving.NginxError, match='invalid value "sometimes"'):
        r.nginx.reload()
    assert post(r.session(), r.url).status_code == 200  # still serving the good config
    assert r.nginx.running()
