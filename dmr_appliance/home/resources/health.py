"""Operations endpoints: /healthz, /readyz, /metrics, /openapi.json.

These need no client identity: only holders of a deployment certificate get through the
TLS handshake at all, and they reveal counts, never participant data.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import falcon
from prometheus_client.core import Metric

from dmr_appliance import __version__, metrics
from dmr_appliance.home import backup, failures, instances, participants
from dmr_appliance.home.deps import HomeDeps

OPENAPI = Path(__file__).resolve().parent.parent.parent / "openapi" / "home.json"


class Health:
    def __init__(self, home: HomeDeps) -> None:
        self.home = home

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = {"status": "ok"}

    def on_get_ready(self, req: falcon.Request, resp: falcon.Response) -> None:
        version = self.home.store.check()
        self.home.keyring.active()
        resp.media = {"status": "ready", "sync_version": version}


def metrics_endpoint(home: HomeDeps) -> metrics.Exposition:
    """``GET /metrics``: every worker's request figures, and the store's, read now."""
    return metrics.Exposition(home.metrics.registry, lambda found: live(home))


def live(home: HomeDeps) -> Iterable[Metric]:
    store = home.store
    yield metrics.gauges(
        "dmr_home_participants", "Participants by status.", "status", participants.counts(store)
    )
    yield metrics.gauges(
        "dmr_home_instances",
        "Relay instances by the age of their last heartbeat.",
        "health",
        instances.counts(store, home.config.heartbeats),
    )
    yield metrics.gauge(
        "dmr_home_failures_open", "Failure reports not yet resolved.", failures.open_count(store)
    )
    yield metrics.gauge(
        "dmr_home_sync_version", "Version of the current sync document.", store.version()
    )
    yield metrics.gauge(
        "dmr_home_backup_age_seconds",
        "Seconds since the newest complete backup in backup.dir was made (+Inf: there is none).",
        backup.age(home.config.backup.dir),
    )
    yield metrics.gauge(
        "dmr_home_info",
        "Home and its package version.",
        1,
        home=home.config.instance,
        version=__version__,
    )
    yield from metrics.certificate_expiry(home.config.tls)


class OpenApi:
    def __init__(self, home: HomeDeps) -> None:
        self.document = OPENAPI.read_bytes()

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.content_type = falcon.MEDIA_JSON
        resp.data = self.document
