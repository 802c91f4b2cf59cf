"""Delivery: the relay's per-recipient POST and fan-out against their former selves,
urllib3 and requests, each measured in the same run.

Reader: µs to read one recipient's answer (status line, five headers, a receipt, a small
body) from memory, by ``relay/http1.py``'s ``Answer`` and by ``http.client.HTTPResponse``
(the former reader, through the email package).

Per call: one envelope POSTed to a real local HTTPS recipient (``dmr recipient`` in its
own process, TLS from a deployment PKI made in a temporary directory, a relay certificate
required) over a kept-alive connection, in alternating rounds:

  relay pool        the relay's own call (``Deliverer._post``: relay/connections.py)
  http.client pool  the former relay pool (relay/connections.py at 1a37b9e, below)
  urllib3           the client before that: a PoolManager with the same TLS context
  requests.Session  the baseline: the same POST, body, headers and TLS settings
  Deliverer.deliver the relay's whole path for one recipient: body, outcome, metrics

Each gets its median, p90 and p99 wall time and the CPU time of the calling thread per
call (what the relay worker pays; the recipient is another process).

Fan-out: ``Deliverer.deliver`` to 1, 10 and 50 recipients (on one recipient host, every
connection kept), against the former fan-out (one task per recipient on a shared
``ThreadPoolExecutor(pool_size)`` over the former pool, one recipient on the caller's
thread; its per-recipient log line left out, as it now belongs to the message's line), in
alternating rounds. The recipient answers at once, so the figures are the relay's cost,
not a slow recipient's: nginx (one worker, as relay_wrk.py's recipient) where Debian's
nginx is installed, else a minimal Python TLS server in its own process (which also
serves ``--delay``). CPU is the benchmark process's per message (the former fan-out
spends it on its pool's threads).
"""

from __future__ import annotations

import contextlib
import heapq
import http.client
import io
import json
import multiprocessing
import os
import select
import selectors
import socket
import ssl
import subprocess
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import wait as wait_all
from pathlib import Path
from typing import Any

import requests
import urllib3
from _common import (
    HOST,
    Pki,
    Stats,
    figure,
    header,
    interleaved,
    make_pki,
    ms,
    note,
    parser,
    recipient_process,
    scratch,
    timed,
)

from dmr_appliance import config, envelope, logs, serving, tokens
from dmr_appliance.relay import delivery_body, http1
from dmr_appliance.relay.connections import Reply, target
from dmr_appliance.relay.delivery import ANSWER_LIMIT, Deliverer, Recipient, passed_on
from dmr_appliance.relay.metrics import RelayMetrics
from dmr_appliance.relay.outbound import describe, tls_context
from dmr_appliance.wire import mtls
from dmr_appliance.wire.outcome import FAILED, Outcome, classify

ISSUER = "dmr-bench"
WIDTHS = (1, 10, 50)
# A recipient's answer as the relays get it: a receipt (a JWS of ~1.2 KiB) and a small body.
RECEIPT = "eyJhbGciOiJFUzI1NiIsIng1YyI6WyJNSUlC" + "A" * 900 + ".eyJtIjoiMSJ9" + "." + "s" * 86
ANSWER = (
    b"HTTP/1.1 200 OK\r\nServer: BaseHTTP/0.6 Python/3.11.2\r\n"
    b"Date: Mon, 07 Dec 2026 01:00:00 GMT\r\nContent-Type: application/json\r\n"
    b"DMR-Receipt: " + RECEIPT.encode() + b"\r\nContent-Length: 27\r\n\r\n"
    b'{"id":"m-1","duplicate":no}'
)


def relay_config(p: Pki, connections: int = 8) -> config.RelayConfig:
    cert, key = p.pair("relay", "relay-1")
    return config.RelayConfig(
        tls=config.RelayTls(ca=p.ca, cert=cert, key=key, crl=p.dir / "crl.pem"),
        delivery=config.Delivery(per_host_connections=connections),
    )


