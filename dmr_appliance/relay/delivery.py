"""Deliver a message to its recipients: concurrently, over kept-alive HTTPS, no retries.

One ``Deliverer`` per worker process, holding a ``connections.ConnectionPool`` (the
relay's certificate as client certificate, recipients verified against the deployment CA,
one TLS context built once). A message to one recipient is delivered on the request's own
thread with blocking reads; to several, on the same thread too, every request written and
every answer read on non-blocking sockets (``relay/fanout.py``): no thread per recipient.
A request that cannot get a slot for each of its recipients is refused before anything is
sent (503), which is what lets the router try another relay. The sender retries, so the
relay does not.
"""

from __future__ import annotations

import http.client
import re
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

from dmr_appliance import envelope
from dmr_appliance.config import RelayConfig
from dmr_appliance.errors import Unavailable
from dmr_appliance.proof import jws
from dmr_appliance.relay import delivery_body, fanout, http1
from dmr_appliance.relay.connections import ConnectionPool, Reply
from dmr_appliance.relay.metrics import RelayMetrics
from dmr_appliance.relay.outbound import describe, tls_context
from dmr_appliance.wire.outcome import FAILED, Outcome, classify

# Admitted deliveries (running at once) per configured ``pool_size`` before the relay
# says 503: the bound the former thread pool's threads and queue set, kept.
QUEUE_FACTOR = 4
# A recipient's answer is read only this far; one that talks more loses its connection.
ANSWER_LIMIT = 64 * 1024
RECIPIENT_HOSTS = 256  # connection pools kept (one per recipient host:port)
MAX_RECEIPT_CHARS = jws.MAX_TOKEN_CHARS  # a longer one no sender would read
_JWS = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")
# What a failed POST may raise that means "no answer" (anything else is a bug of ours).
_TRANSPORT = (http.client.HTTPException, OSError, ValueError)


@dataclass(frozen=True)
class Recipient:
    id: str
    endpoint: str


class Deliverer:
    """Fans one message out to its recipients on the caller's thread, within a bound on
    the deliveries in flight across the worker's threads."""

    def __init__(
        self,
        pool: ConnectionPool,
        *,
        threads: int,
        capacity: int | None = None,
        meters: RelayMetrics | None = None,
    ) -> None:
        """``threads``: the configured ``pool_size`` (once the delivery threads' count);
        at most ``capacity`` (default ``QUEUE_FACTOR`` times it) deliveries in flight."""
        self.pool = pool
        self.meters = meters if meters is not None else RelayMetrics()
        self.capacity = capacity if capacity is not None else threads * QUEUE_FACTOR
        self._admitted = 0
        self._lock = threading.Lock()

    @classmethod
    def from_config(cls, config: RelayConfig, meters: RelayMetrics | None = None) -> Deliverer:
        d = config.delivery
        pool = ConnectionPool(
            tls_context(config.tls, check_hostname=True),
            per_host=d.per_host_connections,
            hosts=RECIPIENT_HOSTS,
            connect_timeout=d.connect_timeout,
            read_timeout=d.read_timeout,
        )
        return cls(pool, threads=d.pool_size, meters=meters)

    @property
    def in_flight(self) -> int:
        return self._admitted

    def deliver(
        self, message: envelope.Envelope, recipients: Sequence[Recipient], request_id: str
    ) -> list[Outcome]:
        """Every recipient's outcome, in order; ``Unavailable`` (503) if none was attempted."""
        # Encoded once per message: each recipient's body differs only in ``to``.
        parts = delivery_body.parts(message)
        try:
            headers = http1.header_block(self._headers(message, request_id))
        except ValueError as exc:  # nothing of it can be sent (as http.client refused it)
            return [self._outcome(r, None, exc, 0.0) for r in recipients]
        self._admit(len(recipients))
        try:
            if len(recipients) == 1:  # blocking reads: the cheapest for one
                return [self._deliver_one(recipients[0], parts, headers)]
            return self._fan_out(recipients, parts, headers)
        finally:
            self._release(len(recipients))

    def close(self) -> None:
        self.pool.clear()

    # --- admission -------------------------------------------------------------------

    def _admit(self, count: int) -> None:
        with self._lock:
            # An idle relay takes any message, even one with more recipients than its
            # capacity: otherwise such a message would be refused with 503 forever.
            if self._admitted and self._admitted + count > self.capacity:
                raise Unavailable(
                    f"delivery queue full ({self._admitted} of {self.capacity} in flight)",
                    code="overloaded",
                    title="Relay overloaded",
                )
            self._admitted += count
        self.meters.in_flight.inc(count)

    def _release(self, count: int) -> None:
        with self._lock:
            self._admitted -= count
        self.meters.in_flight.dec(count)

    # --- delivering ------------------------------------------------------------------

    def _deliver_one(
        self, recipient: Recipient, parts: delivery_body.Parts, headers: bytes
    ) -> Outcome:
        started = time.perf_counter()
        reply: Reply | None = None
        error: BaseException | None = None
        try:
            reply = self._post(
                recipient.endpoint, delivery_body.for_recipient(parts, recipient.id), headers
            )
        except Exception as exc:  # a bug of ours must not lose the outcome either
            error = exc
        return self._outcome(recipient, reply, error, time.perf_counter() - started)

    def _fan_out(
        self, recipients: Sequence[Recipient], parts: delivery_body.Parts, headers: bytes
    ) -> list[Outcome]:
        posts = [(r.endpoint, delivery_body.for_recipient(parts, r.id)) for r in recipients]
        started = time.perf_counter()
        try:
            results = fanout.post_all(self.pool, posts, headers, answer_limit=ANSWER_LIMIT)
        except Exception as exc:  # a bug of ours: every recipient failed, none lost
            seconds = time.perf_counter() - started
            results = [fanout.Result(None, exc, seconds) for _ in recipients]
        return [
            self._outcome(r, result.reply, result.error, result.seconds)
            for r, result in zip(recipients, results, strict=True)
        ]

    def _outcome(
        self,
        recipient: Recipient,
        reply: Reply | None,
        error: BaseException | None,
        seconds: float,
    ) -> Outcome:
        """The recipient's outcome, measured (the message's log line lists it)."""
        if reply is not None:
            outcome, status, why = classify(reply.status), reply.status, None
        else:
            outcome, status = FAILED, None
            why = describe(error) if isinstance(error, _TRANSPORT) else f"internal error: {error!r}"
        self.meters.delivery_duration.labels(outcome).observe(seconds)
        receipt = passed_on(reply.receipt) if reply is not None else None
        return Outcome(
            recipient.id, outcome, status, round(seconds * 1000, 1), why, receipt=receipt
        )

    @staticmethod
    def _headers(message: envelope.Envelope, request_id: str) -> dict[str, str]:
        return {
            "Content-Type": "application/json",
            "X-DMR-Message-Id": message.id,
            "X-DMR-Room": message.room,
            "X-DMR-From": message.sender,
            "X-Request-Id": request_id,
        }

    def _post(self, url: str, body: bytes, headers: dict[str, str] | bytes) -> Reply:
        """One POST as the relay makes it (``headers`` a mapping, or encoded once)."""
        return self.pool.post(url, body, headers, answer_limit=ANSWER_LIMIT)


def passed_on(receipt: str | None) -> str | None:
    """A recipient's receipt as the relay lists it: unchanged, unless it cannot be a
    receipt at all (the sender verifies it; the relay only keeps its answer bounded)."""
    if receipt is None or len(receipt) > MAX_RECEIPT_CHARS or not _JWS.fullmatch(receipt):
        return None
    return receipt
