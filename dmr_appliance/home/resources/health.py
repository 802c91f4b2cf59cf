"""Operations endpoints: /healthz, /readyz, /metrics, /openapi.json.

These need no client identity: only holders of a deployment certificate get through the
TLS handshake at all, and they reveal counts, never participant data.
"""

from __future__ import annotations

import os
from pathlib import Path

import falcon

from dmr_appliance.home import failures, instances, participants
from dmr_appliance.home.deps import HomeDeps
from dmr_appliance.home.metrics import CONTENT_TYPE, family

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


class Metrics:
    def __init__(self, home: HomeDeps) -> None:
        self.home = home

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.content_type = CONTENT_TYPE
        resp.text = "\n".join(self._lines()) + "\n"

    def _lines(self) -> list[str]:
        home, pid = self.home, os.getpid()
        requests = sorted(home.metrics.requests().items())
        by_status = participants.counts(home.store)
        by_health = instances.counts(home.store, home.config.heartbeats)
        return [
            *family("dmr_home_requests_total", "counter",
                    "HTTP responses by this worker, by method and status",
                    [({"pid": pid, "method": m, "status": s}, n) for (m, s), n in requests]),
            *family("dmr_home_participants", "gauge", "participants by status",
                    [({"status": s}, n) for s, n in by_status.items()]),
            *family("dmr_home_instances", "gauge", "relay instances by health",
                    [({"health": h}, n) for h, n in by_health.items()]),
            *family("dmr_home_failures_open", "gauge", "failure reports not yet resolved",
                    [({}, failures.open_count(home.store))]),
            *family("dmr_home_sync_version", "gauge", "current sync document version",
                    [({}, home.store.version())]),
            *family("dmr_home_sync_waiters", "gauge", "long polls waiting in this worker",
                    [({"pid": pid}, home.watcher.waiters)]),
        ]


class OpenApi:
    def __init__(self, home: HomeDeps) -> None:
        self.document = OPENAPI.read_bytes()

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.content_type = falcon.MEDIA_JSON
        resp.data = self.document