def message(endpoint: str) -> envelope.Envelope:
    """A small real envelope (its card is signed, though delivery does not look at it)."""
    key = tokens.SigningKey.generate()
    card = tokens.issue_card(
        key, issuer=ISSUER, subject="bob", endpoint=endpoint, rooms=["bench"], lifetime=600
    )
    doc = envelope.build_envelope(
        room="bench", sender="alice", cards=[card], payload={"text": "hello", "n": 42}
    )
    return envelope.parse_envelope(json.dumps(doc).encode())


def requests_session(p: Pki) -> requests.Session:
    return mtls.session(p.ca, *p.pair("relay", "relay-1"))


class Cpu:
    """``call`` timed by the calling thread's CPU clock (or the process's) as well."""

    def __init__(self, call: Callable[[], None], clock: Callable[[], float] = time.thread_time):
        self.call, self.clock, self.seconds, self.calls = call, clock, 0.0, 0

    def __call__(self) -> None:
        started = self.clock()
        self.call()
        self.seconds += self.clock() - started
        self.calls += 1

    @property
    def per_call(self) -> float:
        return self.seconds / self.calls


# --- the former pool and fan-out (relay/connections.py and delivery.py at 1a37b9e) -------


class FormerPool:
    """relay/connections.py's ``ConnectionPool`` at 1a37b9e, on http.client (abridged:
    the same calls per request)."""

    def __init__(self, context: ssl.SSLContext, per_host: int) -> None:
        self.context, self.per_host = context, per_host
        self.connect_timeout, self.read_timeout = 3.0, 10.0
        self._idle: OrderedDict[tuple[str, int], list[_FormerConnection]] = OrderedDict()
        self._lock = threading.Lock()

    def post(self, url: str, body: bytes, headers: dict[str, str], *, answer_limit: int) -> Reply:
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
        if response.isclosed() and conn.sock is not None:
            with self._lock:
                idle = self._idle.setdefault((host, port), [])
                if len(idle) < self.per_host:
                    idle.append(conn)
                    conn = None  # type: ignore[assignment]
            if conn is not None:
                conn.close()
        else:
            conn.close()
        return Reply(response.status, response.getheader("DMR-Receipt"))

    def _connect(self, host: str, port: int) -> _FormerConnection:
        conn = _FormerConnection(host, port, timeout=self.connect_timeout, context=self.context)
        conn.read_timeout = self.read_timeout
        conn.connect()
        return conn

    def _take(self, host: str, port: int) -> _FormerConnection | None:
        while True:
            with self._lock:
                idle = self._idle.get((host, port))
                conn = idle.pop() if idle else None
            if conn is None:
                return None
            poller = select.poll()
            poller.register(conn.sock, select.POLLIN)
            if not poller.poll(0):
                return conn
            conn.close()

    def clear(self) -> None:
        for idle in self._idle.values():
            for conn in idle:
                conn.close()
        self._idle.clear()


class _FormerConnection(http.client.HTTPSConnection):
    deadline = 0.0
    read_timeout = 10.0
    _hold = False
    _held: bytes | None = None

    def request(self, method, url, body=None, headers=None, *, encode_chunked=False):  # type: ignore[no-untyped-def]
        self._hold = True
        try:
            super().request(method, url, body, dict(headers or {}), encode_chunked=encode_chunked)
        finally:
            self._hold, held, self._held = False, self._held, None
        if held is not None:
            super().send(held)

    def send(self, data: Any) -> None:
        if self._hold:
            self._hold, self._held = False, bytes(data)
            return
        if self._held is not None:
            data, self._held = self._held + bytes(data), None
        super().send(data)

    def response_class(self, sock, method=None):  # type: ignore[no-untyped-def]
        return http.client.HTTPResponse(_FormerDeadlineSocket(sock, self), method=method)


