"""The relay's operational endpoints: /healthz, /readyz, /metrics, /openapi.json."""

from __future__ import annotations

from importlib import resources

import falcon

from dmr_appliance import __version__
from dmr_appliance.relay.counters import Counters
from dmr_appliance.relay.trust import TrustState

PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8"


class Health:
    """Alive: the process answers. Says nothing about home or recipients."""

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = {"status": "ok"}


class Ready:
    """Ready once a sync document is held (from home, or saved by an earlier run)."""

    def __init__(self, trust: TrustState) -> None:
        self.trust = trust

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        snapshot = self.trust.current()  # 503 not-ready, as POST /v1/messages answers
        resp.media = {"status": "ready", "sync_version": snapshot.version}


class Metrics:
    """Prometheus text: the instance's counters (shared by its workers) and sync state."""

    def __init__(self, trust: TrustState, counters: Counters, instance: str) -> None:
        self.trust = trust
        self.counters = counters
        self.labels = f'instance="{instance}"'
        self.info = f'dmr_relay_info{{{self.labels},version="{__version__}"}} 1'

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.content_type = PROMETHEUS_TEXT
        resp.text = "\n".join(self.lines()) + "\n"

    def lines(self) -> list[str]:
        counts = self.counters.snapshot()
        snapshot = self.trust.snapshot
        lb = self.labels
        lines = [
            "# HELP dmr_relay_info Relay instance and package version.",
            "# TYPE dmr_relay_info gauge",
            self.info,
            "# HELP dmr_relay_messages_total Messages accepted for delivery.",
            "# TYPE dmr_relay_messages_total counter",
            f"dmr_relay_messages_total{{{lb}}} {counts['messages']}",
            "# HELP dmr_relay_deliveries_total Deliveries to recipients, by outcome.",
            "# TYPE dmr_relay_deliveries_total counter",
        ]
        lines += [f'dmr_relay_deliveries_total{{{lb},outcome="{o}"}} {counts[o]}'
                  for o in ("delivered", "rejected", "failed")]
        lines += [
            "# HELP dmr_relay_refused_total Messages refused before any delivery.",
            "# TYPE dmr_relay_refused_total counter",
            f"dmr_relay_refused_total{{{lb}}} {counts['refused']}",
            "# HELP dmr_relay_ready 1 when a sync document is held.",
            "# TYPE dmr_relay_ready gauge",
            f"dmr_relay_ready{{{lb}}} {int(snapshot is not None)}",
            "# HELP dmr_relay_sync_version Version of the sync document in use (-1: none).",
            "# TYPE dmr_relay_sync_version gauge",
            f"dmr_relay_sync_version{{{lb}}} {snapshot.version if snapshot else -1}",
        ]
        return lines


class OpenApi:
    """The relay's OpenAPI document, kept in the package and read once."""

    def __init__(self) -> None:
        self.body = (resources.files("dmr_appliance") / "openapi" / "relay.json").read_bytes()

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.content_type = falcon.MEDIA_JSON
        resp.data = self.body
