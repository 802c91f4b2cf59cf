"""A programmable HTTPS upstream for router tests: answers what the test tells it to.

It stands where a relay or home stands (TLS with a certificate of the deployment CA,
client certificate required, like gunicorn in ``serving.py``) and records every request
it sees, so a test can tell which upstream answered and how often. The router's failover
rules (connection refused, a relay's 503, a timeout) are about nginx, not about what a
relay does, so they are tested against these; the header and end-to-end checks use the
real relay and home.
"""

from __future__ import annotations

import json
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    peer_cert_subject: Any


@dataclass
class Behaviour:
    status: int = 200
    delay: float = 0.0
    body: dict[str, Any] = field(default_factory=dict)


class FakeUpstream:
    """``with FakeUpstream(name, cert, key, ca) as up: up.port``; ``up.seen`` lists requests."""

    def __init__(self, name: str, cert: Path, key: Path, ca: Path, port: int = 0) -> None:
        self.name = name
        self.behaviour = Behaviour()
        self.seen: list[Seen] = []
        self._lock = threading.Lock()
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        context.load_verify_locations(ca)
        context.verify_mode = ssl.CERT_REQUIRED
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                headers = {k.lower(): v for k, v in self.headers.items()}
                seen = Seen(
                    self.command,
                    self.path,
                    headers,
                    body,
                    self.connection.getpeercert().get("subject"),
                )
                with upstream._lock:
                    upstream.seen.append(seen)
                    behaviour = upstream.behaviour
                if behaviour.delay:
                    time.sleep(behaviour.delay)
                doc = {
                    "upstream": upstream.name,
                    "path": self.path,
                    "client_cert_header": self.headers.get("X-DMR-Client-Cert"),
                    "request_id": self.headers.get("X-Request-Id"),
                    **behaviour.body,
                }
                data = json.dumps(doc).encode()
                self.send_response(behaviour.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.send_header("X-Request-Id", "from-upstream")
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _answer

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            allow_reuse_address = True

            def get_request(self) -> tuple[socket.socket, Any]:
                sock, addr = super().get_request()
                sock.settimeout(10)
                # The handshake happens in the handler's thread, not in the accept loop.
                tls = context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
                return tls, addr

            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # a refused handshake is a test's business, not noise

        self._server = Server(("127.0.0.1", port), Handler)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def set(self, status: int = 200, delay: float = 0.0, **body: Any) -> None:
        with self._lock:
            self.behaviour = Behaviour(status, delay, body)

    def start(self) -> FakeUpstream:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> FakeUpstream:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