class _FormerDeadlineSocket:
    def __init__(self, sock: socket.socket, conn: _FormerConnection) -> None:
        self._sock, self._conn = sock, conn

    def makefile(self, mode: str) -> io.BufferedReader:
        raw = self._sock.makefile("rb", buffering=0)
        return io.BufferedReader(_FormerDeadlineReader(raw, self._sock, self._conn))


class _FormerDeadlineReader(io.RawIOBase):
    def __init__(self, raw: Any, sock: socket.socket, conn: _FormerConnection) -> None:
        self._raw, self._sock, self._conn = raw, sock, conn

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int | None:
        self._sock.settimeout(min(self._conn.read_timeout, _left(self._conn.deadline)))
        return self._raw.readinto(buffer)


def _left(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("the recipient did not answer within the delivery timeouts")
    return left


class FormerFanOut:
    """``Deliverer.deliver`` at 1a37b9e: a task per recipient on a shared thread pool, one
    recipient on the caller's thread; per recipient the POST, its outcome and duration
    metric (its log line left out: it now belongs to the message's line)."""

    def __init__(self, pool: FormerPool, threads: int) -> None:
        self.pool, self.meters = pool, RelayMetrics()
        self.executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="former")

    def deliver(
        self, parts: delivery_body.Parts, headers: dict[str, str], to: list[Recipient]
    ) -> list[Outcome]:
        if len(to) == 1:
            return [self._one(to[0], parts, headers)]
        futures = [self.executor.submit(self._one, r, parts, headers) for r in to]
        wait_all(futures)
        return [f.result() for f in futures]

    def _one(self, r: Recipient, parts: delivery_body.Parts, headers: dict[str, str]) -> Outcome:
        started = time.perf_counter()
        status, error, receipt = None, None, None
        try:
            body = delivery_body.for_recipient(parts, r.id)
            status, receipt = self.pool.post(r.endpoint, body, headers, answer_limit=ANSWER_LIMIT)
            outcome = classify(status)
        except (http.client.HTTPException, OSError, ValueError) as exc:
            outcome, error = FAILED, describe(exc)
        seconds = time.perf_counter() - started
        self.meters.delivery_duration.labels(outcome).observe(seconds)
        ms_ = round(seconds * 1000, 1)
        return Outcome(r.id, outcome, status, ms_, error, receipt=passed_on(receipt))


# --- a recipient that costs next to nothing -------------------------------------------


