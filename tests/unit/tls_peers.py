"""Scripted HTTPS peers for the relay's delivery tests (test_connection_pool.py,
test_delivery_fanout.py): real TLS on loopback with the test PKI's certificates (a
relay's required of the client), each request answered as the test says."""

from __future__ import annotations

import dataclasses
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from dmr_appliance.relay.connections import ConnectionPool
from dmr_appliance.relay.outbound import tls_context
from tests.support.relay_kit import relay_config

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


@dataclasses.dataclass
class Request:
    head: bytes  # request line and headers, as received
    body: bytes
    first_read: bytes  # what the first receive of it returned (one TLS record)

    @property
    def path(self) -> str:
        return self.head.split(b" ", 2)[1].decode()

    def header(self, name: str) -> str | None:
        for line in self.head.split(b"\r\n")[1:]:
            key, _, value = line.partition(b":")
            if key.decode().lower() == name.lower():
                return value.strip().decode()
        return None


# An answer script: given the connection and the request, it sends what it likes; True
# closes the connection.
Script = Callable[[ssl.SSLSocket, Request], bool]


@dataclasses.dataclass
class Peer:
    url: str  # https://127.0.0.1:PORT
    connections: int = 0
    requests: list[Request] = dataclasses.field(default_factory=list)
    closed: threading.Event = dataclasses.field(default_factory=threading.Event)


def answer(data: bytes, close: bool = False) -> Script:
    """A script that sends ``data`` to every request."""

    def script(conn: ssl.SSLSocket, request: Request) -> bool:
        conn.sendall(data)
        return close

    return script


@contextmanager
def tls_peer(
    pki, script: Script, *, name: str = "recipient", handshake_delay: float = 0.0
) -> Iterator[Peer]:
    """A TLS server with the PKI's ``server/<name>`` certificate running ``script``."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(pki.ca))
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_cert_chain(pki.cert("server", name), pki.key("server", name))
    listener = socket.create_server(("127.0.0.1", 0), backlog=128)
    peer = Peer(f"https://127.0.0.1:{listener.getsockname()[1]}")

    def serve(raw: socket.socket) -> None:
        try:
            time.sleep(handshake_delay)
            with context.wrap_socket(raw, server_side=True) as conn:
                while (request := read_request(conn)) is not None:
                    peer.requests.append(request)
                    if script(conn, request):
                        break
        except OSError:
            pass  # the client went (a refused certificate, a timeout)
        finally:
            raw.close()
            peer.closed.set()

    def accept() -> None:
        while True:
            try:
                raw, _ = listener.accept()
            except OSError:
                return
            peer.connections += 1
            threading.Thread(target=serve, args=(raw,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield peer
    finally:
        listener.close()


def read_request(conn: ssl.SSLSocket) -> Request | None:
    data = first = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return None
        first = first or chunk
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    request = Request(head, body, first)
    length = int(request.header("Content-Length") or 0)
    while len(request.body) < length:
        request.body += conn.recv(65536)
    return request


@contextmanager
def silent_peer() -> Iterator[str]:
    """A TCP listener that accepts and never says anything (no TLS handshake)."""
    listener = socket.create_server(("127.0.0.1", 0), backlog=128)
    try:
        yield f"https://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        listener.close()


def free_url() -> str:
    """An https:// URL where nothing listens (connection refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"https://127.0.0.1:{s.getsockname()[1]}"


def make_pool(pki, tmp_path, **overrides) -> ConnectionPool:
    settings = {"per_host": 8, "hosts": 16, "connect_timeout": 2.0, "read_timeout": 5.0}
    context = tls_context(relay_config(pki, tmp_path).tls, check_hostname=True)
    return ConnectionPool(context, **{**settings, **overrides})
