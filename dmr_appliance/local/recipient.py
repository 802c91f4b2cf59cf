"""A recipient endpoint: the local stack's demo recipient, and the tests' real one.

HTTPS on the standard library (``http.server`` + ``ssl``). Given the deployment CA it
requires a client certificate, so only relays of this deployment can deliver. Every
delivery is appended to a JSON-lines log (message id, room, sender, recipient path,
the relay's certificate name, the status answered, whether it was a duplicate).

Deduplication: a relay may deliver one message twice (the sender retries when it did
not hear the outcome, e.g. its relay died mid-answer), so a recipient must act on each
message once. A message is its sender's id (``X-DMR-From``, which the relay checked
against the sender's token): the same id from another sender is another message, never
a duplicate. The server keeps the (sender, id) pairs it has processed per recipient path
in a ``client.dedup.SeenIds`` store, each until the message's ``expires_at`` (no relay
delivers an expired message, so later copies cannot arrive), and answers a repeat with
the same 2xx, recorded as ``duplicate``, without acting on it again. With ``seen_path``
(``--seen FILE``) the store is SQLite on disk and survives a restart, the moment a
retried copy is most likely; without, it is in memory. ``--status`` and ``--delay``
make it answer like a failing or slow recipient, for tests and demos.

Proof (``dmr_appliance.recipient``): given the CA, it verifies every signed delivery for
the participant its path names (``/inbox/bob`` is bob's; never the body's ``to``, which a
relay controls), and with ``require_signatures`` every delivery. A refused one is
answered with its problem (422 for a bad signature) and recorded with its ``code``, but
not processed nor marked seen; an accepted signed one, duplicates included (a retried
copy needs its receipt too), is answered 2xx with a receipt (``DMR-Receipt``) signed with
the server's own certificate. Unsigned deliveries, where signatures are optional, are
taken as before. Each record says ``signed``, ``signature`` (verified, unsigned, refused,
or unchecked without a CA) and ``receipt``.
"""

from __future__ import annotations

import json
import socket
import ssl
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from dmr_appliance import tls_profile
from dmr_appliance.client.dedup import SeenIds
from dmr_appliance.envelope import EnvelopeLimits
from dmr_appliance.errors import DmrError
from dmr_appliance.proof.trust import Trust
from dmr_appliance.recipient import (
    HEADER,
    Accepted,
    ReceiptSigner,
    endpoint,
    path_recipient,
    verify_delivery,
)

MAX_BODY = 4 * 1024 * 1024
PROBLEM_JSON = "application/problem+json"
# It reads up to MAX_BODY, so it decodes as much: the relay's own limit is its config's.
_LIMITS = EnvelopeLimits(max_message_bytes=MAX_BODY)