def quick_recipient(p: Pki, delay: float, ports: Any) -> None:
    """A TLS server (relay certificates required) answering every POST with ``ANSWER``,
    at once or after ``delay``: one thread, non-blocking sockets (it runs in a child)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(p.ca))
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_cert_chain(*map(str, p.pair("server", "recipient")))
    listener = socket.create_server((HOST, 0), backlog=1024)
    listener.setblocking(False)
    ports.send(listener.getsockname()[1])
    watch = selectors.DefaultSelector()
    watch.register(listener, selectors.EVENT_READ)
    due: list[tuple[float, int, ssl.SSLSocket]] = []  # answers to send, by when
    unread: dict[ssl.SSLSocket, bytes] = {}
    counter = 0
    while True:
        wait = max(0.0, due[0][0] - time.monotonic()) if due else None
        for key, _ in watch.select(wait):
            if key.fileobj is listener:
                with contextlib.suppress(BlockingIOError):
                    raw, _ = listener.accept()
                    raw.setblocking(False)
                    sock = context.wrap_socket(raw, server_side=True, do_handshake_on_connect=False)
                    unread[sock] = b""
                    watch.register(sock, selectors.EVENT_READ)
                continue
            sock = key.fileobj  # type: ignore[assignment]
            try:
                for _ in range(_requests(sock, unread)):
                    counter += 1
                    heapq.heappush(due, (time.monotonic() + delay, counter, sock))
            except OSError:  # the relay went, or its handshake failed
                watch.unregister(sock)
                unread.pop(sock, None)
                sock.close()
        while due and due[0][0] <= time.monotonic():
            with contextlib.suppress(OSError):
                heapq.heappop(due)[2].send(ANSWER)


def _requests(sock: ssl.SSLSocket, unread: dict[ssl.SSLSocket, bytes]) -> int:
    """How many whole requests arrived on ``sock`` (its handshake done on the way)."""
    try:
        sock.do_handshake()  # nothing to do once done
        while data := sock.recv(65536):
            unread[sock] += data
        raise ConnectionResetError("closed")
    except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
        pass
    buf, whole = unread[sock], 0
    while (end := buf.find(b"\r\n\r\n")) >= 0:
        length = int(buf[:end].lower().split(b"content-length:")[1].split(b"\r\n")[0])
        if len(buf) < end + 4 + length:
            break
        buf, whole = buf[end + 4 + length :], whole + 1
    unread[sock] = buf
    return whole


@contextlib.contextmanager
def quick_recipient_process(p: Pki, delay: float) -> Iterator[int]:
    parent, child = multiprocessing.get_context("fork").Pipe()
    process = multiprocessing.get_context("fork").Process(
        target=quick_recipient, args=(p, delay, child), daemon=True
    )
    process.start()
    try:
        yield parent.recv()
    finally:
        process.terminate()
        process.join(5)


def nginx_recipient_process(p: Pki, tmp: Path) -> contextlib.AbstractContextManager[int]:
    """nginx answering ``ANSWER``'s status, receipt and body (as relay_wrk.py's recipient,
    one worker), where Debian's nginx is installed; else ``quick_recipient_process``."""
    if not Path(serving.NGINX).exists():
        return quick_recipient_process(p, 0.0)
    prefix = tmp / "nginx"
    prefix.mkdir()
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        port = probe.getsockname()[1]
    cert, key = p.pair("server", "recipient")
    (prefix / "nginx.conf").write_text(
        f"""worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/body;
    keepalive_requests 1000000;
    server {{
        listen {HOST}:{port} ssl;
        ssl_certificate {cert}; ssl_certificate_key {key};
        ssl_client_certificate {p.ca}; ssl_verify_client on;
        add_header DMR-Receipt {RECEIPT} always;
        location / {{ return 200 '{{"id":"m-1","duplicate":no}}'; }}
    }}
}}
"""
    )
    argv = [serving.NGINX, "-p", str(prefix), "-c", str(prefix / "nginx.conf")]
    return _nginx([*argv, "-g", "daemon off;"], port)


@contextlib.contextmanager
def _nginx(argv: list[str], port: int) -> Iterator[int]:
    process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 10
        while True:
            with contextlib.suppress(OSError), socket.create_connection((HOST, port), 0.2):
                break
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"nginx did not start (exit {process.poll()})")
            time.sleep(0.05)
        yield port
    finally:
        process.terminate()
        process.wait(10)


# --- the sections ---------------------------------------------------------------------


def reader(count: int) -> None:
    """µs per answer read from memory: http1.Answer against http.client's HTTPResponse."""

    class Wire:
        def makefile(self, mode: str) -> io.BytesIO:
            return io.BytesIO(ANSWER)

    def former() -> None:
        response = http.client.HTTPResponse(Wire(), method="POST")  # type: ignore[arg-type]
        response.begin()
        response.read(ANSWER_LIMIT)
        assert response.isclosed() and response.getheader("DMR-Receipt") == RECEIPT

    def ours() -> None:
        answer = http1.Answer(ANSWER_LIMIT)
        assert answer.feed(ANSWER) and answer.keep_alive and answer.receipt == RECEIPT

    samples = interleaved({"http1.Answer": ours, "http.client.HTTPResponse": former}, count, 5)
    print(f"answer reader, one {len(ANSWER)}-byte answer (a receipt among its headers):")
    stats = {name: Stats.of(s) for name, s in samples.items()}
    for name, s in stats.items():
        figure(f"reader: {name}", s)
    saved = stats["http.client.HTTPResponse"].median - stats["http1.Answer"].median
    note("reader: http.client - http1", f"{saved * 1e6:+8.1f} µs per answer")


