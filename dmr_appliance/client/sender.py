"""``Sender``: send a message through the routers, retry, fail over, report what failed (ADR-009).

Per router, up to ``policy.attempts`` tries with full-jitter backoff (never sooner than a
``Retry-After``); then the next router in the list. Every try carries the same envelope
(same id, ``created_at``, ``expires_at``) with the cards of the recipients still
pending: not those already delivered, nor those refused for good (4xx but 408/429).
When the routers are spent or the message is about to expire, the recipients still
pending are ``failed``: the sender reports the message to home (``POST /v1/failures``,
with every attempt and the envelope without cards, spooled locally while home is down)
and calls ``on_failure`` once. Nothing is dropped silently.

Tries that cost no attempt: one token renewal after a 401 per message, one card refresh
per recipient after a ``card-*`` refusal, and a narrower resend after a refusal naming
one recipient (``to[i]``); each shrinks a finite set, so a send always ends.

Signed by default (issue 26, ``client/receipts.py``): each message carries the sender's
signature, and a delivery counts only with a receipt that verifies, when it has one (or
always, with ``require_receipts``); a receipt refused is a failed delivery, retried.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests
from requests.adapters import HTTPAdapter

from dmr_appliance import logs, pki
from dmr_appliance.client.answers import Answer, no_answer, read_answer
from dmr_appliance.client.credentials import CardCache, TokenSource
from dmr_appliance.client.receipts import ReceiptCheck, Signer, card_endpoint
from dmr_appliance.client.reports import Reporter
from dmr_appliance.client.result import Attempt, RecipientOutcome, SendResult
from dmr_appliance.envelope import sender_envelope, with_cards
from dmr_appliance.errors import DmrError
from dmr_appliance.proof.receipt import Receipt
from dmr_appliance.proof.signature import signed_digest
from dmr_appliance.proof.trust import Trust
from dmr_appliance.timefmt import format_time, parse_time
from dmr_appliance.wire import mtls
from dmr_appliance.wire.home import HomeClient
from dmr_appliance.wire.outcome import DELIVERED, FAILED, REJECTED, Outcome, transient
from dmr_appliance.wire.retry import RetryPolicy

DEFAULT_TIMEOUT = (3.05, 30.0)  # connect, read: the read outlasts a relay's own deliveries
HOME_TIMEOUT = 5.0
EXPIRY_MARGIN = 1.0  # seconds: a message this close to expires_at is not sent any more
FLUSH_EVERY = 30.0  # seconds between tries to empty the report spool
MAX_REPORTED_ATTEMPTS = 100  # home keeps at most this many attempts per report

DEFAULT_POLICY = RetryPolicy()  # 3 tries per router, 0.2 s base, full jitter

_log = logs.get_logger("dmr.sender")

OnFailure = Callable[[SendResult], Any]


class Sender:
    """Sends messages as the participant whose certificate it holds. Thread-safe."""

    def __init__(
        self,
        routers: Sequence[str],
        *,
        cert: Path | str,
        key: Path | str,
        ca: Path | str,
        home: HomeClient | str | None = None,
        policy: RetryPolicy = DEFAULT_POLICY,
        on_failure: OnFailure | None = None,
        ttl: int = 300,
        timeout: float | tuple[float, float] = DEFAULT_TIMEOUT,
        spool: Path | str | None = None,
        connections: int = 16,
        sign: bool = True,
        crl: Path | str | None = None,
        require_receipts: bool = False,
    ) -> None:
        if not routers:
            raise ValueError("a Sender needs at least one router URL")
        self.routers = [r.rstrip("/") for r in routers]
        self.participant = pki.certificate_name(pki.load_certificate(Path(cert).read_bytes()))
        self.policy = policy
        self.on_failure = on_failure
        self.ttl = ttl
        self.timeout = timeout
        # Signing and receipts: key, certificate, CA and CRL read once, not per message.
        self.signer = Signer.from_files(cert, key) if sign else None
        self.trust = Trust.from_files(ca, crl) if sign else None
        self.require_receipts = require_receipts
        self._sessions = {r: _session(cert, key, ca, connections) for r in self.routers}
        if not isinstance(home, HomeClient):  # default: home's API through each router
            home = HomeClient(
                home or [f"{r}/v1/home" for r in self.routers],
                cert=cert,
                key=key,
                ca=ca,
                timeout=HOME_TIMEOUT,
                session=_session(cert, key, ca, connections),
            )
        self.home = home
        self.tokens = TokenSource(home)
        self.cards = CardCache(home)
        self.reporter = Reporter(home, spool=spool)
        self._last_flush = 0.0

    def send(
        self,
        room: str,
        to: Sequence[str],
        payload: Any = None,
        *,
        payload_b64: str | None = None,
        content_type: str = "application/json",
        headers: Mapping[str, str] | None = None,
        message_id: str | None = None,
    ) -> SendResult:
        """Deliver to every recipient in ``to`` (participant ids); see the module doc.

        Raises ``DmrError`` only for a message that could never be sent (bad room,
        recipient id, payload); every other outcome is in the ``SendResult``.
        """
        envelope = sender_envelope(
            room=room,
            sender=self.participant,
            to=to,
            payload=payload,
            payload_b64=payload_b64,
            content_type=content_type,
            headers=headers,
            ttl=self.ttl,
            message_id=message_id,
        )  # recipient ids; each try adds cards
        if self.signer is not None:  # before any try: every try carries the same signature
            envelope["signature"] = self.signer.sign(envelope)
        result = _Delivery(self, envelope).run()
        if result.failed:
            self._fail(result, envelope)
        else:
            last = result.attempts[-1].target if result.attempts else None
            logs.log_event(
                _log,
                "send.done",
                message_id=result.message_id,
                room=room,
                attempt=len(result.attempts),
                target=last,
                outcome=DELIVERED if result.ok else REJECTED,
                delivered=len(result.delivered),
                rejected=result.rejected or None,
            )
        self._maybe_flush()
        return result

    def flush_reports(self) -> int:
        """Send failure reports spooled while home was down; returns how many left the spool."""
        self._last_flush = time.monotonic()
        return self.reporter.flush()

    def close(self) -> None:
        for session in self._sessions.values():
            session.close()
        self.home.session.close()

    def __enter__(self) -> Sender:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- one try ---------------------------------------------------------------------------

    def post(self, router: str, envelope: dict[str, Any], token: str) -> Answer:
        body = json.dumps(envelope, separators=(",", ":"), ensure_ascii=False).encode()
        try:
            resp = self._sessions[router].post(
                f"{router}/v1/messages",
                data=body,
                timeout=self.timeout,
                headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
            )
        except requests.RequestException as exc:
            return no_answer(exc)
        with resp:
            return read_answer(resp)

    # -- failure ---------------------------------------------------------------------------

    def _fail(self, result: SendResult, envelope: dict[str, Any]) -> None:
        report = failure_report(envelope, result, self.participant)
        result.reported, result.spooled, result.report_error = self.reporter.report(report)
        last = result.attempts[-1].target if result.attempts else None
        logs.log_event(
            _log,
            "send.failed",
            logging.ERROR,
            message_id=result.message_id,
            room=result.room,
            attempt=len(result.attempts),
            target=last,
            outcome=FAILED,
            to=result.failed,
            rejected=result.rejected or None,
            expired=result.expired,
            reported=result.reported,
            spooled=result.spooled,
        )
        if self.on_failure is None:
            return
        try:
            self.on_failure(result)
        except Exception:  # the caller's bug must not turn a reported failure into a crash
            logs.log_event(
                _log,
                "send.on-failure-raised",
                logging.ERROR,
                message_id=result.message_id,
                exc_info=True,
            )

    def _maybe_flush(self) -> None:
        spool = self.reporter.spool
        if spool is None or time.monotonic() - self._last_flush < FLUSH_EVERY:
            return
        self._last_flush = time.monotonic()
        if spool.exists() and spool.stat().st_size:
            self.reporter.flush()


class _Delivery:
    """The tries for one message: state and decisions, in the order they happen."""

    def __init__(self, sender: Sender, envelope: dict[str, Any]) -> None:
        self.sender = sender
        self.envelope = envelope
        self.expires_at = parse_time(envelope["expires_at"]).timestamp()
        self.pending: list[str] = list(envelope["to"])
        self.result = SendResult(
            envelope["id"], envelope["room"], {pid: RecipientOutcome(pid) for pid in self.pending}
        )
        self.check: ReceiptCheck | None = None
        if "signature" in envelope and sender.trust is not None:
            self.result.signed, self.result.digest = True, signed_digest(envelope)
            self.result.envelope = envelope
            self.check = ReceiptCheck(
                sender.trust,
                envelope["id"],
                self.result.digest,
                sender.require_receipts,
                sender=sender.participant,
            )
        self.receipts: dict[str, Receipt] = {}  # verified, by recipient
        self.token: str | None = None
        self.token_renewed = False
        self.cards_refreshed: set[str] = set()

    def run(self) -> SendResult:
        for index, router in enumerate(self.sender.routers):
            if not self.pending or self.result.expired:
                break
            if index:
                logs.log_event(
                    _log,
                    "send.failover",
                    logging.WARNING,
                    **self._fields(router),
                    outcome=FAILED,
                    previous=self.sender.routers[index - 1],
                    to=self.pending,
                )
            self._on_router(router)
        return self.result

    def _on_router(self, router: str) -> None:
        policy, tries = self.sender.policy, 0
        while tries < policy.attempts and self.pending:
            if self._expiring(0.0):
                return
            answer, carried = self._attempt(router)
            if self._settle(answer, carried) == "again":
                continue
            tries += 1
            if not self.pending or self.result.expired or tries >= policy.attempts:
                return
            delay = policy.delay(tries, answer.retry_after)
            if self._expiring(delay):
                return
            logs.log_event(
                _log,
                "send.retry",
                **self._fields(router),
                outcome=self.result.attempts[-1].outcome if self.result.attempts else FAILED,
                delay=round(delay, 3),
                to=self.pending,
            )
            time.sleep(delay)

    def _attempt(self, router: str) -> tuple[Answer, list[str]]:
        cards = self._cards()
        if not self.pending:
            return Answer(None), []  # every recipient refused by home: nothing to send
        carried = list(cards)
        at, started = datetime.now(UTC), time.monotonic()
        target, answer = self._post(router, cards)
        if self.check is not None:  # the endpoint of the very card each recipient had here
            endpoints = {pid: card_endpoint(card) for pid, card in cards.items()}
            answer, self.receipts = self.check.answer(answer, carried, endpoints)
        self._record(target, at, answer, carried, time.monotonic() - started)
        return answer, carried

    def _post(self, router: str, cards: dict[str, str]) -> tuple[str, Answer]:
        """(where the try ended, its answer): home when no card or token could be had."""
        home = self.sender.home.base_url
        if not cards:
            return home, Answer(
                None,
                code="no-card",
                detail="no address card for any pending recipient: home is unreachable",
            )
        try:
            self.token = self.sender.tokens.get()
        except DmrError as exc:
            if not transient(exc):  # home refuses this sender itself (suspended, revoked)
                return home, Answer(
                    exc.status, code=exc.code, detail=f"access token refused: {exc.detail}"
                )
            return home, Answer(None, code=exc.code, detail=f"no access token: {exc.detail}")
        return router, self.sender.post(
            router, with_cards(self.envelope, cards.values()), self.token
        )

    def _cards(self) -> dict[str, str]:
        """Cards of the pending recipients; a recipient home refuses is rejected here."""
        found: dict[str, str] = {}
        for pid in list(self.pending):
            try:
                found[pid] = self.sender.cards.get(pid)
            except DmrError as exc:
                if transient(exc):
                    self._outcome(
                        Outcome(pid, FAILED, None, error=f"address card: {exc.code}: {exc.detail}")
                    )
                else:
                    self._outcome(
                        Outcome(
                            pid,
                            REJECTED,
                            exc.status,
                            error=f"address card refused by home: {exc.code}: {exc.detail}",
                        )
                    )
        return found

    def _settle(self, answer: Answer, carried: list[str]) -> str:
        """Apply ``answer`` to the recipients it covers; "again" retries at no attempt's cost."""
        if answer.token_refused and not self.token_renewed and self.token:
            self.token_renewed = True
            self.sender.tokens.invalidate(self.token)
            return "again"
        if answer.expired:  # clocks disagree: the relay saw it expire before we did
            self.result.expired = True
            for pid in carried:
                self._outcome(
                    Outcome(pid, FAILED, answer.status, error=f"expired: {answer.summary()}")
                )
            return "next"
        if answer.outcomes:
            for pid in carried:
                self._outcome(
                    answer.outcomes.get(pid)
                    or Outcome(pid, FAILED, None, error="missing from the relay's answer")
                )
            return "next"
        if answer.refuses_one_recipient and answer.recipient_index < len(carried):
            return self._refuse_one(answer, carried[answer.recipient_index])
        for pid in carried:
            self._outcome(Outcome(pid, answer.outcome, answer.status, error=answer.summary()))
        return "next"

    def _refuse_one(self, answer: Answer, pid: str) -> str:
        if answer.code.startswith("card-") and pid not in self.cards_refreshed:
            self.cards_refreshed.add(pid)  # e.g. expired or signed by a retired key
            self.sender.cards.forget(pid)
        else:
            self._outcome(Outcome(pid, REJECTED, answer.status, error=answer.summary()))
        return "again"

    def _outcome(self, got: Outcome) -> None:
        """A recipient's latest outcome; one that did not fail is settled."""
        proof = self.receipts.get(got.to) if got.outcome == DELIVERED else None
        self.result.recipients[got.to].settle(got, proof)
        if got.outcome != FAILED and got.to in self.pending:
            self.pending.remove(got.to)

    def _record(
        self, target: str, at: datetime, answer: Answer, carried: list[str], seconds: float
    ) -> None:
        outcome = answer.outcome
        attempt = Attempt(
            len(self.result.attempts) + 1,
            target,
            at,
            outcome,
            answer.status,
            answer.summary() or outcome,
            tuple(carried),
            round(seconds * 1000, 1),
        )
        self.result.attempts.append(attempt)
        for pid in carried:
            self.result.recipients[pid].attempts += 1
        level = logging.INFO if outcome == DELIVERED else logging.WARNING
        logs.log_event(
            _log,
            "send.attempt",
            level,
            **self._fields(target),
            outcome=outcome,
            status=answer.status,
            ms=attempt.ms,
            to=list(carried),
            detail=None if outcome == DELIVERED else attempt.detail,
            request_id=answer.request_id,
        )

    def _expiring(self, delay: float) -> bool:
        """True (and the message marked expired) if it cannot be sent after ``delay``."""
        if time.time() + delay < self.expires_at - EXPIRY_MARGIN:
            return False
        self.result.expired = True
        for pid in self.pending:
            entry = self.result.recipients[pid]
            entry.reason = f"expired before delivery; last: {entry.reason}"
        return True

    def _fields(self, target: str) -> dict[str, Any]:
        return {
            "message_id": self.result.message_id,
            "attempt": len(self.result.attempts),
            "target": target,
            "room": self.result.room,
            "sender": self.sender.participant,
        }


def failure_report(envelope: dict[str, Any], result: SendResult, sender: str) -> dict[str, Any]:
    """Home's ``POST /v1/failures`` body: the failed recipients, every attempt, the envelope
    with recipient ids instead of cards (what an operator needs to act on it)."""
    attempts = [a.for_report() for a in result.attempts[-MAX_REPORTED_ATTEMPTS:]]
    if not attempts:  # nothing could even be tried: say so rather than report no attempt
        attempts = [
            {
                "target": "sender",
                "at": format_time(datetime.now(UTC)),
                "outcome": FAILED,
                "status": None,
                "detail": "no attempt was possible",
            }
        ]
    return {
        "message_id": result.message_id,
        "room": result.room,
        "from": sender,
        "to": result.failed,
        "attempts": attempts,
        "envelope": envelope,
        "reported_at": format_time(datetime.now(UTC)),
    }


def _session(
    cert: Path | str, key: Path | str, ca: Path | str, connections: int
) -> requests.Session:
    """Kept-alive mutual TLS to one router. No hidden retries: we count them."""
    session = mtls.session(ca, cert, key)
    session.mount(
        "https://", HTTPAdapter(pool_connections=1, pool_maxsize=connections, max_retries=0)
    )
    return session
