"""A real server on loopback that answers what a test tells it to, for the home client's
and the sync agent's unit tests: status, headers, body and a delay before answering,
over HTTPS with a certificate of the test PKI (client certificate required, as a gate
or router asks) or over plain HTTP. It records every request it reads."""

from __future__ import annotations

import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


@dataclass
class Answer:
    status: int = 200
    body: bytes = b"{}"
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds before answering (longer than a client waits: a hang)


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


class AnsweringServer:
    """``with AnsweringServer(tls=(cert, key, ca)) as server: server.url``; set
    ``server.answer``; ``server.seen`` lists the requests read."""

    def __init__(self, tls: tuple[Path, Path, Path] | None = None) -> None:
        self.answer = Answer()
        self.seen: list[Request] = []
        context = None
        if tls is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(tls[0], tls[1])
            context.load_verify_locations(tls[2])
            context.verify_mode = ssl.CERT_REQUIRED
        self._server = _server(self, context)
        scheme = "https" if context is not None else "http"
        self.url = f"{scheme}://127.0.0.1:{self._server.server_address[1]}/v1"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> AnsweringServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


def _server(owner: AnsweringServer, context: ssl.SSLContext | None) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            pass

        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            owner.seen.append(
                Request(
                    self.command,
                    self.path,
                    dict(self.headers.items()),
                    self.rfile.read(length) if length else b"",
                )
            )
            answer = owner.answer
            time.sleep(answer.delay)
            self.send_response(answer.status)
            for name, value in {
                "Content-Type": "application/json",
                **answer.headers,
                "Content-Length": str(len(answer.body)),
            }.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(answer.body)

        do_GET = do_POST = do_DELETE = _answer

    class Server(ThreadingHTTPServer):
        daemon_threads = True  # a hanging answer never holds up the test's end

        def get_request(self) -> tuple[socket.socket, Any]:
            sock, addr = super().get_request()
            if context is None:
                return sock, addr
            # The handshake happens in the handler's thread, not in the accept loop.
            return context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), addr

        def handle_error(self, request: Any, client_address: Any) -> None:
            pass  # a client that hung up (a timeout, a refused peer) is the test's point

    return Server(("127.0.0.1", 0), Handler)