def per_call(p: Pki, count: int, rounds: int) -> None:
    with recipient_process(p) as port:
        url = f"https://localhost:{port}/inbox/bob"
        msg = message(url)
        deliverer = Deliverer.from_config(relay_config(p))
        former_pool = FormerPool(tls_context(relay_config(p).tls, check_hostname=True), 8)
        former = urllib3_post(p)
        session = requests_session(p)
        body = delivery_body.body(msg, "bob")
        headers = Deliverer._headers(msg, "bench")  # the relay's own delivery headers

        def via_requests() -> None:
            response = session.post(
                url, data=body, headers=headers, timeout=10, allow_redirects=False
            )
            assert response.status_code == 200, response.status_code

        def via_pool() -> None:
            assert deliverer._post(url, body, headers).status == 200  # the relay's own POST

        def via_former_pool() -> None:
            assert former_pool.post(url, body, headers, answer_limit=ANSWER_LIMIT).status == 200

        def via_urllib3() -> None:
            assert former(url, body, headers) == 200

        def via_deliverer() -> None:
            (outcome,) = deliverer.deliver(msg, [Recipient("bob", url)], "bench")
            assert outcome.outcome == "delivered", outcome

        variants = {
            "relay pool, http1 (Deliverer._post)": Cpu(via_pool),
            "http.client pool (Deliverer._post) former": Cpu(via_former_pool),
            "urllib3 PoolManager (former)": Cpu(via_urllib3),
            "requests.Session.post (baseline)": Cpu(via_requests),
            "Deliverer.deliver, 1 recipient": Cpu(via_deliverer),
        }
        for variant in variants.values():
            variant.call()  # connect outside the CPU figure (interleaved warms the rest)
        samples = interleaved(variants, count, rounds)
        deliverer.close()
        former_pool.clear()
        session.close()
    print("per call, one envelope, kept-alive HTTPS to a local recipient (dmr recipient):")
    stats = {name: Stats.of(s) for name, s in samples.items()}
    cpu = {name: variant.per_call for name, variant in variants.items()}
    for name, s in stats.items():
        figure(
            name,
            s,
            extra=f"{s.count / sum(samples[name]):7.0f} calls/s, "
            f"CPU {cpu[name] * 1e6:6.1f} µs/call",
        )
    ours = cpu["relay pool, http1 (Deliverer._post)"]
    was = cpu["http.client pool (Deliverer._post) former"]
    for name, label in (
        ("http.client pool (Deliverer._post) former", "http.client - http1"),
        ("urllib3 PoolManager (former)", "urllib3 - http.client"),
        ("requests.Session.post (baseline)", "requests - http.client"),
    ):
        base = ours if name.startswith("http.client") else was
        saved = cpu[name] - base
        note(label, f"CPU {saved * 1e6:+8.1f} µs per call ({saved / cpu[name]:.0%} of it)")
    note(
        "requests - http1", f"CPU {(cpu['requests.Session.post (baseline)'] - ours) * 1e6:+8.1f} µs"
    )


def urllib3_post(p: Pki) -> Callable[[str, bytes, dict[str, str]], int]:
    """The relay's POST as it was on urllib3 (PoolManager, no retries, answer bounded)."""
    pool = urllib3.PoolManager(
        maxsize=8, ssl_context=tls_context(relay_config(p).tls), cert_reqs="CERT_REQUIRED"
    )
    timeout = urllib3.Timeout(connect=3.0, read=10.0, total=13.0)

    def post(url: str, body: bytes, headers: Mapping[str, str]) -> int:
        response = pool.urlopen(
            "POST",
            url,
            body=body,
            headers=headers,
            timeout=timeout,
            retries=False,
            redirect=False,
            preload_content=False,
        )
        try:
            response.read(ANSWER_LIMIT, decode_content=False)
        finally:
            response.release_conn()
        return int(response.status)

    return post


