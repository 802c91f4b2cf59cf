"""The relay's metrics: requests, messages and deliveries by outcome, delivery latency,
refusals by problem code, deliveries in flight, and the sync document's version and age.

Every process of an instance writes its own (``dmr_appliance.metrics``): the workers
count the request path, the sync agent the time it last heard from home. The agent's
heartbeat reports the instance's totals from the same values a scrape reads.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import Metric

from dmr_appliance import __version__, metrics
from dmr_appliance.config import RelayConfig
from dmr_appliance.relay.sync_state import SyncState
from dmr_appliance.wire.outcome import DELIVERED, FAILED, REJECTED

OUTCOMES = (DELIVERED, REJECTED, FAILED)
CONFIRMED = "dmr_relay_sync_confirmed_timestamp_seconds"
IN_FLIGHT = "dmr_relay_deliveries_in_flight"


class RelayMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        reg = self.registry
        self.requests = metrics.RequestMetrics("dmr_relay", reg)
        self.messages = Counter(
            "dmr_relay_messages",
            "Messages that reached delivery, by their answer's outcome "
            "(delivered: 200, rejected: 422, failed: 502).",
            ("outcome",),
            registry=reg,
        )
        self.deliveries = Counter(
            "dmr_relay_deliveries",
            "Deliveries to recipients, by outcome.",
            ("outcome",),
            registry=reg,
        )
        self.delivery_duration = Histogram(
            "dmr_relay_delivery_duration_seconds",
            "Time of one delivery to a recipient (connect, send, answer), by outcome.",
            ("outcome",),
            buckets=metrics.LATENCY_BUCKETS,
            registry=reg,
        )
        self.refusals = Counter(
            "dmr_relay_refusals",
            "Messages refused before any delivery, by problem code.",
            ("problem",),
            registry=reg,
        )
        self.in_flight = Gauge(
            IN_FLIGHT,
            "Deliveries admitted and not yet finished.",
            registry=reg,
            multiprocess_mode="livesum",
        )
        self.sync_confirmed = Gauge(
            CONFIRMED,
            "When the sync agent last heard from home that its document is "
            "current (a long poll answered 200 or 304), in Unix time.",
            registry=reg,
            multiprocess_mode="max",
        )
        self.sync_refused = Counter(
            "dmr_relay_sync_refused",
            "Home URLs and sync documents the sync agent refused, "
            "by reason (not-home, older, unsigned, signer-unknown, bad-signature, ...).",
            ("reason",),
            registry=reg,
        )
        for outcome in OUTCOMES:  # every series exists from the start: rate() sees its 0
            self.messages.labels(outcome)
            self.deliveries.labels(outcome)
            self.delivery_duration.labels(outcome)

    def exposition(self, state: SyncState, cfg: RelayConfig) -> metrics.Exposition:
        return metrics.Exposition(self.registry, lambda found: live(found, state, cfg))

    def totals(self) -> dict[str, int]:
        """The instance's counts, for its heartbeat (home's status page charts them)."""
        found = metrics.Exposition(self.registry).collect()
        messages = metrics.sample_values(found, "dmr_relay_messages_total", "outcome")
        deliveries = metrics.sample_values(found, "dmr_relay_deliveries_total", "outcome")
        refused = metrics.sample_values(found, "dmr_relay_refusals_total", "problem")
        counts = {"messages": sum(messages.values()), "refused": sum(refused.values())}
        counts.update({o: deliveries.get(o, 0.0) for o in OUTCOMES})
        return {k: int(v) for k, v in counts.items()}


def in_flight(directory: Path) -> float:
    """Deliveries in flight in a running instance, summed over the live workers' values
    in its metrics ``directory`` (0 without any): what ``dmr relay drain`` waits on."""
    if not directory.is_dir():
        return 0.0
    return sum(metrics.sample_values(metrics.read_directory(directory), IN_FLIGHT, "").values())


def live(found: list[Metric], state: SyncState, cfg: RelayConfig) -> Iterable[Metric]:
    """What the scraping worker knows itself: its sync document and how old it is, its
    certificates' expiry."""
    snapshot = state.snapshot
    yield metrics.gauge(
        "dmr_relay_info",
        "The relay instance and its package version.",
        1,
        relay=cfg.instance,
        version=__version__,
    )
    yield metrics.gauge(
        "dmr_relay_ready", "1 when a sync document is held.", int(snapshot is not None)
    )
    yield metrics.gauge(
        "dmr_relay_sync_version",
        "Version of the sync document in use (-1: none).",
        snapshot.version if snapshot else -1,
    )
    confirmed = max(metrics.sample_values(found, CONFIRMED, "").values(), default=0.0)
    if confirmed > 0:
        yield metrics.gauge(
            "dmr_relay_sync_age_seconds",
            "Seconds since the sync agent last heard from home that the document is current.",
            max(0.0, time.time() - confirmed),
        )
    yield from metrics.certificate_expiry(cfg.tls)
