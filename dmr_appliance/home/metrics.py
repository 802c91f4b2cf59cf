"""Home's metrics: requests by route and status with their latency (middleware), and the
long polls waiting; everything else (participants, instances, failures, sync version,
certificates, the newest backup's age) is read when scraped (resources/health.py)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Gauge

from dmr_appliance import metrics


class HomeMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.requests = metrics.RequestMetrics("dmr_home", self.registry)
        # One series per live worker (label pid, added by the client): a worker holding
        # every poll shows, and sum() is the total.
        self.sync_waiters = Gauge(
            "dmr_home_sync_waiters",
            "Long polls (GET /v1/sync) waiting for a change.",
            registry=self.registry,
            multiprocess_mode="liveall",
        )
