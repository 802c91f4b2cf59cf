"""A dishonest relay, for tests only: the real relay app inside a WSGI wrapper that
misbehaves on purpose. gunicorn serves it in place of ``dmr_appliance.relay.wsgi:app``
(``tests.support.dishonest_relay:app``, same gunicorn settings, same config); it lives
under tests/, so it is never part of the package or the .deb.

The relay holds a real relay certificate and key, real tokens and cards pass through it:
it can do anything a compromised relay can, and nothing more. What it does is read from
``$DMR_DISHONEST_DIR/mode`` at every request (one process serves every case of a test
module); every message it is handed is appended, as it came, to ``captured.jsonl`` there,
so that later misbehaviour can reuse earlier messages. ``mode`` holds one of:

honest                 pass through (also when the file is missing or empty)
alter-payload          change the payload of the incoming message before the relay reads it
swap-recipient         replace the first card with a card of another recipient captured
                       from an earlier message: the relay delivers to someone the sender
                       did not sign for
replay                 first re-send the last captured signed message under a new message
                       id (its answer swallowed), then pass the message through
drop-signature         remove the ``signature`` member
forge-receipt          replace each outcome's receipt with one it signs itself (the same
                       claims, the relay's own key and certificate)
forge-receipt-digest   change the digest in each outcome's receipt, keeping the recipient's
                       signature (the JWS no longer verifies)
forge-delivered        mark every outcome that was not delivered as delivered (200) with a
                       receipt: another recipient's genuine one, else one it signs itself;
                       the answer becomes a 200

Anything it cannot do (nothing captured to swap or replay) is a 599 answer, so that a test
never mistakes a misbehaviour that did not happen for one that was detected.
"""

from __future__ import annotations

import base64
import io
import json
import os
import threading
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization

from dmr_appliance import config, envelope, pki
from dmr_appliance.proof import receipt

CONTROL = "DMR_DISHONEST_DIR"
MODES = (
    "honest",
    "alter-payload",
    "swap-recipient",
    "replay",
    "drop-signature",
    "forge-receipt",
    "forge-receipt-digest",
    "forge-delivered",
)
ALTERED_PAYLOAD = {"text": "altered by the relay"}

StartResponse = Callable[..., Any]
_lock = threading.Lock()