class RecipientServer(ThreadingHTTPServer):
    """Threaded HTTPS server; ``status`` and ``delay`` may be changed while it runs."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(
        self,
        address: tuple[str, int],
        *,
        cert: Path,
        key: Path,
        ca: Path | None = None,
        log_path: Path | None = None,
        status: int = 200,
        delay: float = 0.0,
        seen_path: Path | None = None,
        crl: Path | None = None,
        require_signatures: bool = False,
    ) -> None:
        if ca is None and (crl is not None or require_signatures):
            raise ValueError("verifying signatures needs the deployment CA (ca)")
        super().__init__(address, RecipientHandler)
        context = tls_profile.apply(ssl.create_default_context(ssl.Purpose.CLIENT_AUTH))
        context.load_cert_chain(str(cert), str(key))
        if ca is not None:
            context.load_verify_locations(cafile=str(ca))
            context.verify_mode = ssl.CERT_REQUIRED
        # The handshake runs in the request's thread, not in the accept loop.
        self.socket = context.wrap_socket(
            self.socket, server_side=True, do_handshake_on_connect=False
        )
        # The relays' CA is the deployment's: the same one vouches for senders.
        self.trust = Trust.from_files(ca, crl) if ca is not None else None
        self.receipts = ReceiptSigner.from_files(cert, key) if ca is not None else None
        self.require_signatures = require_signatures
        self.status = status
        self.delay = delay
        self.dedup = SeenIds(seen_path if seen_path is not None else ":memory:")
        # Held while a delivery's id is marked seen and its record written, and by
        # server_close: a stop (SIGTERM) never leaves an id seen but its delivery unrecorded,
        # which would make the retried copy a "duplicate" of a delivery nobody processed.
        self.processing = threading.Lock()
        self.log_path = log_path
        self._log_lock = threading.Lock()

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def finish_request(self, request: Any, client_address: Any) -> None:
        try:
            request.do_handshake()
        except (ssl.SSLError, OSError):
            return  # a client without an acceptable certificate: nothing to serve
        super().finish_request(request, client_address)

    def server_close(self) -> None:
        super().server_close()
        with self.processing:  # later deliveries fail on the closed store, unmarked
            self.dedup.close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that hung up mid-request is not this server's error

    def record(self, entry: dict[str, Any]) -> None:
        if self.log_path is None:
            return
        line = json.dumps(entry, separators=(",", ":")) + "\n"
        with self._log_lock, open(self.log_path, "a", encoding="utf-8") as fh:
            fh.write(line)


class RecipientHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as relays expect
    # Headers and body leave as two writes; with Nagle on, the client's delayed ACK held
    # the body back ~40 ms per answer (benchmarks/delivery.py measured 44 ms a call).
    disable_nagle_algorithm = True
    server: RecipientServer

    def do_POST(self) -> None:  # http.server dispatches on this name
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            self._answer(413, {"error": "too large"})
            return
        raw = self.rfile.read(length)
        message = _json(raw)
        delay = self.server.delay  # read once: it may change while this one waits
        if delay:
            time.sleep(delay)
        try:
            accepted = self._verified(raw, message)
        except DmrError as refusal:
            self._refuse(message, refusal)
            return
        self._process(message, accepted, self.server.status)

    def _verified(self, raw: bytes, message: dict[str, Any]) -> Accepted | None:
        """The delivery checked for the participant this path names; None when it is not
        checked (no CA, or unsigned where signatures are optional: taken as before)."""
        server = self.server
        if server.trust is None or ("signature" not in message and not server.require_signatures):
            return None
        return verify_delivery(
            raw,
            path_recipient(self.path),
            server.trust,
            require_signature=server.require_signatures,
            limits=_LIMITS,
        )

    def _process(self, message: dict[str, Any], accepted: Accepted | None, status: int) -> None:
        if accepted is not None:  # what the signature covers, not what the relay says
            message_id, sender = accepted.message_id, accepted.sender
        else:
            message_id = self.headers.get("X-DMR-Message-Id") or str(message.get("id", ""))
            sender = self.headers.get("X-DMR-From") or str(message.get("from", ""))
        with self.server.processing:
            # Scoped by path: one server may stand for several recipients of one message.
            duplicate = 200 <= status < 300 and not self.server.dedup.first_time(
                message_id, message.get("expires_at"), sender=sender, scope=self.path
            )
            token = self._receipt(accepted) if 200 <= status < 300 else None
            entry = self._entry(message, message_id, sender, status)
            entry.update(duplicate=duplicate, **_verdict(message, accepted))
            self.server.record({**entry, "receipt": token is not None})
        headers = {HEADER: token} if token else {}
        self._answer(status, {"id": message_id, "duplicate": duplicate}, headers=headers)

    def _receipt(self, accepted: Accepted | None) -> str | None:
        if accepted is None or self.server.receipts is None:
            return None
        host = self.headers.get("Host") or "{}:{}".format(*self.server.server_address[:2])
        return self.server.receipts.issue(accepted, endpoint(host, self.path))

    def _refuse(self, message: dict[str, Any], refusal: DmrError) -> None:
        """Answered with its problem and recorded; never processed nor marked seen."""
        message_id = self.headers.get("X-DMR-Message-Id") or str(message.get("id", ""))
        sender = self.headers.get("X-DMR-From") or str(message.get("from", ""))
        entry = self._entry(message, message_id, sender, refusal.status)
        entry.update(
            duplicate=False,
            signed="signature" in message,
            signature="refused",
            code=refusal.code,
            receipt=False,
        )
        self.server.record(entry)
        self._answer(refusal.status, refusal.problem(), content_type=PROBLEM_JSON)

    def _entry(
        self, message: dict[str, Any], message_id: str, sender: str, status: int
    ) -> dict[str, Any]:
        return {
            "ts": time.time(),
            "id": message_id,
            "room": self.headers.get("X-DMR-Room"),
            "from": sender,
            "to": message.get("to"),
            "path": self.path,
            "relay": _peer_name(self.connection),
            "request_id": self.headers.get("X-Request-Id"),
            "status": status,
            "created_at": message.get("created_at"),
            "expires_at": message.get("expires_at"),
        }

    def _answer(
        self,
        status: int,
        doc: dict[str, Any],
        *,
        content_type: str = "application/json",
        headers: dict[str, str] | None = None,
    ) -> None:
        body = json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the JSON-lines log is the record


def _verdict(message: dict[str, Any], accepted: Accepted | None) -> dict[str, Any]:
    if accepted is not None:  # checked: only a signed delivery is accepted so
        return {"signed": True, "signature": "verified"}
    signed = "signature" in message
    return {"signed": signed, "signature": "unchecked" if signed else "unsigned"}


def _json(raw: bytes) -> dict[str, Any]:
    try:
        doc = json.loads(raw)
    except ValueError:
        return {}
    return doc if isinstance(doc, dict) else {}


def _peer_name(connection: socket.socket) -> str | None:
    cert = connection.getpeercert() if isinstance(connection, ssl.SSLSocket) else None
    for rdn in (cert or {}).get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return str(value)
    return None


def serve(server: RecipientServer) -> None:
    """Serve until interrupted; the first stdout line says where (for a parent process)."""
    host, port = server.server_address[:2]
    print(json.dumps({"event": "listening", "host": host, "port": port}), flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        sys.stdout.flush()
