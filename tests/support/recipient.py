"""A real HTTPS recipient for tests (``dmr_appliance.local.recipient``): in a thread of the test
process, or as its own process (``dmr recipient``) like the local stack runs it."""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization

from dmr_appliance import pki as pki_mod
from dmr_appliance.envelope import sender_envelope
from dmr_appliance.local.recipient import RecipientServer
from dmr_appliance.proof import signature
from tests.support.processes import Process


@contextmanager
def recipient_thread(pki, log_path: Path, **kwargs: Any) -> Iterator[RecipientServer]:
    """A recipient with the PKI's "recipient" server certificate, requiring a relay's."""
    server = RecipientServer(
        ("127.0.0.1", 0),
        cert=pki.cert("server", "recipient"),
        key=pki.key("server", "recipient"),
        ca=pki.ca,
        log_path=log_path,
        **kwargs,
    )
    with serving(server, poll_interval=0.05):
        yield server


@contextmanager
def serving(server: RecipientServer, poll_interval: float = 0.5) -> Iterator[RecipientServer]:
    """``server`` answering in a thread of this process until the block ends."""
    thread = threading.Thread(target=server.serve_forever, args=(poll_interval,), daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def recipient_process(pki, log_path: Path, *args: str) -> Iterator[int]:
    """``dmr recipient`` on a free port; yields the port."""
    argv = [
        sys.executable,
        "-m",
        "dmr_appliance",
        "recipient",
        "--bind",
        "127.0.0.1:0",
        "--cert",
        str(pki.cert("server", "recipient")),
        "--key",
        str(pki.key("server", "recipient")),
        "--ca",
        str(pki.ca),
        "--log",
        str(log_path),
        *args,
    ]
    process = Process(argv, log_path=log_path.with_suffix(".out")).start()
    try:
        process.wait_ready(lambda: bool(process.logs().strip()), timeout=20)
        yield int(json.loads(process.logs().splitlines()[0])["port"])
    finally:
        process.stop()


def received(log_path: Path) -> list[dict[str, Any]]:
    if not log_path.exists():
        return []
    return [json.loads(line) for line in log_path.read_text().splitlines() if line]


def signed_message(pki, sender: str = "alice", to: Any = ("bob",), **fields: Any) -> dict:
    """A sender's copy (``to``: recipient ids) signed with ``sender``'s participant key."""
    doc = sender_envelope(room="ops", sender=sender, to=list(to), payload={"n": 1}, **fields)
    key = serialization.load_pem_private_key(pki.key("participant", sender).read_bytes(), None)
    cert = pki_mod.load_certificate(pki.cert("participant", sender).read_bytes())
    doc["signature"] = signature.sign(doc, key, cert)
    return doc


def delivery(doc: dict, recipient: str) -> bytes:
    """The body a relay posts to ``recipient``: ``to`` holding it alone, encoded anew."""
    return json.dumps({**doc, "to": [recipient]}, separators=(",", ":")).encode()