def honest(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    """The real relay app, as gunicorn would serve it (made at the first request, so that
    importing this module, e.g. for ``CONTROL``, starts no relay)."""
    from dmr_appliance.relay.wsgi import app as relay  # the import lock makes it once

    return relay(environ, start_response)


class Unable(Exception):
    """The misbehaviour asked for cannot be done (nothing captured yet)."""


def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    if environ.get("REQUEST_METHOD") != "POST" or environ.get("PATH_INFO") != "/v1/messages":
        return honest(environ, start_response)
    mode = _mode()
    body = _read(environ)
    try:
        doc = json.loads(body)
    except ValueError:
        doc = None
    if not isinstance(doc, dict):  # not a message: the relay answers it
        return honest(_with_body(environ, body), start_response)
    try:
        return _misbehave(mode, environ, doc, body, start_response)
    except Unable as exc:
        start_response("599 Dishonest Relay Unable", [("Content-Type", "text/plain")])
        return [str(exc).encode()]


def _misbehave(
    mode: str, environ: dict, doc: dict, body: bytes, start_response: StartResponse
) -> Iterable[bytes]:
    earlier = _captured()
    _capture(body)
    if mode == "alter-payload":
        doc.pop("payload_b64", None)
        doc["payload"] = ALTERED_PAYLOAD
    elif mode == "swap-recipient":
        doc["to"] = [_other_card(doc["to"], earlier), *doc["to"][1:]]
    elif mode == "drop-signature":
        doc.pop("signature", None)
    elif mode == "replay":
        _replay(environ, earlier)
    if mode.startswith("forge-"):
        return _forged_answer(mode, environ, _encode(doc), start_response)
    return honest(_with_body(environ, _encode(doc)), start_response)


# --- the request ----------------------------------------------------------------------


def _read(environ: dict) -> bytes:
    length = int(environ.get("CONTENT_LENGTH") or 0)
    return environ["wsgi.input"].read(length) if length else b""


def _with_body(environ: dict, body: bytes) -> dict:
    return {**environ, "wsgi.input": io.BytesIO(body), "CONTENT_LENGTH": str(len(body))}


def _encode(doc: dict) -> bytes:
    return json.dumps(doc).encode()


def _card_subject(card: str) -> str | None:
    try:
        claims = json.loads(_unb64(card.split(".")[1]))
    except (IndexError, ValueError):
        return None
    return claims.get("sub") if isinstance(claims, dict) else None


def _other_card(cards: list[str], earlier: list[dict]) -> str:
    """The newest captured card of a recipient this message is not addressed to."""
    addressed = {_card_subject(c) for c in cards}
    for doc in reversed(earlier):
        for card in doc.get("to", []):
            subject = _card_subject(card)
            if subject and subject not in addressed and subject != doc.get("from"):
                return card
    raise Unable("swap-recipient: no card of another recipient captured yet")


def _replay(environ: dict, earlier: list[dict]) -> None:
    """The newest captured signed message, again, under a new id; its answer dropped."""
    old = next((d for d in reversed(earlier) if "signature" in d), None)
    if old is None:
        raise Unable("replay: no signed message captured yet")
    again = {**old, "id": envelope.new_message_id()}
    _capture(_encode(again), name="replayed.jsonl")
    answer = _Answer()
    b"".join(honest(_with_body(environ, _encode(again)), answer))


# --- the answer -----------------------------------------------------------------------


class _Answer:
    """A start_response that keeps what the relay answered."""

    def __init__(self) -> None:
        self.status = ""
        self.headers: list[tuple[str, str]] = []

    def __call__(self, status: str, headers: list, exc_info: Any = None) -> None:
        self.status, self.headers = status, list(headers)


def _forged_answer(
    mode: str, environ: dict, body: bytes, start_response: StartResponse
) -> Iterable[bytes]:
    answer = _Answer()
    text = b"".join(honest(_with_body(environ, body), answer))
    try:
        doc = json.loads(text)
    except ValueError:
        doc = None
    if not isinstance(doc, dict) or not isinstance(doc.get("outcomes"), list):
        start_response(answer.status, answer.headers)  # refused before any delivery
        return [text]
    if mode == "forge-delivered":
        status, doc = "200 OK", _all_delivered(doc)
    else:
        status = answer.status
        for outcome in doc["outcomes"]:
            if outcome.get("receipt"):
                outcome["receipt"] = _forge(mode, outcome["receipt"])
    out = json.dumps(doc).encode()
    headers = [
        (name, value)
        for name, value in answer.headers
        if name.lower() not in ("content-length", "content-type")
    ]
    start_response(
        status,
        [*headers, ("Content-Type", "application/json"), ("Content-Length", str(len(out)))],
    )
    return [out]


def _forge(mode: str, genuine: str) -> str:
    head, payload, sig = genuine.split(".")
    claims = json.loads(_unb64(payload))
    if mode == "forge-receipt-digest":
        claims["digest"] = "sha-256:" + _b64(b"\x00" * 32)
        return ".".join((head, _b64(json.dumps(claims).encode()), sig))
    return _signed_by_relay(claims)


def _all_delivered(doc: dict) -> dict:
    genuine = [o["receipt"] for o in doc["outcomes"] if o.get("receipt")]
    outcomes = []
    for outcome in doc["outcomes"]:
        if outcome.get("outcome") != "delivered":
            claims = {"id": doc.get("id"), "from": "", "to": outcome.get("to"), "digest": ""}
            outcome = {
                "to": outcome.get("to"),
                "outcome": "delivered",
                "status": 200,
                "ms": outcome.get("ms", 0),
                "receipt": genuine[0] if genuine else _signed_by_relay(claims),
            }
        outcomes.append(outcome)
    return {"id": doc.get("id"), "outcomes": outcomes}


def _signed_by_relay(claims: dict) -> str:
    cfg = config.load(config.RelayConfig, os.environ.get("DMR_CONFIG"))
    key = serialization.load_pem_private_key(cfg.tls.key.read_bytes(), None)
    cert = pki.load_certificate(cfg.tls.cert.read_bytes())
    return receipt.issue(
        message_id=str(claims.get("id")),
        sender=str(claims.get("from")),
        recipient=str(claims.get("to")),
        endpoint=str(claims.get("endpoint", "")),
        digest=str(claims.get("digest")),
        key=key,  # type: ignore[arg-type]
        cert=cert,
        now=datetime.now(UTC),
    )


# --- the control directory ------------------------------------------------------------


def _dir() -> Path:
    return Path(os.environ[CONTROL])


def _mode() -> str:
    try:
        mode = (_dir() / "mode").read_text().strip() or "honest"
    except FileNotFoundError:
        return "honest"
    if mode not in MODES:
        raise ValueError(f"unknown dishonest relay mode {mode!r}")
    return mode


def _capture(body: bytes, name: str = "captured.jsonl") -> None:
    with _lock, (_dir() / name).open("ab") as out:
        out.write(json.dumps(json.loads(body)).encode() + b"\n")


def _captured() -> list[dict]:
    path = _dir() / "captured.jsonl"
    with _lock:
        lines = path.read_text().splitlines() if path.exists() else []
    return [json.loads(line) for line in lines if line]


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")