def fan_out(p: Pki, tmp: Path, count: int, rounds: int, delay: float) -> None:
    width = max(WIDTHS)
    recipient = quick_recipient_process(p, delay) if delay else nginx_recipient_process(p, tmp)
    kind = "a minimal Python TLS server" if delay or not Path(serving.NGINX).exists() else "nginx"
    with recipient as port:
        cfg = relay_config(p, connections=width)  # every connection kept, in both
        deliverer = Deliverer.from_config(cfg)
        former = FormerFanOut(
            FormerPool(tls_context(cfg.tls, check_hostname=True), width), cfg.delivery.pool_size
        )
        urls = [f"https://{HOST}:{port}/inbox/r{i}" for i in range(width)]
        msg = message(urls[0])
        parts = delivery_body.parts(msg)
        headers = Deliverer._headers(msg, "bench")
        variants: dict[str, Cpu] = {}
        for n in WIDTHS:
            to = [Recipient(f"r{i}", urls[i]) for i in range(n)]
            plural = "s" if n > 1 else ""

            def new(to: list[Recipient] = to) -> None:
                outcomes = deliverer.deliver(msg, to, "bench")
                assert all(o.outcome == "delivered" for o in outcomes), outcomes

            def old(to: list[Recipient] = to) -> None:
                outcomes = former.deliver(parts, headers, to)
                assert all(o.outcome == "delivered" for o in outcomes), outcomes

            variants[f"Deliverer.deliver, {n} recipient{plural}"] = Cpu(new, time.process_time)
            variants[f"former threads, {n} recipient{plural}"] = Cpu(old, time.process_time)
        for variant in variants.values():
            timed(variant.call, 2)  # connections made outside the figures
        samples = interleaved(variants, count, rounds, warmup=2)
        deliverer.close()
        former.executor.shutdown()
        former.pool.clear()
    print(
        f"fan-out to one recipient host ({kind}) answering after {delay * 1000:.0f} ms; "
        f"former: {cfg.delivery.pool_size} threads; CPU: this process's:"
    )
    stats = {name: Stats.of(s) for name, s in samples.items()}
    for name, s in stats.items():
        figure(name, s, unit=ms, extra=f"CPU {variants[name].per_call * 1e6:7.0f} µs/message")
    for kind in ("Deliverer.deliver", "former threads"):
        one = stats[f"{kind}, 1 recipient"].median
        ratios = [f"{n}: {stats[f'{kind}, {n} recipients'].median / one:.2f}x" for n in WIDTHS[1:]]
        note(f"{kind}: p50 over 1 recipient's", ", ".join(ratios))


def main() -> None:
    cli = parser(__doc__)
    cli.add_argument("--calls", type=int, help="calls per variant (default 3000, quick 300)")
    cli.add_argument("--delay", type=float, default=0.0, help="recipient delay for fan-out, s")
    args = cli.parse_args()
    calls = args.calls or (300 if args.quick else 3000)
    rounds = 3 if args.quick else 10
    fan_calls = 30 if args.quick else 300
    header(
        "delivery: the relay's pool and fan-out vs the former, urllib3 and requests",
        calls=calls,
        rounds=rounds,
        fan_out_calls=fan_calls,
        delay=args.delay,
    )
    with open(os.devnull, "w") as sink, scratch("delivery") as tmp:
        deployment = make_pki(tmp / "pki")
        logs.configure("info", instance="bench", stream=sink)
        reader(calls * 10)
        per_call(deployment, calls, rounds)
        fan_out(deployment, tmp, fan_calls, rounds, args.delay)


if __name__ == "__main__":
    main()
