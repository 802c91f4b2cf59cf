"""Deliver a message to its recipients: concurrently, over kept-alive HTTPS, no retries.

One ``Deliverer`` per worker process: a ``connections.ConnectionPool`` (the relay's
certificate as client certificate, recipients verified against the deployment CA, one
TLS context built once) and a bounded thread pool shared by every request (a message to a single
recipient is delivered on the request's own thread). A request that cannot
get a slot for each of its recipients is refused before anything is sent (503), which
is what lets the router try another relay. The sender retries, so the relay does not.
"""

from __future__ import annotations

import http.client
import re
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_all
from dataclasses import dataclass

from dmr_appliance import envelope, logs
from dmr_appliance.config import RelayConfig
from dmr_appliance.errors import Unavailable
from dmr_appliance.proof import jws
from dmr_appliance.relay import delivery_body
from dmr_appliance.relay.connections import ConnectionPool, Reply
from dmr_appliance.relay.metrics import RelayMetrics
from dmr_appliance.relay.outbound import describe, tls_context
from dmr_appliance.wire.outcome import FAILED, Outcome, classify

# Admitted deliveries (running + queued) per delivery thread before the relay says 503.
QUEUE_FACTOR = 4
# A recipient's answer is read only this far; one that talks more loses its connection.
ANSWER_LIMIT = 64 * 1024
RECIPIENT_HOSTS = 256  # connection pools kept (one per recipient host:port)
MAX_RECEIPT_CHARS = jws.MAX_TOKEN_CHARS  # a longer one no sender would read
_JWS = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")

_log = logs.get_logger("dmr.relay.delivery")


@dataclass(frozen=True)
class Recipient:
    id: str
    endpoint: str


class Deliverer:
    """Fans one message out to its recipients on a shared, bounded thread pool."""

    def __init__(
        self,
        pool: ConnectionPool,
        *,
        threads: int,
        capacity: int | None = None,
        meters: RelayMetrics | None = None,
    ) -> None:
        self.pool = pool
        self.meters = meters if meters is not None else RelayMetrics()
        self.capacity = capacity if capacity is not None else threads * QUEUE_FACTOR
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="deliver")
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
        headers = self._headers(message, request_id)
        self._admit(len(recipients))
        if len(recipients) == 1:  # on the request's own thread: no hop, no wait
            try:
                return [self._guarded(message, recipients[0], parts, headers)]
            finally:
                self._release(None)
        futures = []
        for recipient in recipients:
            future = self._executor.submit(self._guarded, message, recipient, parts, headers)
            future.add_done_callback(self._release)
            futures.append(future)
        wait_all(futures)
        return [f.result() for f in futures]

    def close(self) -> None:
        self._executor.shutdown(wait=True)
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

    def _release(self, _future: Future[Outcome] | None) -> None:
        with self._lock:
            self._admitted -= 1
        self.meters.in_flight.dec()

    # --- one recipient -----------------------------------------------------------------

    def _guarded(
        self,
        message: envelope.Envelope,
        recipient: Recipient,
        parts: delivery_body.Parts,
        headers: dict[str, str],
    ) -> Outcome:
        try:
            return self._deliver_one(message, recipient, parts, headers)
        except Exception as exc:  # a bug in _deliver_one must not lose the other outcomes
            return Outcome(recipient.id, FAILED, None, 0.0, f"internal error: {exc!r}")

    def _deliver_one(
        self,
        message: envelope.Envelope,
        recipient: Recipient,
        parts: delivery_body.Parts,
        headers: dict[str, str],
    ) -> Outcome:
        started = time.perf_counter()
        status: int | None = None
        error: str | None = None
        receipt: str | None = None
        try:
            status, receipt = self._post(
                recipient.endpoint, delivery_body.for_recipient(parts, recipient.id), headers
            )
            outcome = classify(status)
        except (http.client.HTTPException, OSError, ValueError) as exc:
            outcome, error = FAILED, describe(exc)
        seconds = time.perf_counter() - started
        self.meters.delivery_duration.labels(outcome).observe(seconds)
        ms = round(seconds * 1000, 1)
        logs.log_event(
            _log,
            "delivery",
            message_id=message.id,
            room=message.room,
            sender=message.sender,
            to=recipient.id,
            status=status,
            ms=ms,
            outcome=outcome,
            error=error,
            request_id=headers["X-Request-Id"],
        )
        return Outcome(recipient.id, outcome, status, ms, error, receipt=passed_on(receipt))

    @staticmethod
    def _headers(message: envelope.Envelope, request_id: str) -> dict[str, str]:
        return {
            "Content-Type": "application/json",
            "X-DMR-Message-Id": message.id,
            "X-DMR-Room": message.room,
            "X-DMR-From": message.sender,
            "X-Request-Id": request_id,
        }

    def _post(self, url: str, body: bytes, headers: dict[str, str]) -> Reply:
        return self.pool.post(url, body, headers, answer_limit=ANSWER_LIMIT)


def passed_on(receipt: str | None) -> str | None:
    """A recipient's receipt as the relay lists it: unchanged, unless it cannot be a
    receipt at all (the sender verifies it; the relay only keeps its answer bounded)."""
    if receipt is None or len(receipt) > MAX_RECEIPT_CHARS or not _JWS.fullmatch(receipt):
        return None
    return receipt
